"""MQTT 3.1.1 and 5.0 clients (paho-mqtt, and raw sockets where the bytes matter) against
`strata serve`: delivery at each QoS, flow control, sessions, retained messages, wills,
keep-alive, subscriptions and MQTT 5 properties."""

import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from mqtt_helpers import (
    CONNACK, PINGREQ_PACKET, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, V5, V311, RawClient,
    ack_packet, assert_serving, connect_packet, connected, disconnect_reason, options, prop, properties, publish_packet,
    subscribe_packet,
)

VERSIONS = pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])


def payloads(messages):
    return [m.payload for m in messages]


def receive_acking(raw, count, timeout=5):
    """Reads `count` PUBLISH packets on a raw connection, completing each flow; returns them in
    wire order once every QoS 2 flow has seen its PUBREL."""
    got, open_flows = [], set()
    deadline = time.monotonic() + timeout
    while len(got) < count or open_flows:
        p = raw.expect_any(max(deadline - time.monotonic(), 0.001))
        if p.type == PUBLISH:
            got.append(p)
            if p.qos == 1:
                raw.send(ack_packet(PUBACK, p.pid, raw.version))
            elif p.qos == 2:
                raw.send(ack_packet(PUBREC, p.pid, raw.version))
                open_flows.add(p.pid)
        elif p.type == PUBREL:
            assert p.flags == 0b0010, f"PUBREL with flags {p.flags:#06b}"
            assert p.pid in open_flows, f"PUBREL for unknown packet {p.pid}"
            open_flows.discard(p.pid)
            raw.send(ack_packet(PUBCOMP, p.pid, raw.version))
        else:
            raise AssertionError(f"unexpected packet {p}")
    return got


# --- delivery -----------------------------------------------------------------------------------


@VERSIONS
def test_each_qos_in_both_directions(server, version):
    sub = connected(server, version)
    assert sub.subscribe([("q/0/#", 0), ("q/1/#", 1), ("q/2/#", 2)]) == [0, 1, 2]
    pub = connected(server, version)
    expected = []
    for sub_qos in range(3):
        for pub_qos in range(3):
            topic = f"q/{sub_qos}/{pub_qos}"
            # publish() returns once the flow completed: written (QoS 0), PUBACK (1), PUBCOMP (2).
            assert pub.publish(topic, f"{sub_qos}{pub_qos}".encode(), qos=pub_qos) == 0
            expected.append((topic, f"{sub_qos}{pub_qos}".encode(), min(sub_qos, pub_qos)))
    got = sub.messages(len(expected))
    assert sorted((m.topic, m.payload, m.qos) for m in got) == sorted(expected)
    assert not any(m.retain for m in got)
    sub.no_message()


@pytest.mark.parametrize("sender,receiver", [(V311, V5), (V5, V311)], ids=["v311-to-v5", "v5-to-v311"])
def test_delivery_across_protocol_versions(server, sender, receiver):
    sub = connected(server, receiver)
    sub.subscribe("x/#", 2)
    pub = connected(server, sender)
    props = properties("PUBLISH", UserProperty=[("k", "v")]) if sender == V5 else None
    for qos in range(3):
        pub.publish(f"x/{qos}", f"m{qos}".encode(), qos=qos, props=props)
    got = sorted(sub.messages(3), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(f"x/{q}", f"m{q}".encode(), q) for q in range(3)]


@VERSIONS
def test_acknowledgement_flows_on_the_wire(server, version):
    """The server's half of every flow, packet by packet, and exactly-once delivery for QoS 2."""
    sub = RawClient(server, version)
    sub.connect("flow-sub")
    sub.send(subscribe_packet(7, [("flow/#", 2)], version))
    suback = sub.expect(SUBACK)
    assert (suback.pid, suback.reasons) == (7, [2])
    pub = RawClient(server, version)
    pub.connect("flow-pub")

    # QoS 1 in: PUBACK with the same packet identifier.
    pub.send(publish_packet("flow/1", b"one", qos=1, pid=11, version=version))
    puback = pub.expect(PUBACK)
    assert (puback.pid, puback.reason) == (11, 0)
    # QoS 2 in: PUBREC, and PUBCOMP for our PUBREL; a duplicate before the PUBREL is not a new message.
    pub.send(publish_packet("flow/2", b"two", qos=2, pid=12, version=version))
    assert pub.expect(PUBREC).pid == 12
    pub.send(publish_packet("flow/2", b"two", qos=2, pid=12, dup=True, version=version))
    assert pub.expect(PUBREC).pid == 12
    pub.send(ack_packet(PUBREL, 12, version))
    pubcomp = pub.expect(PUBCOMP)
    assert (pubcomp.pid, pubcomp.reason) == (12, 0)
    # The identifier is free again and names a new message.
    pub.send(publish_packet("flow/2", b"three", qos=2, pid=12, version=version))
    assert pub.expect(PUBREC).pid == 12
    pub.send(ack_packet(PUBREL, 12, version))
    assert pub.expect(PUBCOMP).pid == 12

    # QoS 1 out: we answer with PUBACK.
    m1 = sub.expect(PUBLISH)
    assert (m1.topic, m1.payload, m1.qos, m1.retain) == (b"flow/1", b"one", 1, False) and m1.pid != 0
    sub.send(ack_packet(PUBACK, m1.pid, version))
    # QoS 2 out: PUBLISH, our PUBREC, the server's PUBREL, our PUBCOMP; exactly once each.
    got = receive_acking(sub, 2)
    assert [(m.topic, m.payload, m.qos) for m in got] == [(b"flow/2", b"two", 2), (b"flow/2", b"three", 2)]
    sub.silent()
    pub.silent(0.2)


