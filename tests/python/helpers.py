"""Small helpers shared by the client tests."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap, name, partitions=1, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})])
    futures[name].result(30)


def produce(bootstrap, topic, values, key=None, partition=None, **conf):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    for v in values:
        kwargs = {"value": v, "on_delivery": report}
        if key is not None:
            kwargs["key"] = key(v) if callable(key) else key
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
        p.poll(0)
    left = p.flush(30)
    assert left == 0, f"{left} messages not delivered"
    assert not errors, errors


def consume(bootstrap, topic, count, group=None, timeout=30, with_headers=False, **conf):
    """Reads `count` messages with a confluent-kafka consumer; returns (partition, offset, key,
    value), and the headers as a fifth item `with_headers`."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group or f"reader-{time.monotonic_ns()}",
        "auto.offset.reset": "earliest",
        **conf,
    })
    c.subscribe([topic])
    out = []
    deadline = time.time() + timeout
    try:
        while len(out) < count and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            row = (m.partition(), m.offset(), m.key(), m.value())
            out.append(row + (m.headers() or [],) if with_headers else row)
    finally:
        c.close()
    return out


def read_all(bootstrap, topic, partitions, timeout=60):
    """Every message of every partition, from offset 0 to the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"all-{time.monotonic_ns()}",
                  "enable.auto.commit": False})
    out = {}
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1]
                for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.time() + timeout
        while any(len(out.get(p, [])) < ends[p] for p in ends) and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            out.setdefault(m.partition(), []).append(m.value())
    finally:
        c.close()
    return out
