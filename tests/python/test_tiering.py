"""Tiering of file-engine segments to object storage (remote.storage.enable, KIP-405's names)
with Kafka clients: far more is produced than local retention keeps, a SIGKILL lands in the
middle of uploads, and everything is consumed from offset 0."""

import os
import time

from conftest import unique
from helpers import create_topic, read_all
from test_s3_engine import Tracker, _check_kept

LOCAL = 256 << 10
SEGMENT = 64 << 10
# Producer batches are capped, so that a segment exceeds segment.bytes by at most one batch.
BATCH = 16 << 10
BOUND = LOCAL + 2 * (SEGMENT + BATCH)


def _local_log_bytes(data_dir, topic):
    d = os.path.join(data_dir, "file", "dedicated", f"{topic}-0")
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".log"))


def test_tiered_topic_keeps_local_disk_bounded_and_reads_from_offset_0(make_server, s3server,
                                                                       s3_args):
    bucket = s3_args[s3_args.index("--s3-bucket") + 1]
    server = make_server(*s3_args, "--maintenance-interval-ms", "200")
    topic = unique("tiered")
    create_topic(server.bootstrap, topic, partitions=1, config={
        "storage.engine": "file", "storage.model": "dedicated",
        "remote.storage.enable": "true", "local.retention.bytes": str(LOCAL),
        "segment.bytes": str(SEGMENT)})
    pad = "x" * 1000
    first = Tracker(server.bootstrap, topic, 1, "a" + pad, **{"batch.size": BATCH})
    first.thread.start()
    while first.count() < 2500:
        time.sleep(0.02)
    # Uploads run every 200 ms while this producer writes: the kill lands among them.
    server.kill9()
    first.finish(timeout=1)
    server.start()
    second = Tracker(server.bootstrap, topic, 1, "b" + pad, **{"batch.size": BATCH})
    second.thread.start()
    while second.count() < 2500:
        time.sleep(0.02)
    second.finish()
    assert not second.failed, second.failed[:3]
    produced = first.count() + second.count()
    assert produced * 1000 > 16 * LOCAL, "far more than local retention was produced"
    # Maintenance passes (every 200 ms) upload the closed segments and drop the local copies.
    deadline = time.time() + 60
    while (local := _local_log_bytes(server.data_dir, topic)) > BOUND:
        if time.time() > deadline:
            shard = os.path.join(server.data_dir, "file", "dedicated", f"{topic}-0")
            listing = sorted(os.listdir(shard))
            uploaded = open(os.path.join(shard, "remote-segments")).read()
            tiering = [line for line in server.log if "tier" in line or "upload" in line][-10:]
            raise AssertionError(f"{local} bytes of segments still kept locally: {listing}\n"
                                 f"uploaded:\n{uploaded}\nlog:\n" + "\n".join(tiering))
        time.sleep(0.2)
    tiered = [k for k in s3server.objects(bucket) if k.startswith(f"strata/tier/{topic}-0/")]
    assert sum(k.endswith(".log") for k in tiered) >= 20, tiered[:5]

    got = read_all(server.bootstrap, topic, 1, timeout=120)
    _check_kept(first.acked, got)
    _check_kept(second.acked, got)