@VERSIONS
def test_packets_pipelined_behind_connect(server, version):
    """A client need not wait for the CONNACK: here everything goes out in one write."""
    c = RawClient(server, version)
    c.send(connect_packet("pipelined", version) + subscribe_packet(1, [("pipe/#", 1)], version)
           + publish_packet("pipe/a", b"to myself", qos=1, pid=2, version=version) + PINGREQ_PACKET)
    assert c.expect(CONNACK).reason == 0
    got = {}
    for _ in range(4):
        p = c.expect_any()
        got[p.type] = p
    assert sorted(got) == [PUBLISH, PUBACK, SUBACK, PINGRESP]
    assert (got[SUBACK].pid, got[SUBACK].reasons) == (1, [1])
    assert got[PUBACK].pid == 2
    assert (got[PUBLISH].topic, got[PUBLISH].payload) == (b"pipe/a", b"to myself")


def test_receive_maximum_exceeded(make_server):
    server = make_server("--mqtt-receive-maximum", "3")
    watcher = connected(server, V5)
    watcher.subscribe("rm/#", 1)
    c = RawClient(server)
    assert c.connect("rm").props.get("ReceiveMaximum") == 3
    # Each QoS 2 publish holds a slot from its PUBLISH until the PUBCOMP.
    for pid in (1, 2, 3):
        c.send(publish_packet("rm/x", b"%d" % pid, qos=2, pid=pid))
        assert c.expect(PUBREC).pid == pid
    c.send(ack_packet(PUBREL, 1))
    assert c.expect(PUBCOMP).pid == 1
    c.send(publish_packet("rm/x", b"4", qos=2, pid=4))
    assert c.expect(PUBREC).pid == 4
    # Four unanswered publishes against a Receive Maximum of 3.
    c.send(publish_packet("rm/x", b"5", qos=2, pid=5))
    assert disconnect_reason(c.closed()) == 0x93
    assert_serving(server, watcher, "rm/alive")


def test_server_maximum_packet_size(make_server):
    server = make_server("--mqtt-max-packet-size", "1024")
    watcher = connected(server, V5)
    watcher.subscribe("big/#", 1)
    assert prop(watcher.connack.properties, "MaximumPacketSize") == 1024
    pub = connected(server, V5)
    assert pub.publish("big/fits", b"f" * 900, qos=1) == 0
    assert watcher.message().payload == b"f" * 900

    too_big = publish_packet("big/no", b"n" * 2000, qos=1, pid=1)
    raw = RawClient(server)
    raw.connect("big5")
    raw.send(too_big)
    assert disconnect_reason(raw.closed()) == 0x95
    raw3 = RawClient(server, V311)
    raw3.connect("big3")
    raw3.send(publish_packet("big/no", b"n" * 2000, qos=1, pid=1, version=V311))
    assert raw3.closed() == []
    watcher.no_message(0.3)
    assert_serving(server, watcher, "big/alive")


def test_client_maximum_packet_size(server):
    small = connected(server, V5, props=properties("CONNECT", MaximumPacketSize=256))
    small.subscribe("mps/#", 1)
    unlimited = connected(server, V5)
    unlimited.subscribe("mps/#", 1)
    pub = connected(server, V5)
    pub.publish("mps/big", b"z" * 1000, qos=1)
    pub.publish("mps/small", b"small", qos=1)
    assert [m.topic for m in unlimited.messages(2)] == ["mps/big", "mps/small"]
    # The server never sends the small client a packet over its limit: that message is skipped.
    assert [(m.topic, m.payload) for m in small.messages(1)] == [("mps/small", b"small")]
    small.no_message()


