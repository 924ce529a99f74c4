"""MQTT and Kafka on one log (`--mqtt-map FILTER=TOPIC`): MQTT publishes read back by a Kafka
consumer, records from a Kafka producer delivered to MQTT subscribers."""

from confluent_kafka import Producer

from mqtt_helpers import V5, V311, connected, consume_records, kafka_topics, properties

MAPS = ("--mqtt-map", "sensors/#=mqtt-sensors", "--mqtt-map", "plant/+/line=mqtt-plant")


def headers_named(headers, name):
    return [v for k, v in headers if k == name]


def user_headers(headers):
    return [(k, v) for k, v in headers if not k.startswith("mqtt.")]


def test_mqtt_publishes_land_in_kafka(make_server):
    server = make_server(*MAPS)
    before = kafka_topics(server.bootstrap)
    sub = connected(server, V5)
    sub.subscribe("#", 2)
    pub = connected(server, V5)
    pub.publish("sensors/room1/temp", b"21.5", qos=1, props=properties(
        "PUBLISH", UserProperty=[("unit", "C"), ("site", "north"), ("unit", "K")],
        ContentType="text/plain", ResponseTopic="replies/room1", CorrelationData=b"\x00\x01corr",
        PayloadFormatIndicator=1, MessageExpiryInterval=300))
    pub.publish("sensors/room1/temp", b"21.6", qos=2)
    pub.publish("sensors/room2/temp", b"19.0", qos=0, retain=True)
    pub.publish("plant/a/line", b"running", qos=1)
    # Matching no filter: MQTT only.
    pub.publish("plant/a/line/speed", b"3", qos=1)
    pub.publish("unmapped/x", b"mqtt only", qos=1)
    after = kafka_topics(server.bootstrap)

    # Every publish reaches MQTT subscribers exactly once, mapped or not.
    got = sub.messages(6)
    assert sorted(m.payload for m in got) == sorted([b"21.5", b"21.6", b"19.0", b"running", b"3", b"mqtt only"])
    sub.no_message()

    # Mapped topics exist now; nothing else was created.
    assert {"mqtt-sensors", "mqtt-plant"} <= after
    assert after - before - {"mqtt-sensors", "mqtt-plant"} == set()

    records = {r[3]: r for r in consume_records(server.bootstrap, "mqtt-sensors", 3)}
    assert set(records) == {b"21.5", b"21.6", b"19.0"}
    part, offset, key, _, headers = records[b"21.5"]
    assert key == b"sensors/room1/temp"
    assert headers_named(headers, "mqtt.qos") == [b"1"]
    assert headers_named(headers, "mqtt.retain") == []
    assert headers_named(headers, "mqtt.content_type") == [b"text/plain"]
    assert headers_named(headers, "mqtt.response_topic") == [b"replies/room1"]
    assert headers_named(headers, "mqtt.correlation_data") == [b"\x00\x01corr"]
    assert headers_named(headers, "mqtt.payload_format") == [b"1"]
    [expiry] = headers_named(headers, "mqtt.message_expiry")
    assert 1 <= int(expiry) <= 300
    assert user_headers(headers) == [("unit", b"C"), ("site", b"north"), ("unit", b"K")]

    part2, offset2, key2, _, headers2 = records[b"21.6"]
    assert key2 == b"sensors/room1/temp"
    assert (part2, offset2 > offset) == (part, True), "one MQTT topic, one partition, in publish order"
    assert headers_named(headers2, "mqtt.qos") == [b"2"]
    for absent in ("mqtt.retain", "mqtt.content_type", "mqtt.response_topic", "mqtt.correlation_data",
                   "mqtt.payload_format", "mqtt.message_expiry"):
        assert headers_named(headers2, absent) == [], absent
    assert user_headers(headers2) == []

    _, _, key3, _, headers3 = records[b"19.0"]
    assert key3 == b"sensors/room2/temp"
    assert headers_named(headers3, "mqtt.qos") == [b"0"]
    assert headers_named(headers3, "mqtt.retain") == [b"1"]

    [(_, _, key4, value4, headers4)] = consume_records(server.bootstrap, "mqtt-plant", 1)
    assert (key4, value4, headers_named(headers4, "mqtt.qos")) == (b"plant/a/line", b"running", [b"1"])


def test_kafka_records_reach_mqtt_subscribers(make_server):
    server = make_server(*MAPS)
    sub = connected(server, V5)
    sub.subscribe([("sensors/#", 2), ("mqtt-sensors", 2)])
    capped = connected(server, V5)
    capped.subscribe("sensors/#", 0)
    v311 = connected(server, V311)
    v311.subscribe("sensors/#", 1)
    # The first MQTT publish creates the Kafka topic.
    connected(server, V5).publish("sensors/init", b"init", qos=1)
    for c in (sub, capped, v311):
        assert c.message().payload == b"init"

    producer = Producer({"bootstrap.servers": server.bootstrap})
    produced = [
        (b"sensors/k1", b"from kafka", [("unit", b"C"), ("mqtt.custom", b"x")]),
        (b"sensors/k2", b"qos 0", [("mqtt.qos", b"0")]),
        (b"sensors/k3", b"qos 2", [("mqtt.qos", b"2"), ("a", b"1"), ("a", b"2")]),
        (b"not/a/+/topic", b"bad key", []),
        (None, b"no key", []),
    ]
    for key, value, headers in produced:
        producer.produce("mqtt-sensors", key=key, value=value, headers=headers)
    assert producer.flush(15) == 0

    got = {m.payload: m for m in sub.messages(5)}
    assert sorted(got) == sorted(value for _, value, _ in produced), "records missing or delivered twice"
    sub.no_message()
    k1 = got[b"from kafka"]
    assert (k1.topic, k1.qos, k1.user_properties) == ("sensors/k1", 1, [("unit", "C")])
    assert (got[b"qos 0"].topic, got[b"qos 0"].qos) == ("sensors/k2", 0)
    k3 = got[b"qos 2"]
    assert (k3.topic, k3.qos, k3.user_properties) == ("sensors/k3", 2, [("a", "1"), ("a", "2")])
    # No valid topic in the key: the record goes out on the Kafka topic's name.
    assert (got[b"bad key"].topic, got[b"bad key"].qos) == ("mqtt-sensors", 1)
    assert got[b"no key"].topic == "mqtt-sensors"

    # The subscription's QoS caps the record's.
    assert sorted((m.topic, m.qos) for m in capped.messages(3)) == [
        ("sensors/k1", 0), ("sensors/k2", 0), ("sensors/k3", 0)]
    capped.no_message(0.3)
    assert sorted((m.topic, m.qos) for m in v311.messages(3)) == [
        ("sensors/k1", 1), ("sensors/k2", 0), ("sensors/k3", 1)]
    v311.no_message(0.3)
