"""The listeners under pressure: descriptor exhaustion, connection caps, graceful shutdown."""

import socket
import threading
import time

from confluent_kafka import Producer

from conftest import Server, unique
from helpers import consume, create_topic, produce, read_all


def closed_by_server(s, timeout=3):
    """True when the server closes `s` without a word within `timeout`."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_running_out_of_descriptors_does_not_stop_the_node(tmp_path):
    # Soft and hard limit alike, so that raising the soft limit at start-up cannot help.
    server = Server(tmp_path / "data", nofile=(96, 96)).start()
    try:
        assert "file descriptor limit" in server.logs()
        assert "below the connection caps" in server.logs(), "no warning about the low limit"
        socks = []
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", server.kafka_port), timeout=5)
            socks.append(s)
        time.sleep(1.0)
        assert server.alive(), "the node died:\n" + server.logs()[-3000:]
        # Connections beyond the limit were closed, not left hanging in the backlog.
        assert closed_by_server(socks[-1]), "a connection beyond the descriptor limit hangs"
        assert "out of file descriptors" in server.logs()
        for s in socks:
            s.close()
        time.sleep(0.5)
        topic = unique("nofile")
        create_topic(server.bootstrap, topic)
        produce(server.bootstrap, topic, [b"after"])
        assert [v for *_, v in consume(server.bootstrap, topic, 1)] == [b"after"]
        assert server.alive()
    finally:
        server.stop()


def test_kafka_and_mqtt_connections_beyond_the_cap_are_closed(make_server):
    server = make_server("--kafka-max-connections", "3", "--mqtt-max-connections", "2")
    held = [socket.create_connection(("127.0.0.1", server.kafka_port)) for _ in range(3)]
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", server.kafka_port))
    assert closed_by_server(extra), "a fourth Kafka connection was served"
    mqtt = [socket.create_connection(server.mqtt_addr) for _ in range(2)]
    time.sleep(0.3)
    extra = socket.create_connection(server.mqtt_addr)
    assert closed_by_server(extra), "a third MQTT connection was served"
    assert "connection limit reached" in server.logs()
    for s in held + mqtt:
        s.close()
    time.sleep(0.5)
    topic = unique("cap")
    create_topic(server.bootstrap, topic)
    produce(server.bootstrap, topic, [b"x"])
    assert server.alive()


def test_sigterm_under_acks_all_load_keeps_every_acknowledged_message(make_server):
    server = make_server("--shutdown-timeout-ms", "5000")
    topic = unique("drain")
    create_topic(server.bootstrap, topic, partitions=2, config={"flush.messages": "1"})
    acked, failed = [], []

    def report(err, msg):
        (failed if err else acked).append(err or msg.value())

    p = Producer({
        "bootstrap.servers": server.bootstrap,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": 5000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
    })
    stop = threading.Event()
    sent = [0]

    def load():
        while not stop.is_set():
            p.produce(topic, value=f"d{sent[0]}".encode(), on_delivery=report)
            sent[0] += 1
            p.poll(0)
            if sent[0] % 50 == 0:
                time.sleep(0.002)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1.5)
    before = len(acked)
    started = time.time()
    server.proc.send_signal(15)
    server.proc.wait(30)
    took = time.time() - started
    stop.set()
    t.join()
    p.flush(10)
    assert before > 0
    assert took < 5.0 + 3.0, f"exit took {took:.1f}s with a 5 s deadline"
    assert "shutting down: draining connections" in server.logs()
    assert "stopped" in server.logs()
    server.proc = None
    server.start()
    # Messages in flight at the signal may be stored without an acknowledgement: read them all.
    got = {v for values in read_all(server.bootstrap, topic, 2).values() for v in values}
    lost = [v for v in acked if v not in got]
    assert not lost, f"{len(lost)} acknowledged messages lost after SIGTERM, e.g. {lost[:3]}"