def test_message_expiry(server):
    session = properties("CONNECT", SessionExpiryInterval=60)
    sub = connected(server, V5, "exp-sub", props=session)
    sub.subscribe("exp/#", 1)
    pub = connected(server, V5)
    # Delivered at once, the interval is passed on and never grows.
    pub.publish("exp/live", b"live", qos=1, props=properties("PUBLISH", MessageExpiryInterval=30))
    m = sub.message()
    assert 1 <= m.prop("MessageExpiryInterval") <= 30
    sub.disconnect()

    # Queued for the offline session: the short one expires while waiting.
    pub.publish("exp/short", b"short", qos=1, props=properties("PUBLISH", MessageExpiryInterval=1))
    pub.publish("exp/long", b"long", qos=1, props=properties("PUBLISH", MessageExpiryInterval=60))
    pub.publish("exp/none", b"none", qos=1)
    time.sleep(2.5)
    sub = connected(server, V5, "exp-sub", clean=False, props=session)
    assert sub.connack.session_present
    got = sub.messages(2)
    assert payloads(got) == [b"long", b"none"]
    # What is left of the interval: at most 60 less the 2.5 s it waited.
    assert 1 <= got[0].prop("MessageExpiryInterval") <= 59
    assert got[1].prop("MessageExpiryInterval") is None
    sub.no_message()


def test_topic_aliases_from_the_client(make_server):
    server = make_server("--mqtt-topic-alias-max", "4")
    sub = connected(server, V5)
    sub.subscribe("alias/#", 1)
    c = RawClient(server)
    assert c.connect("alias").props.get("TopicAliasMaximum") == 4
    sends = [("alias/one", b"1"), ("", b"2"), ("alias/two", b"3"), ("", b"4")]  # alias 2, then remapped
    for pid, (topic, payload) in enumerate(sends, start=1):
        c.send(publish_packet(topic, payload, qos=1, pid=pid, props=[("TopicAlias", 2)]))
        assert c.expect(PUBACK).pid == pid
    # paho sends an alias the same way.
    p = connected(server, V5)
    p.publish("alias/paho", b"5", qos=1, props=properties("PUBLISH", TopicAlias=4))
    p.publish("", b"6", qos=1, props=properties("PUBLISH", TopicAlias=4))
    got = [(m.topic, m.payload) for m in sub.messages(6)]
    assert got == [("alias/one", b"1"), ("alias/one", b"2"), ("alias/two", b"3"), ("alias/two", b"4"),
                   ("alias/paho", b"5"), ("alias/paho", b"6")]
    # Above the maximum: Topic Alias invalid. 0 is never a valid alias, and one never set names no
    # topic; the specification leaves their reason codes open between these.
    for alias, topic, allowed in ((5, "alias/x", {0x94}), (0, "alias/x", {0x81, 0x82, 0x94}),
                                  (3, "", {0x82, 0x94})):
        bad = RawClient(server)
        bad.connect(f"alias-bad-{alias}")
        bad.send(publish_packet(topic, b"bad", qos=1, pid=1, props=[("TopicAlias", alias)]))
        reason = disconnect_reason(bad.closed())
        assert reason in allowed, f"alias {alias}: DISCONNECT reason {reason}"
    sub.no_message(0.3)
    assert_serving(server, sub, "alias/alive")


def test_topic_aliases_to_the_client(server):
    c = RawClient(server)
    c.connect("alias-out", props=[("TopicAliasMaximum", 3)])
    c.send(subscribe_packet(1, [("oa/#", 1)]))
    c.expect(SUBACK)
    plain = connected(server, V5)  # no Topic Alias Maximum: never sent an alias
    plain.subscribe("oa/#", 1)
    pub = connected(server, V5)
    topics = ["oa/x", "oa/x", "oa/y", "oa/x", "oa/y", "oa/z", "oa/w", "oa/x", "oa/x"]
    for i, topic in enumerate(topics):
        pub.publish(topic, b"%d" % i, qos=1)
    aliases, got, alias_only = {}, [], 0
    for _ in topics:
        p = c.expect(PUBLISH)
        c.send(ack_packet(PUBACK, p.pid))
        alias = p.props.get("TopicAlias")
        if alias is None:
            assert p.topic, "a PUBLISH with neither topic nor alias"
            topic = p.topic
        else:
            assert 1 <= alias <= 3, f"alias {alias} above the client's maximum"
            if p.topic:
                aliases[alias] = p.topic
            else:
                assert alias in aliases, f"alias {alias} used before it was set"
                alias_only += 1
            topic = aliases[alias] if not p.topic else p.topic
        got.append((topic.decode(), p.payload))
    assert got == [(t, b"%d" % i) for i, t in enumerate(topics)]
    assert alias_only > 0, "the server never used an alias in place of a repeated topic"
    c.silent(0.3)
    received = plain.messages(len(topics))
    assert [m.topic for m in received] == topics
    assert all(m.prop("TopicAlias") is None for m in received)


# --- sessions -----------------------------------------------------------------------------------


