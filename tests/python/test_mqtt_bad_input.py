"""Protocol violations on raw sockets: the server closes that connection (MQTT 5: after a
DISCONNECT with the reason code) and keeps serving every other client."""

import struct

import pytest

from mqtt_helpers import (
    CONNACK, DISCONNECT, PUBREC, V5, V311, RawClient, assert_serving, connect_packet, connected, disconnect_reason,
    fixed, publish_packet, string, subscribe_packet,
)

MALFORMED, PROTOCOL_ERROR, TOPIC_NAME_INVALID = 0x81, 0x82, 0x90


def raw_publish(topic_bytes, version, qos=0):
    """PUBLISH with the topic bytes as given, unchecked."""
    body = struct.pack(">H", len(topic_bytes)) + topic_bytes
    if qos:
        body += struct.pack(">H", 1)
    if version == V5:
        body += b"\x00"
    return fixed(3, qos << 1, body + b"payload")


# name -> (packet sent after a successful CONNECT, the MQTT 5 DISCONNECT reasons that fit)
VIOLATIONS = {
    "second CONNECT": (lambda v: connect_packet("again", v), {PROTOCOL_ERROR}),
    # Ill-formed UTF-8 and U+0000 make a Malformed Packet [MQTT-1.5.4-1, MQTT-1.5.4-2].
    "invalid UTF-8 in a topic": (lambda v: raw_publish(b"a/\xff\xfe", v), {MALFORMED}),
    "U+0000 in a topic": (lambda v: raw_publish(b"a/\x00b", v), {MALFORMED}),
    "SUBSCRIBE with fixed header flags 0": (lambda v: subscribe_packet(1, [("t/#", 0)], v, flags=0), {MALFORMED}),
    "PUBLISH to a topic with a wildcard": (lambda v: publish_packet("a/+", b"x", version=v), {TOPIC_NAME_INVALID}),
    "PUBLISH to a topic with #": (lambda v: publish_packet("a/#", b"x", qos=1, version=v), {TOPIC_NAME_INVALID}),
    "PUBLISH with QoS 3": (lambda v: publish_packet("a/b", b"x", qos=3, version=v), {MALFORMED}),
    "SUBSCRIBE without filters": (lambda v: subscribe_packet(1, [], v), {MALFORMED, PROTOCOL_ERROR}),
    "SUBSCRIBE asking for QoS 3": (lambda v: subscribe_packet(1, [("t/#", 3)], v), {MALFORMED, PROTOCOL_ERROR}),
    "remaining length over four bytes": (lambda v: b"\x30\xff\xff\xff\xff\x01", {MALFORMED}),
    "reserved packet type 0": (lambda v: b"\x00\x00", {MALFORMED, PROTOCOL_ERROR}),
}
# MQTT 3.1.1 only: in 5.0 type 15 is AUTH.
VIOLATIONS_V311 = {"reserved packet type 15": lambda v: b"\xf0\x00"}

CASES = [pytest.param(name, version, id=f"{name}-{'v5' if version == V5 else 'v311'}")
         for name in VIOLATIONS for version in (V311, V5)]
CASES += [pytest.param(name, V311, id=f"{name}-v311") for name in VIOLATIONS_V311]


@pytest.mark.parametrize("name,version", CASES)
def test_violation_closes_only_that_connection(server, name, version):
    make_packet, reasons = VIOLATIONS[name] if name in VIOLATIONS else (VIOLATIONS_V311[name], None)
    watcher = connected(server, V5)
    watcher.subscribe("survivor/#", 1)
    bad = RawClient(server, version)
    bad.connect(f"bad-{version}")
    bad.send(make_packet(version))
    packets = bad.closed()
    if version == V5:
        reason = disconnect_reason(packets)
        assert reason in reasons, f"DISCONNECT reason {reason} (packets {packets}), wanted one of {reasons}"
    else:
        assert packets == [], f"MQTT 3.1.1 has nothing to answer a violation with, got {packets}"
    assert server.alive()
    assert_serving(server, watcher, "survivor/after")


@pytest.mark.parametrize("first", [
    pytest.param(publish_packet("a/b", b"x", version=V311), id="PUBLISH"),
    pytest.param(subscribe_packet(1, [("a/#", 0)], V311), id="SUBSCRIBE"),
    pytest.param(b"\xc0\x00", id="PINGREQ"),
    # Read as MQTT, "GE" is a fixed header announcing 69 more bytes; the request has that many.
    pytest.param(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: probe/1.0\r\nAccept: */*\r\n"
                 b"Connection: close\r\n\r\n", id="HTTP"),
])
def test_first_packet_must_be_connect(server, first):
    watcher = connected(server, V311)
    watcher.subscribe("survivor/#", 1)
    c = RawClient(server, V311)
    c.send(first)
    assert c.closed() == []
    assert_serving(server, watcher, "survivor/after")


@pytest.mark.parametrize("name,level", [("MQTT", 6), ("MQTT", 0), ("MQTX", 4)], ids=["level-6", "level-0", "name-MQTX"])
def test_unsupported_protocol(server, name, level):
    c = RawClient(server, V311)
    body = string(name) + bytes([level, 0x02]) + struct.pack(">H", 60) + string("proto")
    c.send(fixed(1, 0, body))
    packets = c.closed()
    # Closed at once, or after a CONNACK refusing the version (3.1.1: return code 1; 5.0: 0x84).
    assert packets == [] or (len(packets) == 1 and packets[0].type == CONNACK
                             and packets[0].body[1] in (0x01, 0x84)), packets
    assert not any(p.type == DISCONNECT for p in packets)
    watcher = connected(server, V311)
    watcher.subscribe("survivor/#", 1)
    assert_serving(server, watcher, "survivor/after")


def test_half_a_packet_then_silence_does_not_stall_others(server):
    """A client that stops in the middle of a packet holds up no one else."""
    watcher = connected(server, V5)
    watcher.subscribe("survivor/#", 1)
    stuck = RawClient(server, V5)
    stuck.connect("stuck")
    stuck.send(publish_packet("survivor/half", b"x" * 1000, qos=1)[:500])
    assert_serving(server, watcher, "survivor/after")
    stuck.close()
    assert_serving(server, watcher, "survivor/again")


def test_client_still_sending_reads_receive_maximum_exceeded(make_server):
    """A client that keeps publishing QoS 2 past the Receive Maximum without reading still reads
    DISCONNECT 0x93: the server drains what the client sends for a moment before it closes, so
    neither the client's sends nor its reads meet a reset."""
    server = make_server("--mqtt-receive-maximum", "3")
    c = RawClient(server)
    c.connect("flood")
    # 40 publishes in one write: most of it is still unread when the server gives up after the
    # fourth, and closing on unread input would reset the connection.
    flood = [publish_packet("rm/flood", b"x" * 1024, qos=2, pid=pid) for pid in range(1, 41)]
    c.send(b"".join(flood))
    packets = c.closed()
    assert [p.pid for p in packets if p.type == PUBREC] == [1, 2, 3]
    assert disconnect_reason(packets) == 0x93, f"packets before the close: {packets}"
    assert server.alive()
