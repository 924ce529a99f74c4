"""Each client produces and consumes with a consumer group; compression round trips; kcat."""

import asyncio
import itertools
import subprocess
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer

from conftest import unique
from helpers import consume, create_topic, produce


def check_group_read(got, values, partitions):
    assert sorted(v for _, _, _, v in got) == sorted(values)
    for p in range(partitions):
        offsets = [o for (pp, o, _, _) in got if pp == p]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_confluent_kafka_produce_and_group_consume(server):
    topic = unique("confluent")
    create_topic(server.bootstrap, topic, partitions=3)
    values = [f"m{i}".encode() for i in range(300)]
    produce(server.bootstrap, topic, values, key=lambda v: v[-1:])
    got = consume(server.bootstrap, topic, len(values), group=unique("g"))
    check_group_read(got, values, 3)


def test_kafka_python_produce_and_group_consume(server):
    topic = unique("kpy")
    create_topic(server.bootstrap, topic, partitions=2)
    p = KafkaProducer(bootstrap_servers=server.bootstrap, linger_ms=5)
    values = [f"kp{i}".encode() for i in range(200)]
    futures = [p.send(topic, key=str(i % 7).encode(), value=v) for i, v in enumerate(values)]
    for f in futures:
        f.get(timeout=30)
    p.close()
    c = KafkaConsumer(
        topic,
        bootstrap_servers=server.bootstrap,
        group_id=unique("kpy-group"),
        auto_offset_reset="earliest",
        consumer_timeout_ms=15000,
    )
    got = []
    for m in c:
        got.append((m.partition, m.offset, m.key, m.value))
        if len(got) == len(values):
            break
    c.commit()
    c.close()
    check_group_read(got, values, 2)


def test_aiokafka_produce_and_group_consume(server):
    topic = unique("aio")
    create_topic(server.bootstrap, topic, partitions=2)
    values = [f"aio{i}".encode() for i in range(150)]

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=server.bootstrap)
        await p.start()
        try:
            for v in values:
                await p.send_and_wait(topic, v)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=server.bootstrap,
            group_id=unique("aio-group"),
            auto_offset_reset="earliest",
        )
        await c.start()
        got = []
        try:
            deadline = time.time() + 30
            while len(got) < len(values) and time.time() < deadline:
                batches = await c.getmany(timeout_ms=500)
                for tp, msgs in batches.items():
                    got.extend((tp.partition, m.offset, m.key, m.value) for m in msgs)
            await c.commit()
        finally:
            await c.stop()
        return got

    got = asyncio.run(run())
    check_group_read(got, values, 2)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(server, codec):
    topic = unique(f"codec-{codec}")
    create_topic(server.bootstrap, topic)
    values = [(f"{codec}-{i}-" + "x" * (i % 50)).encode() for i in range(100)]
    produce(server.bootstrap, topic, values[:50], **{"compression.type": codec})
    kp = KafkaProducer(bootstrap_servers=server.bootstrap, compression_type=codec)
    for v in values[50:]:
        kp.send(topic, v)
    kp.flush(30)
    kp.close()
    got = consume(server.bootstrap, topic, len(values))
    assert [v for *_, v in got] == values
    kc = KafkaConsumer(topic, bootstrap_servers=server.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10000)
    # The timeout only bounds a failure: stop at the last expected message, not after 10 s idle.
    read = [m.value for m in itertools.islice(kc, len(values))]
    kc.close()
    assert read == values


def test_kcat_produces_and_consumes(server):
    topic = unique("kcat")
    lines = [f"line-{i}" for i in range(50)]
    subprocess.run(
        ["kcat", "-b", server.bootstrap, "-t", topic, "-P", "-X", "topic.request.required.acks=all"],
        input="\n".join(lines) + "\n", text=True, check=True, timeout=60,
    )
    out = subprocess.run(
        ["kcat", "-b", server.bootstrap, "-t", topic, "-C", "-o", "beginning", "-e", "-q"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()
    assert out == lines
    group = subprocess.run(
        ["kcat", "-b", server.bootstrap, "-G", unique("kcat-group"), topic, "-o", "beginning", "-c", "50", "-q", "-e"],
        capture_output=True, text=True, timeout=60,
    )
    assert sorted(group.stdout.split()) == sorted(lines), group.stderr


def test_idempotent_producers_do_not_duplicate(server):
    topic = unique("idem")
    create_topic(server.bootstrap, topic, partitions=2)
    values = [f"i{i}".encode() for i in range(2000)]
    produce(server.bootstrap, topic, values, key=lambda v: v[-1:], **{"enable.idempotence": True, "acks": "all"})
    kp = KafkaProducer(bootstrap_servers=server.bootstrap, enable_idempotence=True, acks="all")
    for i in range(500):
        kp.send(topic, f"k{i}".encode(), partition=0)
    kp.flush(30)
    kp.close()
    got = consume(server.bootstrap, topic, 2500)
    vals = [v for *_, v in got]
    assert len(vals) == 2500 and len(set(vals)) == 2500
    p0 = [v for p, _, _, v in got if p == 0 and v.startswith(b"k")]
    assert p0 == [f"k{i}".encode() for i in range(500)]