def test_v311_persistent_session(server):
    sub = connected(server, V311, "p311", clean=False)
    assert not sub.connack.session_present
    assert sub.subscribe([("ps/1", 1), ("ps/2", 2)]) == [1, 2]
    sub.disconnect()

    pub = connected(server, V311)
    expected = []
    for i in range(4):
        for qos in (1, 2):
            pub.publish(f"ps/{qos}", f"q{qos}-{i}".encode(), qos=qos)
            expected.append((f"ps/{qos}".encode(), f"q{qos}-{i}".encode(), qos))
    raw = RawClient(server, V311)
    assert raw.connect("p311", clean=False).session_present
    got = receive_acking(raw, len(expected))
    assert [(p.topic, p.payload, p.qos) for p in got] == expected
    raw.silent()
    raw.close()

    # The subscriptions are part of the session.
    sub = connected(server, V311, "p311", clean=False)
    assert sub.connack.session_present
    pub.publish("ps/1", b"live", qos=1)
    assert sub.message().payload == b"live"
    sub.disconnect()

    # Clean Session discards the session, and a clean session is gone when its connection ends.
    pub.publish("ps/1", b"discarded", qos=1)
    sub = connected(server, V311, "p311", clean=True)
    assert not sub.connack.session_present
    pub.publish("ps/1", b"unsubscribed", qos=1)
    sub.no_message()
    sub.disconnect()
    sub = connected(server, V311, "p311", clean=False)
    assert not sub.connack.session_present
    sub.no_message(0.3)


def test_v5_session_expiry(server):
    pub = connected(server, V5)
    # Session Expiry Interval 0 (the default): the session ends with the connection.
    c = connected(server, V5, "sx")
    c.subscribe("sx/#", 1)
    c.disconnect()
    pub.publish("sx/a", b"lost", qos=1)
    c = connected(server, V5, "sx", clean=False)
    assert not c.connack.session_present
    c.no_message(0.5)
    c.disconnect()

    # 60 s: the session outlives the connection and queued messages arrive in order.
    keep = properties("CONNECT", SessionExpiryInterval=60)
    c = connected(server, V5, "sx", props=keep)
    assert not c.connack.session_present
    c.subscribe("sx/#", 1)
    c.disconnect()
    for i in range(5):
        pub.publish("sx/q", b"m%d" % i, qos=1)
    c = connected(server, V5, "sx", clean=False, props=keep)
    assert c.connack.session_present
    assert payloads(c.messages(5)) == [b"m%d" % i for i in range(5)]
    c.no_message(0.3)
    pub.publish("sx/live", b"live", qos=1)
    assert c.message().payload == b"live"
    c.disconnect()

    # Clean Start discards it with what was queued.
    pub.publish("sx/q", b"discarded", qos=1)
    c = connected(server, V5, "sx", clean=True, props=keep)
    assert not c.connack.session_present
    c.no_message(0.5)
    c.disconnect()

    # 1 s runs out.
    c = connected(server, V5, "sx", clean=True, props=properties("CONNECT", SessionExpiryInterval=1))
    c.subscribe("sx/#", 1)
    c.disconnect()
    time.sleep(2.5)
    pub.publish("sx/q", b"after expiry", qos=1)
    c = connected(server, V5, "sx", clean=False, props=keep)
    assert not c.connack.session_present
    c.no_message(0.5)


@VERSIONS
def test_session_taken_over(server, version):
    first = RawClient(server, version)
    first.connect("twin")
    second = RawClient(server, version)
    second.connect("twin")
    packets = first.closed()
    if version == V5:
        assert disconnect_reason(packets) == 0x8E
    else:
        assert packets == []
    second.send(PINGREQ_PACKET)
    second.expect(PINGRESP)


def restart(server, how):
    if how == "sigterm":
        server.restart()
    else:
        server.kill9()
        server.start()


@VERSIONS
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_persistent_session_survives_restart(server, version, how):
    keep = properties("CONNECT", SessionExpiryInterval=3600) if version == V5 else None
    sub = connected(server, version, "durable", clean=version == V5, props=keep)
    assert sub.subscribe([("dur/1", 1), ("dur/2", 2)]) == [1, 2]
    sub.disconnect()
    pub = connected(server, version)
    for i in range(3):
        pub.publish("dur/1", b"a%d" % i, qos=1)
        pub.publish("dur/2", b"b%d" % i, qos=2)
    # Acknowledged means on disk: a kill right after the last PUBCOMP loses nothing.
    restart(server, how)

    sub = connected(server, version, "durable", clean=False, props=keep)
    assert sub.connack.session_present
    got = sub.messages(6)
    assert [(m.payload, m.qos) for m in got if m.topic == "dur/1"] == [(b"a%d" % i, 1) for i in range(3)]
    assert [(m.payload, m.qos) for m in got if m.topic == "dur/2"] == [(b"b%d" % i, 2) for i in range(3)]
    sub.no_message(0.5)
    # The subscriptions came back too.
    pub = connected(server, version)
    pub.publish("dur/2", b"live", qos=2)
    m = sub.message()
    assert (m.topic, m.payload, m.qos) == ("dur/2", b"live", 2)


