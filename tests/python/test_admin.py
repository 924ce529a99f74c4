"""Topics on every engine and model, their configs, DeleteRecords, ListOffsets, the CLI."""

import subprocess

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from conftest import strata_bin, unique
from helpers import consume, produce

ENGINES = [("memory", "dedicated"), ("file", "dedicated"), ("file", "shared")]


@pytest.mark.parametrize("engine,model", ENGINES)
def test_create_topic_on_each_engine_and_describe_configs(server, engine, model):
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    topic = unique(f"{engine}-{model}")
    config = {"storage.engine": engine, "storage.model": model, "retention.ms": "3600000"}
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1, config=config)])[topic].result(30)
    values = [f"{engine}{i}".encode() for i in range(100)]
    produce(server.bootstrap, topic, values)
    got = consume(server.bootstrap, topic, len(values))
    assert sorted(v for *_, v in got) == sorted(values)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["storage.engine"].value == engine
    assert configs["storage.model"].value == model
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == 1  # DYNAMIC_TOPIC_CONFIG
    assert configs["segment.bytes"].source == 5  # DEFAULT_CONFIG
    assert "flush.messages" in configs and "max.message.bytes" in configs


def test_invalid_configs_and_replication_are_refused_with_the_config_named(server):
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    bad = {
        unique("bad1"): ({"storage.engine": "tape"}, "storage.engine"),
        unique("bad2"): ({"cleanup.policy": "compact"}, "cleanup.policy"),
        unique("bad3"): ({"no.such.thing": "1"}, "no.such.thing"),
    }
    for name, (config, named) in bad.items():
        f = admin.create_topics([NewTopic(name, 1, 1, config=config)])[name]
        with pytest.raises(Exception) as e:
            f.result(30)
        assert named in str(e.value)
    name = unique("rf3")
    with pytest.raises(Exception) as e:
        admin.create_topics([NewTopic(name, 1, 3)])[name].result(30)
    assert "replication" in str(e.value).lower()


def test_alter_configs_and_create_partitions(server):
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    topic = unique("alter")
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "120000", incremental_operation=AlterConfigOpType.SET)],
    )
    admin.incremental_alter_configs([res])[res].result(30)
    got = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    configs = list(got.values())[0].result(30)
    assert configs["retention.ms"].value == "120000"
    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(30)
    md = admin.list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 3
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"storage.engine": "memory"})
    with pytest.raises(Exception):
        admin.alter_configs([res])[res].result(30)
    admin.delete_topics([topic])[topic].result(30)
    assert topic not in admin.list_topics(timeout=10).topics


def test_delete_records_and_offsets_for_times(server):
    topic = unique("records")
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": server.bootstrap})
    for i in range(10):
        p.produce(topic, value=f"t{i}".encode(), timestamp=1_000_000 + i * 1000)
    p.flush(30)
    c = Consumer({"bootstrap.servers": server.bootstrap, "group.id": unique("t")})
    found = c.offsets_for_times([TopicPartition(topic, 0, 1_004_500)], timeout=10)
    assert found[0].offset == 5
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (low, high) == (0, 10)
    result = admin.delete_records([TopicPartition(topic, 0, 4)])
    list(result.values())[0].result(30)
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (low, high) == (4, 10)
    c.close()
    got = consume(server.bootstrap, topic, 6)
    assert [v for *_, v in got] == [f"t{i}".encode() for i in range(4, 10)]


def test_cli_manages_topics(server):
    def cli(*args):
        r = subprocess.run([strata_bin(), "topic", "--bootstrap-server", server.bootstrap, *args],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr

    topic = unique("cli")
    rc, out = cli("create", topic, "--partitions", "3", "--engine", "file", "--model", "shared",
                  "--config", "retention.ms=60000")
    assert rc == 0, out
    rc, out = cli("list")
    assert rc == 0 and topic in out.split()
    rc, out = cli("describe", topic)
    assert rc == 0, out
    assert "3 partitions" in out and "storage.model=shared (topic)" in out and "retention.ms=60000 (topic)" in out
    rc, out = cli("alter", topic, "--config", "retention.ms=90000")
    assert rc == 0, out
    rc, out = cli("describe", topic)
    assert "retention.ms=90000 (topic)" in out
    rc, out = cli("create", topic + "-bad", "--config", "flush.messages=7")
    assert rc != 0 and "flush.messages" in out
    rc, out = cli("delete", topic)
    assert rc == 0, out
    rc, out = cli("list")
    assert topic not in out.split()
