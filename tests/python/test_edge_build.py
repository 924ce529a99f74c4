"""The edge build (memory and file engines, Kafka and MQTT; `--no-default-features`): a topic
that asks for an engine left out of the build gets a CreateTopics error that names the cargo
feature, and Kafka and MQTT clients work against what the build has.

STRATA_EDGE_BIN names the edge binary (scripts/test.sh builds it)."""

import os
import subprocess

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Server, unique
from helpers import consume, create_topic, produce


@pytest.fixture
def edge(tmp_path):
    binary = os.environ.get("STRATA_EDGE_BIN")
    if not binary:
        pytest.skip("STRATA_EDGE_BIN is not set (scripts/test.sh builds the edge binary)")
    s = Server(tmp_path / "data", binary=binary).start()
    yield s
    s.stop()


@pytest.mark.parametrize("engine", ["rocksdb", "mysql", "s3"])
def test_an_engine_left_out_of_the_build_is_a_clear_create_topics_error(edge, engine):
    admin = AdminClient({"bootstrap.servers": edge.bootstrap})
    name = unique(f"edge-{engine}")
    futures = admin.create_topics([NewTopic(name, 1, 1, config={"storage.engine": engine})])
    with pytest.raises(KafkaException) as e:
        futures[name].result(30)
    message = str(e.value)
    assert f"storage.engine={engine} is not in this build" in message, message
    assert f"--features {engine}" in message, message
    assert edge.alive()


def test_the_edge_build_serves_file_and_memory_topics(edge):
    for engine in ("file", "memory"):
        topic = unique(f"edge-{engine}")
        create_topic(edge.bootstrap, topic, config={"storage.engine": engine})
        produce(edge.bootstrap, topic, [b"a", b"b"])
        assert [v for *_, v in consume(edge.bootstrap, topic, 2)] == [b"a", b"b"]


def test_the_edge_build_refuses_a_mysql_server_at_start_up(tmp_path):
    binary = os.environ.get("STRATA_EDGE_BIN")
    if not binary:
        pytest.skip("STRATA_EDGE_BIN is not set")
    r = subprocess.run(
        [binary, "serve", "--data-dir", str(tmp_path), "--mysql-url", "mysql://u:p@127.0.0.1:1/db"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode != 0
    assert "--features mysql" in r.stderr, r.stderr