# --- retained messages --------------------------------------------------------------------------


@VERSIONS
def test_retained_messages(server, version):
    pub = connected(server, version)
    live = connected(server, version)
    live.subscribe("ret/#", 2)
    pub.publish("ret/a", b"A", qos=1, retain=True)
    pub.publish("ret/b", b"B", qos=2, retain=True)
    pub.publish("ret/c", b"C", qos=0, retain=True)
    pub.publish("ret/a", b"A2", qos=1, retain=True)
    # Live delivery to an existing subscription clears the flag.
    assert [(m.payload, m.retain) for m in sorted(live.messages(4), key=lambda m: m.topic)] == [
        (b"A", False), (b"A2", False), (b"B", False), (b"C", False)]

    # A new subscription gets the latest retained message of each topic, flagged, at min(QoS).
    new = connected(server, version)
    new.subscribe("ret/#", 1)
    got = sorted(new.messages(3), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
        ("ret/a", b"A2", 1, True), ("ret/b", b"B", 1, True), ("ret/c", b"C", 0, True)]
    new.no_message(0.3)

    # An empty retained payload deletes; a publish without the flag leaves the retained one alone.
    pub.publish("ret/a", b"", qos=1, retain=True)
    pub.publish("ret/b", b"not retained", qos=1)
    newer = connected(server, version)
    newer.subscribe("ret/#", 2)
    got = sorted(newer.messages(2), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.retain) for m in got] == [("ret/b", b"B", True), ("ret/c", b"C", True)]
    newer.no_message()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_retained_messages_survive_restart(server, how):
    pub = connected(server, V5)
    pub.publish("keep/a", b"kept", qos=1, retain=True)
    pub.publish("keep/b", b"first", qos=1, retain=True)
    pub.publish("keep/b", b"", qos=1, retain=True)
    pub.publish("keep/c", b"old", qos=1, retain=True)
    pub.publish("keep/c", b"new", qos=1, retain=True)
    restart(server, how)
    sub = connected(server, V5)
    sub.subscribe("keep/#", 1)
    got = sorted(sub.messages(2), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.retain) for m in got] == [("keep/a", b"kept", True), ("keep/c", b"new", True)]
    sub.no_message()


def test_retain_handling(server):
    pub = connected(server, V5)
    pub.publish("rh/t", b"kept", qos=1, retain=True)
    # 0: at every subscribe, a repeated one included.
    c0 = connected(server, V5)
    for _ in range(2):
        c0.subscribe("rh/#", options=options(1, retain_handling=0))
        m = c0.message()
        assert (m.topic, m.payload, m.retain) == ("rh/t", b"kept", True)
    c0.no_message(0.3)
    # 1: only when the subscription is new.
    c1 = connected(server, V5)
    c1.subscribe("rh/+", options=options(1, retain_handling=1))
    assert c1.message().payload == b"kept"
    c1.subscribe("rh/+", options=options(1, retain_handling=1))
    c1.no_message()
    # 2: never.
    c2 = connected(server, V5)
    c2.subscribe("rh/t", options=options(1, retain_handling=2))
    c2.no_message()
    # Live messages still flow to all three.
    pub.publish("rh/t", b"live", qos=1)
    for c in (c0, c1, c2):
        m = c.message()
        assert (m.payload, m.retain) == (b"live", False)
        c.no_message(0.2)


def test_retain_as_published(server):
    as_published = connected(server, V5)
    as_published.subscribe("rap/#", options=options(1, retain_as_published=True))
    cleared = connected(server, V5)
    cleared.subscribe("rap/#", options=options(1))
    pub = connected(server, V5)
    pub.publish("rap/t", b"r", qos=1, retain=True)
    pub.publish("rap/t", b"n", qos=1)
    assert [(m.payload, m.retain) for m in as_published.messages(2)] == [(b"r", True), (b"n", False)]
    assert [(m.payload, m.retain) for m in cleared.messages(2)] == [(b"r", False), (b"n", False)]


# --- wills --------------------------------------------------------------------------------------


