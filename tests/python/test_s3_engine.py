"""Kafka clients against topics stored by the s3 engine (with and without the local write-ahead
log) on a throwaway S3-compatible server: SIGKILL mid-upload, a node that loses its data
directory but keeps the bucket, and an outage of the object store."""

import shutil
import threading
import time

import pytest
from confluent_kafka import Producer

from conftest import unique
from helpers import create_topic, read_all

CASES = [("shared", "none"), ("dedicated", "none"), ("shared", "local"), ("dedicated", "local")]
FAST = ["--s3-flush-ms", "50"]


def _topic(server, name, model, wal, partitions=3, **extra):
    create_topic(server.bootstrap, name, partitions=partitions, config={
        "storage.engine": "s3", "storage.model": model, "storage.wal": wal,
        "flush.messages": "1", **extra})


class Tracker:
    """Produces in a background thread until stopped; records acknowledged values."""

    def __init__(self, bootstrap, topic, partitions, prefix, **conf):
        self.acked, self.failed = {}, []
        self.topic, self.partitions, self.prefix = topic, partitions, prefix
        # A bounded queue: the producer runs flat out, and finish() waits for every queued
        # message, so an unbounded queue makes it wait for the backlog of a slow phase.
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                                  "message.timeout.ms": 10000,
                                  "queue.buffering.max.messages": 2000, **conf})
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def report(self, err, msg):
        if err is None:
            self.acked.setdefault(msg.partition(), []).append(msg.value())
        else:
            self.failed.append(err)

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.producer.produce(self.topic, value=f"{self.prefix}{i}".encode(),
                                      partition=i % self.partitions, on_delivery=self.report)
                i += 1
            except BufferError:
                pass
            self.producer.poll(0.001 if i % 50 == 0 else 0)
        self.sent = i

    def count(self):
        return sum(len(v) for v in self.acked.values())

    def finish(self, timeout=60):
        self.stop.set()
        self.thread.join()
        self.producer.flush(timeout)


def _check_kept(acked, got):
    """Every acknowledged value is stored, in acknowledgement order within its partition."""
    for part, values in acked.items():
        stored = got.get(part, [])
        pos = {v: i for i, v in enumerate(stored)}
        missing = [v for v in values if v not in pos]
        assert not missing, f"partition {part}: {len(missing)} acknowledged messages lost"
        order = [pos[v] for v in values]
        assert order == sorted(order), f"partition {part}: acknowledged order changed"


@pytest.mark.parametrize("model,wal", CASES)
def test_sigkill_mid_upload_keeps_every_acknowledged_batch(make_server, s3_args, model, wal):
    server = make_server(*s3_args, *FAST)
    topic = unique(f"s3-{model}-{wal}")
    _topic(server, topic, model, wal)
    t = Tracker(server.bootstrap, topic, 3, "m")
    t.thread.start()
    deadline = time.time() + 60
    while t.count() < 2000 and time.time() < deadline:
        time.sleep(0.05)
    assert t.count() >= 2000, f"only {t.count()} acknowledged: {t.failed[:3]}"
    server.kill9()
    # The node is gone: take the delivery reports already received, and leave the rest to
    # fail unacknowledged instead of waiting out message.timeout.ms.
    t.finish(timeout=1)
    server.start()
    got = read_all(server.bootstrap, topic, 3)
    _check_kept(t.acked, got)


def test_node_that_loses_its_disk_keeps_its_topics(make_server, s3_args, tmp_path):
    server = make_server(*s3_args, *FAST)
    topic = unique("s3-disk-loss")
    _topic(server, topic, "shared", "none", partitions=2)
    t = Tracker(server.bootstrap, topic, 2, "d")
    t.thread.start()
    while t.count() < 1000:
        time.sleep(0.05)
    t.finish()
    assert not t.failed, t.failed[:3]
    server.kill9()
    shutil.rmtree(server.data_dir)
    server.start()
    assert "topic recreated from its shards in object storage" in server.logs()
    got = read_all(server.bootstrap, topic, 2)
    _check_kept(t.acked, got)
    assert sum(len(v) for v in got.values()) == t.count()


def test_object_store_outage(make_server, s3server, s3_args):
    server = make_server(*s3_args, *FAST)
    direct, logged = unique("s3-outage-direct"), unique("s3-outage-wal")
    _topic(server, direct, "shared", "none", partitions=2)
    _topic(server, logged, "shared", "local", partitions=2)
    before = {}
    for topic in (direct, logged):
        t = Tracker(server.bootstrap, topic, 2, "a")
        t.thread.start()
        while t.count() < 300:
            time.sleep(0.02)
        t.finish()
        assert not t.failed
        before[topic] = t.acked

    s3server.stop()
    # Without the log, appends fail with a clear error; with it, they are acknowledged locally.
    down_direct = Tracker(server.bootstrap, direct, 2, "b", **{"message.timeout.ms": 6000,
                                                                "retries": 0})
    down_direct.thread.start()
    time.sleep(3)
    down_direct.finish()
    assert down_direct.failed, "appends without a log succeeded with the object store down"
    assert server.alive()
    assert "storage backend unavailable: object store" in server.logs()
    down_logged = Tracker(server.bootstrap, logged, 2, "b")
    down_logged.thread.start()
    while down_logged.count() < 300:
        time.sleep(0.02)
    down_logged.finish()
    assert not down_logged.failed, down_logged.failed[:3]

    s3server.start()
    after = Tracker(server.bootstrap, direct, 2, "c", **{"message.timeout.ms": 60000})
    after.thread.start()
    while after.count() < 300:
        time.sleep(0.02)
    after.finish()
    assert not after.failed, after.failed[:3]
    # The logged backlog reaches the bucket; a restart then finds everything.
    time.sleep(2)
    server.stop()
    server.start()
    got = read_all(server.bootstrap, direct, 2)
    _check_kept(before[direct], got)
    _check_kept(after.acked, got)
    got = read_all(server.bootstrap, logged, 2)
    _check_kept(before[logged], got)
    _check_kept(down_logged.acked, got)
