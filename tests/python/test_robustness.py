"""Bad input, a crash mid-stream, and the admin HTTP API."""

import json
import socket
import struct
import time
import urllib.request

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from conftest import unique
from helpers import consume, create_topic, produce


def recv_all(s, timeout=10):
    s.settimeout(timeout)
    chunks = []
    while True:
        try:
            b = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def request(api, version, correlation, body=b"", client=b"raw"):
    header = struct.pack(">hhih", api, version, correlation, len(client)) + client
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def test_malformed_frames_close_only_that_connection(server):
    topic = unique("survivor")
    create_topic(server.bootstrap, topic)
    produce(server.bootstrap, topic, [b"before"])
    # A client connected throughout, before and after the bad frames.
    watcher = Consumer({
        "bootstrap.servers": server.bootstrap,
        "group.id": unique("watcher"),
        "auto.offset.reset": "earliest",
    })
    watcher.subscribe([topic])
    seen = []
    deadline = time.time() + 30
    while not seen and time.time() < deadline:
        m = watcher.poll(0.5)
        if m is not None and m.error() is None:
            seen.append(m.value())
    assert seen == [b"before"]
    host, port = server.bootstrap.split(":")
    bad_frames = {
        "unknown API key": request(9999, 0, 1),
        "truncated Metadata": struct.pack(">i", 10) + struct.pack(">hhi", 3, 9, 2) + b"\x00\x05",
        "huge array length": request(3, 1, 4, struct.pack(">i", 0x7FFFFFFF)),
        "oversized frame": struct.pack(">i", 1 << 30),
        "negative size": struct.pack(">i", -5),
        "Produce v2 (removed message format)": request(0, 2, 3, b"\x00" * 16),
        "garbage": b"\x00\x00\x00\x20" + bytes(range(32)),
    }
    for name, frame in bad_frames.items():
        s = socket.create_connection((host, int(port)))
        s.sendall(frame)
        assert recv_all(s) == b"", f"{name}: the server answered instead of closing"
        s.close()
    # Everyone else carries on, on new connections and on the one held throughout.
    produce(server.bootstrap, topic, [b"after"])
    deadline = time.time() + 30
    while len(seen) < 2 and time.time() < deadline:
        m = watcher.poll(0.5)
        if m is not None and m.error() is None:
            seen.append(m.value())
    watcher.close()
    assert seen == [b"before", b"after"]
    assert [v for *_, v in consume(server.bootstrap, topic, 2)] == [b"before", b"after"]
    assert server.alive()
    assert "closing kafka connection" in server.logs()
    assert "unknown API key 9999" in server.logs()


def test_a_second_server_on_the_same_data_directory_is_refused(server):
    from conftest import Server

    second = Server(server.data_dir)
    try:
        second.start()
        raise AssertionError("a second server started on a directory in use")
    except RuntimeError as e:
        assert "in use by another process" in str(e)
    assert server.alive()


def test_unsupported_api_versions_version_gets_error_35_in_a_v0_body(server):
    host, port = server.bootstrap.split(":")
    s = socket.create_connection((host, int(port)))
    s.sendall(request(18, 99, 7))
    s.settimeout(10)
    size = struct.unpack(">i", s.recv(4))[0]
    body = b""
    while len(body) < size:
        body += s.recv(size - len(body))
    correlation, error, count = struct.unpack(">ihi", body[:10])
    assert (correlation, error) == (7, 35)
    keys = [struct.unpack(">hhh", body[10 + 6 * i: 16 + 6 * i]) for i in range(count)]
    versions = {k: (lo, hi) for k, lo, hi in keys}
    assert versions[18][0] == 0 and versions[0] == (0, 11) and 1 in versions
    s.close()


def test_sigkill_mid_stream_loses_no_acknowledged_message(server):
    topic = unique("crash")
    create_topic(server.bootstrap, topic, partitions=2, config={"flush.messages": "1"})
    acked = []
    failed = []

    def report(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))
        else:
            failed.append(err)

    p = Producer({
        "bootstrap.servers": server.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 120000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    })
    sent = 0
    started = time.time()
    while time.time() - started < 2.0:
        p.produce(topic, key=str(sent % 5).encode(), value=f"c{sent}".encode(), on_delivery=report)
        sent += 1
        p.poll(0)
        if sent % 50 == 0:
            time.sleep(0.005)
    acked_before_kill = len(acked)
    server.kill9()
    for _ in range(300):
        p.produce(topic, key=str(sent % 5).encode(), value=f"c{sent}".encode(), on_delivery=report)
        sent += 1
    time.sleep(0.5)
    server.start()
    assert p.flush(90) == 0
    assert not failed, failed[:3]
    assert acked_before_kill > 0 and len(acked) == sent
    got = consume(server.bootstrap, topic, sent, timeout=60)
    values = [v for *_, v in got]
    assert len(values) == len(set(values)), "duplicates after the restart"
    assert set(values) == {v for *_, v in acked}
    for part in (0, 1):
        consumed = [v for p_, _, _, v in got if p_ == part]
        produced = [v for p_, _, v in sorted(a for a in acked if a[0] == part)]
        assert consumed == produced, f"partition {part} out of order"


def test_health_and_metrics(server):
    topic = unique("metered")
    create_topic(server.bootstrap, topic)
    produce(server.bootstrap, topic, [b"x" * 100] * 10)
    consume(server.bootstrap, topic, 10)
    health = json.loads(urllib.request.urlopen(server.admin_url + "/health", timeout=10).read())
    assert health["status"] == "ok"
    text = urllib.request.urlopen(server.admin_url + "/metrics", timeout=10).read().decode()
    assert f'strata_topic_messages_in_total{{topic="{topic}"}} 10' in text
    assert f'strata_topic_bytes_out_total{{topic="{topic}"}}' in text
    assert 'strata_kafka_request_seconds_bucket{api="Produce"' in text
    assert 'strata_engine_shards{engine="file-dedicated"}' in text


def test_auto_create_can_be_turned_off(make_server):
    s = make_server("--auto-create-topics", "false")
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    md = admin.list_topics("never-created", timeout=10)
    assert md.topics["never-created"].error is not None
    assert "never-created" not in admin.list_topics(timeout=10).topics