@VERSIONS
def test_will_published_only_on_unclean_disconnect(server, version):
    watcher = connected(server, version)
    watcher.subscribe("will/#", 1)

    crashed = connected(server, version, "w-crash", will={"topic": "will/crash", "payload": b"gone", "qos": 1})
    crashed.drop()
    m = watcher.message()
    assert (m.topic, m.payload, m.qos, m.retain) == ("will/crash", b"gone", 1, False)

    polite = connected(server, version, "w-polite", will={"topic": "will/polite", "payload": b"gone", "qos": 1})
    polite.disconnect()
    watcher.no_message()

    if version == V5:
        # DISCONNECT with reason 0x04 asks for the will.
        asked = connected(server, V5, "w-asked", will={"topic": "will/asked", "payload": b"asked", "qos": 1})
        asked.disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
        assert watcher.message().topic == "will/asked"

    retained = connected(server, version, "w-ret",
                         will={"topic": "will/ret", "payload": b"last", "qos": 1, "retain": True})
    retained.drop()
    assert watcher.message().payload == b"last"
    late = connected(server, version)
    late.subscribe("will/ret", 1)
    m = late.message()
    assert (m.payload, m.retain) == (b"last", True)


def test_will_delay_interval(server):
    watcher = connected(server, V5)
    watcher.subscribe("wd/#", 1)
    keep = properties("CONNECT", SessionExpiryInterval=60)

    def will(topic):
        return {"topic": topic, "payload": b"late", "qos": 1,
                "properties": properties("WILLMESSAGE", WillDelayInterval=2)}

    c = connected(server, V5, "wd-a", props=keep, will=will("wd/a"))
    c.drop()
    start = time.monotonic()
    watcher.no_message(1.5)
    m = watcher.message(timeout=3)
    assert m.topic == "wd/a" and time.monotonic() - start >= 1.9

    # Coming back within the delay cancels the will.
    c = connected(server, V5, "wd-b", props=keep, will=will("wd/b"))
    c.drop()
    time.sleep(0.5)
    c = connected(server, V5, "wd-b", clean=False, props=keep)
    assert c.connack.session_present
    watcher.no_message(2.5)


def test_will_sent_when_the_session_ends_before_the_delay(server):
    """The will goes at the earlier of its delay and the end of the session [MQTT-3.1.3-9]."""
    watcher = connected(server, V5)
    watcher.subscribe("we/#", 1)
    c = connected(server, V5, "we-a", props=properties("CONNECT", SessionExpiryInterval=1),
                  will={"topic": "we/a", "payload": b"ended", "qos": 1,
                        "properties": properties("WILLMESSAGE", WillDelayInterval=30)})
    c.drop()
    start = time.monotonic()
    m = watcher.message(timeout=4)
    assert (m.topic, m.payload) == ("we/a", b"ended") and time.monotonic() - start < 4


# --- keep-alive ---------------------------------------------------------------------------------


@VERSIONS
def test_keep_alive_timeout(server, version):
    watcher = connected(server, version)
    watcher.subscribe("ka/#", 1)
    c = RawClient(server, version)
    c.connect("ka-silent", keepalive=1, will={"topic": "ka/silent", "payload": b"timed out", "qos": 1})
    start = time.monotonic()
    packets = c.closed(timeout=4)
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed <= 3.5, f"closed after {elapsed:.1f}s for a keep alive of 1s"
    if version == V5:
        assert disconnect_reason(packets) == 0x8D
    else:
        assert packets == []
    assert watcher.message().payload == b"timed out"


def test_keep_alive_kept_by_pings(server):
    c = RawClient(server, V311)
    c.connect("ka-ping", keepalive=1)
    for _ in range(6):
        time.sleep(0.5)
        c.send(PINGREQ_PACKET)
        c.expect(PINGRESP)


def test_server_keep_alive(make_server):
    server = make_server("--mqtt-max-keep-alive", "2")
    slow = RawClient(server)
    assert slow.connect("ska-60", keepalive=60).props.get("ServerKeepAlive") == 2
    start = time.monotonic()
    zero = RawClient(server)
    assert zero.connect("ska-0", keepalive=0).props.get("ServerKeepAlive") == 2
    within = RawClient(server)
    assert within.connect("ska-1", keepalive=1).props.get("ServerKeepAlive", 1) == 1
    within.close()
    # The server holds the client to its own keep alive: silent for 1.5 × 2 s.
    packets = slow.closed(timeout=5)
    elapsed = time.monotonic() - start
    assert 2.0 <= elapsed <= 4.5, f"closed after {elapsed:.1f}s for a server keep alive of 2s"
    assert disconnect_reason(packets) == 0x8D


# --- subscriptions ------------------------------------------------------------------------------


@VERSIONS
def test_wildcards(server, version):
    sub = connected(server, version)
    sub.subscribe([("wc/+/t", 1), ("deep/#", 1)])
    pub = connected(server, version)
    topics = ["wc/a/t", "wc//t", "wc/a/b/t", "wc/a", "wc/a/t/", "deep", "deep/x", "deep/x/y/z", "deeper/x"]
    for t in topics:
        pub.publish(t, t.encode(), qos=1)
    expected = ["wc/a/t", "wc//t", "deep", "deep/x", "deep/x/y/z"]
    assert sorted(m.topic for m in sub.messages(len(expected))) == sorted(expected)
    sub.no_message()


