"""Settings from the file, the environment and flags, in that order of precedence."""

import socket
import subprocess
import time

from confluent_kafka.admin import AdminClient

from conftest import Server, free_port, strata_bin, unique
from helpers import produce
from mqtt_helpers import V311, connect_packet
from test_listeners import closed_by_server


def test_the_environment_overrides_the_file_and_flags_override_both(tmp_path):
    config = tmp_path / "strata.toml"
    config.write_text("num-partitions = 2\n\n[mqtt]\nmax-connections = 1\n")
    kafka_port = free_port()
    env = {
        "STRATA_CONFIG": str(config),
        "STRATA_KAFKA_ADDR": f"127.0.0.1:{kafka_port}",
        "STRATA_NUM_PARTITIONS": "3",
        "STRATA_MQTT_MAX_CONNECTIONS": "5",
    }
    server = Server(tmp_path / "data", ["--mqtt-max-connections", "2"], env=env)
    server.kafka_port = kafka_port
    server.start()
    try:
        # The Kafka listener is where STRATA_KAFKA_ADDR put it (no --kafka-addr was given).
        assert f"127.0.0.1:{kafka_port}" in server.logs()
        topic = unique("envcfg")
        produce(server.bootstrap, topic, [b"x"])  # auto-created
        meta = AdminClient({"bootstrap.servers": server.bootstrap}).list_topics(topic, timeout=10)
        assert len(meta.topics[topic].partitions) == 3, "STRATA_NUM_PARTITIONS over the file"
        # --mqtt-max-connections 2 over STRATA_MQTT_MAX_CONNECTIONS=5 over the file's 1.
        held = [socket.create_connection(server.mqtt_addr) for _ in range(2)]
        time.sleep(0.3)
        extra = socket.create_connection(server.mqtt_addr)
        assert closed_by_server(extra), "a third MQTT connection was served"
        # Both held connections are served (the file's 1 did not win): each gets a CONNACK.
        for i, s in enumerate(held):
            s.settimeout(5)
            s.sendall(connect_packet(f"envcfg-{i}", version=V311))
            assert s.recv(4)[:1] == b"\x20", f"held connection {i} got no CONNACK"
        for s in [*held, extra]:
            s.close()
    finally:
        server.stop()


def test_a_bad_environment_value_names_its_variable(tmp_path):
    run = subprocess.run(
        [strata_bin(), "serve", "--data-dir", str(tmp_path / "data")],
        env={"STRATA_AUTO_CREATE_TOPICS": "maybe", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode != 0
    assert "STRATA_AUTO_CREATE_TOPICS" in run.stderr, run.stderr
