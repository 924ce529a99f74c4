"""MQTT over WebSocket (`--mqtt-ws-addr`, path /mqtt, subprotocol mqtt): paho over WebSocket,
across transports, and the framing by hand."""

import pytest

from mqtt_helpers import (
    CONNACK, SUBACK, PINGREQ_PACKET, PINGRESP, PUBLISH, V5, V311, WebSocketRawClient, connect_packet,
    connected, publish_packet, subscribe_packet,
)

VERSIONS = pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])


@VERSIONS
def test_publish_and_receive_over_websocket(server, version):
    sub = connected(server, version, transport="websockets")
    assert sub.subscribe("ws/#", 2) == [2]
    pub = connected(server, version, transport="websockets")
    for qos in range(3):
        assert pub.publish(f"ws/{qos}", b"w%d" % qos, qos=qos) == 0
    pub.publish("ws/big", b"b" * 100_000, qos=1)  # several WebSocket frames' worth
    got = sorted(sub.messages(4), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        ("ws/0", b"w0", 0), ("ws/1", b"w1", 1), ("ws/2", b"w2", 2), ("ws/big", b"b" * 100_000, 1)]


@VERSIONS
def test_across_transports(server, version):
    tcp_sub = connected(server, version)
    tcp_sub.subscribe("x/from-ws", 1)
    ws_sub = connected(server, version, transport="websockets")
    ws_sub.subscribe("x/from-tcp", 1)
    connected(server, version).publish("x/from-tcp", b"tcp", qos=1)
    connected(server, version, transport="websockets").publish("x/from-ws", b"ws", qos=1)
    assert (ws_sub.message().payload, tcp_sub.message().payload) == (b"tcp", b"ws")
    tcp_sub.no_message(0.3)
    ws_sub.no_message(0.3)


def test_websocket_handshake_and_framing(server):
    c = WebSocketRawClient(server, V311)
    assert c.headers.get("sec-websocket-protocol") == "mqtt"
    # Two MQTT packets in one frame, the second one split over two frames.
    connect = connect_packet("ws-raw", V311)
    subscribe = subscribe_packet(3, [("wsraw/#", 1)], V311)
    c.send(connect + subscribe, splits=[len(connect) + 3])
    assert c.expect(CONNACK).reason == 0
    suback = c.expect(SUBACK)
    assert (suback.pid, suback.reasons) == (3, [1])
    # A packet split byte by byte.
    packet = publish_packet("wsraw/t", b"bytewise", qos=0, version=V311)
    c.send(packet, splits=range(1, len(packet)))
    m = c.expect(PUBLISH)
    assert (m.topic, m.payload) == (b"wsraw/t", b"bytewise")
    c.send(PINGREQ_PACKET)
    c.expect(PINGRESP)
    # A TCP client's publish comes out as WebSocket frames too.
    connected(server, V5).publish("wsraw/tcp", b"from tcp", qos=0)
    m = c.expect(PUBLISH)
    assert (m.topic, m.payload) == (b"wsraw/tcp", b"from tcp")