def test_dollar_topics_not_matched_by_leading_wildcards(server):
    everything = connected(server, V5)
    everything.subscribe("#", 1)
    any_first = connected(server, V5)
    any_first.subscribe("+/status", 1)
    explicit = connected(server, V5)
    explicit.subscribe("$app/#", 1)
    pub = connected(server, V5)
    pub.publish("$app/status", b"dollar", qos=1)
    pub.publish("app/status", b"plain", qos=1)
    assert payloads(explicit.messages(1)) == [b"dollar"]
    assert payloads(everything.messages(1)) == [b"plain"]
    assert payloads(any_first.messages(1)) == [b"plain"]
    for c in (everything, any_first, explicit):
        c.no_message(0.3)


def test_overlapping_subscriptions_v311(server):
    sub = connected(server, V311)
    assert sub.subscribe([("ov/#", 0), ("ov/+", 2), ("ov/a", 1)]) == [0, 2, 1]
    pub = connected(server, V311)
    pub.publish("ov/a", b"x", qos=2)
    m = sub.message()
    assert (m.topic, m.qos) == ("ov/a", 2)
    sub.no_message()


def test_overlapping_subscriptions_v5(server):
    sub = connected(server, V5)
    sub.subscribe("ov/#", 0, props=properties("SUBSCRIBE", SubscriptionIdentifier=1))
    sub.subscribe("ov/+", 1, props=properties("SUBSCRIBE", SubscriptionIdentifier=2))
    sub.subscribe("ov/a", 0)
    sub.subscribe("elsewhere/#", 2, props=properties("SUBSCRIBE", SubscriptionIdentifier=3))
    pub = connected(server, V5)
    pub.publish("ov/a", b"x", qos=2)
    m = sub.message()
    assert (m.topic, m.qos) == ("ov/a", 1)
    assert sorted(m.prop("SubscriptionIdentifier")) == [1, 2]
    sub.no_message(0.5)
    pub.publish("ov/b/c", b"y", qos=2)
    m = sub.message()
    assert (m.topic, m.qos, m.prop("SubscriptionIdentifier")) == ("ov/b/c", 0, [1])
    sub.no_message(0.5)


def test_shared_subscription(server):
    members = [connected(server, V5) for _ in range(2)]
    for m in members:
        m.subscribe("$share/g/sh/#", 1)
    plain = connected(server, V5)
    plain.subscribe("sh/#", 1)
    pub = connected(server, V5)
    sent = {b"%d" % i for i in range(20)}
    for i in range(20):
        pub.publish(f"sh/{i}", b"%d" % i, qos=1)
    assert {m.payload for m in plain.messages(20)} == sent
    got = [[], []]
    deadline = time.monotonic() + 5
    while len(got[0]) + len(got[1]) < 20 and time.monotonic() < deadline:
        for i, m in enumerate(members):
            got[i].extend(m.drain(0.1))
    for i, m in enumerate(members):
        got[i].extend(m.drain(0.3))
    a, b = ({m.payload for m in g} for g in got)
    assert len(a) == len(got[0]) and len(b) == len(got[1]), "a member got a message twice"
    assert a.isdisjoint(b), f"delivered to both members: {a & b}"
    assert a | b == sent
    assert a and b, "one member got every message"
    assert all(m.topic.startswith("sh/") for g in got for m in g)


def test_no_local(server):
    quiet = connected(server, V5)
    quiet.subscribe("nl/#", options=options(1, no_local=True))
    echo = connected(server, V5)
    echo.subscribe("nl/#", options=options(1))
    quiet.publish("nl/own", b"own", qos=1)
    echo.publish("nl/other", b"other", qos=1)
    assert payloads(quiet.messages(1)) == [b"other"]
    quiet.no_message()
    assert sorted(payloads(echo.messages(2))) == [b"other", b"own"]


@VERSIONS
def test_unsubscribe_stops_delivery(server, version):
    sub = connected(server, version)
    sub.subscribe([("un/a", 1), ("un/b", 1)])
    pub = connected(server, version)
    pub.publish("un/a", b"before", qos=1)
    assert sub.message().payload == b"before"
    codes = sub.unsubscribe("un/a")
    if version == V5:
        assert codes == [0]
    pub.publish("un/a", b"after", qos=1)
    pub.publish("un/b", b"still", qos=1)
    assert payloads(sub.messages(1)) == [b"still"]
    sub.no_message()


# --- MQTT 5 properties --------------------------------------------------------------------------


