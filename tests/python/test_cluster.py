"""The cluster metadata on one node: topics live in the cluster image (a one-voter Raft group),
a data directory from before the cluster is moved into it in place, and the node's id is a
setting."""

import json
import tarfile
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from conftest import Server
from helpers import create_topic, produce, read_all

FIXTURE = Path(__file__).parent / "fixtures" / "single-node-before-cluster.tar.gz"


def topics_of(bootstrap):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in md.topics.items()}


def test_data_directory_from_before_the_cluster_is_upgraded_in_place(tmp_path):
    # Made by the single-node build before the cluster: topic alpha (1 partition, a-1..a-5),
    # topic beta (3 partitions, shared model, retention.ms=86400000, b-0..b-29 round robin),
    # and group g1's committed offset 3 on alpha-0.
    with tarfile.open(FIXTURE) as t:
        t.extractall(tmp_path, filter="data")
    s = Server(tmp_path / "data")
    s.start()
    try:
        assert topics_of(s.bootstrap) == {"alpha": 1, "beta": 3}
        assert read_all(s.bootstrap, "alpha", 1) == {0: [f"a-{i}".encode() for i in range(1, 6)]}
        beta = read_all(s.bootstrap, "beta", 3)
        assert {p: len(v) for p, v in beta.items()} == {0: 10, 1: 10, 2: 10}
        assert beta[1][0] == b"b-1"
        admin = AdminClient({"bootstrap.servers": s.bootstrap})
        res = ConfigResource(ConfigResource.Type.TOPIC, "beta")
        configs = admin.describe_configs([res])[res].result()
        assert configs["retention.ms"].value == "86400000"
        assert configs["storage.model"].value == "shared"
        c = Consumer({"bootstrap.servers": s.bootstrap, "group.id": "g1"})
        try:
            [tp] = c.committed([TopicPartition("alpha", 0)], timeout=10)
            assert tp.offset == 3
        finally:
            c.close()
        # The moved topics take writes, and everything is there after another restart (the
        # topics now come from the image alone).
        produce(s.bootstrap, "alpha", [b"a-6"])
        s.restart()
        assert topics_of(s.bootstrap) == {"alpha": 1, "beta": 3}
        assert read_all(s.bootstrap, "alpha", 1)[0][-1] == b"a-6"
    finally:
        s.stop()
    assert "topic moved into the cluster image" in s.logs()


def test_topic_changes_survive_restarts_and_kill9(tmp_path):
    s = Server(tmp_path / "data")
    s.start()
    try:
        admin = AdminClient({"bootstrap.servers": s.bootstrap})
        create_topic(s.bootstrap, "kept", partitions=2, config={"retention.ms": "3600000"})
        create_topic(s.bootstrap, "dropped", partitions=1)
        produce(s.bootstrap, "kept", [b"k"], partition=1)
        for f in admin.create_partitions([NewPartitions("kept", 4)]).values():
            f.result()
        for f in admin.delete_topics(["dropped"]).values():
            f.result()
        s.kill9()
        s.start()
        assert topics_of(s.bootstrap) == {"kept": 4}
        assert read_all(s.bootstrap, "kept", 4)[1] == [b"k"]
        res = ConfigResource(ConfigResource.Type.TOPIC, "kept")
        assert admin.describe_configs([res])[res].result()["retention.ms"].value == "3600000"
        # A topic deleted and created again under its name is a new topic.
        for f in admin.create_topics([NewTopic("dropped", 2)]).values():
            f.result()
        s.restart()
        assert topics_of(s.bootstrap) == {"kept": 4, "dropped": 2}
    finally:
        s.stop()


def test_node_id_is_the_broker_id_clients_see(tmp_path):
    s = Server(tmp_path / "data", extra_args=["--node-id", "7"])
    s.start()
    try:
        md = AdminClient({"bootstrap.servers": s.bootstrap}).list_topics(timeout=10)
        assert list(md.brokers) == [7]
        create_topic(s.bootstrap, "t7", partitions=1)
        md = AdminClient({"bootstrap.servers": s.bootstrap}).list_topics(timeout=10)
        assert md.topics["t7"].partitions[0].leader == 7
        health = json.load(urllib.request.urlopen(s.admin_url + "/health", timeout=5))
        assert health["node_id"] == 7
        assert health["cluster"]["state"] == "active"
        assert health["cluster"]["controller"] == 7
        assert health["cluster"]["voters"] == [7]
    finally:
        s.stop()
