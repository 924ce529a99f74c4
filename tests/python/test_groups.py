"""Consumer groups: partitions split between members, rebalances, committed offsets."""

import itertools
import time

from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaConsumer

from conftest import unique
from helpers import create_topic, produce


def assigned(consumer, want, timeout=30):
    """Polls until the consumer holds `want` partitions; returns them."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        consumer.poll(0.2)
        parts = sorted(tp.partition for tp in consumer.assignment())
        if len(parts) == want:
            return parts
    raise AssertionError(f"assignment never reached {want} partitions: {consumer.assignment()}")


def test_two_consumers_split_partitions_and_rebalance_when_one_leaves(server):
    topic = unique("split")
    group = unique("split-group")
    create_topic(server.bootstrap, topic, partitions=4)
    conf = {
        "bootstrap.servers": server.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    a = Consumer(conf)
    a.subscribe([topic])
    assert assigned(a, 4) == [0, 1, 2, 3]
    b = Consumer(conf)
    b.subscribe([topic])
    deadline = time.time() + 40
    while time.time() < deadline:
        a.poll(0.1)
        b.poll(0.1)
        if len(a.assignment()) == 2 and len(b.assignment()) == 2:
            break
    pa = {tp.partition for tp in a.assignment()}
    pb = {tp.partition for tp in b.assignment()}
    assert len(pa) == 2 and len(pb) == 2 and pa.isdisjoint(pb), (pa, pb)
    b.close()
    assert assigned(a, 4) == [0, 1, 2, 3]
    a.close()


def test_committed_offsets_resume_after_restart(server):
    topic = unique("resume")
    group = unique("resume-group")
    create_topic(server.bootstrap, topic)
    values = [f"r{i}".encode() for i in range(20)]
    produce(server.bootstrap, topic, values)
    c = Consumer({
        "bootstrap.servers": server.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < 8 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.commit(offsets=[TopicPartition(topic, 0, 8)], asynchronous=False)
    c.close()
    assert got[:8] == values[:8]

    server.restart()

    k = KafkaConsumer(
        topic,
        bootstrap_servers=server.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
    )
    # The timeout only bounds a failure: a resume from the wrong offset shows in the first 12.
    rest = [m.value for m in itertools.islice(k, len(values) - 8)]
    k.close()
    assert rest == values[8:]