def test_request_response_information(server):
    asking = connected(server, V5, props=properties("CONNECT", RequestResponseInformation=1))
    info = prop(asking.connack.properties, "ResponseInformation")
    assert isinstance(info, str) and info
    not_asking = connected(server, V5)
    assert prop(not_asking.connack.properties, "ResponseInformation") is None


def test_request_response_properties_pass_through(server):
    responder = connected(server, V5)
    responder.subscribe("svc/request", 1)
    requester = connected(server, V5)
    requester.subscribe("svc/reply/#", 1)
    requester.publish("svc/request", b'{"n": 1}', qos=1, props=properties(
        "PUBLISH", ResponseTopic="svc/reply/7", CorrelationData=b"\x00\xffid",
        ContentType="application/json", PayloadFormatIndicator=1))
    req = responder.message()
    assert req.prop("ResponseTopic") == "svc/reply/7"
    assert req.prop("CorrelationData") == b"\x00\xffid"
    assert req.prop("ContentType") == "application/json"
    assert req.prop("PayloadFormatIndicator") == 1
    responder.publish(req.prop("ResponseTopic"), b"answer", qos=1,
                      props=properties("PUBLISH", CorrelationData=req.prop("CorrelationData")))
    resp = requester.message()
    assert (resp.topic, resp.payload, resp.prop("CorrelationData")) == ("svc/reply/7", b"answer", b"\x00\xffid")


def test_user_properties_unchanged(server):
    pairs = [("b", "2"), ("a", "1"), ("a", "1"), ("a", "3"), ("ключ", "значение"), ("", "")]
    sub = connected(server, V5)
    sub.subscribe("up/#", 2)
    pub = connected(server, V5)
    for qos in range(3):
        pub.publish(f"up/{qos}", b"x", qos=qos, props=properties("PUBLISH", UserProperty=pairs))
    for m in sub.messages(3):
        assert m.user_properties == pairs, m.topic


def test_mqtt_metrics(server):
    import urllib.request

    sub = connected(server, V5, client_id="metrics-sub")
    sub.subscribe_ack("metrics/#", qos=1)
    pub = connected(server, V5, client_id="metrics-pub")
    for i in range(3):
        pub.publish_ack("metrics/t", f"m{i}".encode(), qos=1)
    assert len(sub.messages(3)) == 3
    text = urllib.request.urlopen(server.admin_url + "/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("strata_mqtt_"):
            name, value = line.split()
            values[name] = int(value)
    assert values["strata_mqtt_connections"] >= 2
    assert values["strata_mqtt_sessions"] >= 2
    assert values["strata_mqtt_messages_in_total"] >= 3
    assert values["strata_mqtt_messages_out_total"] >= 3
    assert values["strata_mqtt_dropped_total"] == 0
    sub.close()
    pub.close()


@VERSIONS
def test_unacknowledged_flows_resume_on_reconnect(server, version):
    """A persistent session's outbound QoS 1/2 flows cut by a disconnect go on with the same
    packet identifiers: an unacknowledged PUBLISH comes again with DUP set, and a PUBREL
    without PUBCOMP comes again before anything else."""
    clean = {"clean": False} if version == V311 else {"clean": False, "props": [("SessionExpiryInterval", 300)]}
    sub = RawClient(server, version)
    sub.connect("resume-sub", **clean)
    sub.send(subscribe_packet(1, [("resume/#", 2)], version))
    sub.expect(SUBACK)
    pub = RawClient(server, version)
    pub.connect("resume-pub")
    pub.send(publish_packet("resume/a", b"q1", qos=1, pid=1, version=version))
    pub.expect(PUBACK)
    pub.send(publish_packet("resume/b", b"q2", qos=2, pid=2, version=version))
    pub.expect(PUBREC)
    pub.send(ack_packet(PUBREL, 2, version))
    pub.expect(PUBCOMP)

    first = [sub.expect(PUBLISH), sub.expect(PUBLISH)]
    assert [(m.payload, m.dup) for m in first] == [(b"q1", False), (b"q2", False)]
    sub.close()  # nothing acknowledged

    sub = RawClient(server, version)
    assert sub.connect("resume-sub", **clean).session_present
    again = [sub.expect(PUBLISH), sub.expect(PUBLISH)]
    assert [(m.payload, m.pid, m.dup) for m in again] == [
        (b"q1", first[0].pid, True), (b"q2", first[1].pid, True)]
    sub.send(ack_packet(PUBACK, again[0].pid, version))
    sub.send(ack_packet(PUBREC, again[1].pid, version))
    assert sub.expect(PUBREL).pid == again[1].pid
    sub.close()  # PUBREL not completed

    sub = RawClient(server, version)
    assert sub.connect("resume-sub", **clean).session_present
    assert sub.expect(PUBREL).pid == again[1].pid
    sub.send(ack_packet(PUBCOMP, again[1].pid, version))
    sub.silent()
    sub.close()
    pub.close()
