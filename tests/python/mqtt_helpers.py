"""MQTT clients for the tests: paho-mqtt on its own network thread, and a raw socket client that
writes handcrafted packets and reads the server's replies byte for byte."""

import base64
import dataclasses
import hashlib
import os
import queue
import socket
import struct
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
from confluent_kafka.admin import AdminClient
from paho.mqtt.client import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from helpers import consume

from conftest import open_clients, strata_bin

V311 = mqtt.MQTTv311  # protocol level 4
V5 = mqtt.MQTTv5  # protocol level 5

WAIT = 5.0  # how long a test waits for something that should happen
QUIET = 0.5  # how long a test watches for something that should not happen

# Control packet types.
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def wait_until(predicate, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def properties(packet_type, **values):
    """paho Properties for a packet type name ("CONNECT", "PUBLISH", "SUBSCRIBE", "WILLMESSAGE", ...)."""
    p = Properties(getattr(PacketTypes, packet_type))
    for name, value in values.items():
        setattr(p, name, value)
    return p


def prop(props, name, default=None):
    """A property from a paho Properties (or None), `default` when absent."""
    if props is None:
        return default
    return getattr(props, name, default)


# --- paho ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None

    def prop(self, name, default=None):
        return prop(self.properties, name, default)

    @property
    def user_properties(self):
        return list(self.prop("UserProperty", []))


@dataclasses.dataclass
class Ack:
    reason: object  # int for PUBACK/PUBCOMP, list of ints for SUBACK/UNSUBACK
    properties: Properties | None


@dataclasses.dataclass
class Connack:
    session_present: bool
    reason: int  # paho maps MQTT 3.1.1 return codes onto v5 reason codes (4 -> 0x86, 5 -> 0x87)
    properties: Properties | None


class Client:
    """A paho-mqtt client whose network loop runs on its own thread; what it receives is queued."""

    def __init__(self, server, version=V5, client_id="", clean=True, transport="tcp"):
        self.version = version
        self.clean = clean
        extra = {} if version == V5 else {"clean_session": clean}
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version,
            transport=transport, reconnect_on_failure=False, **extra,
        )
        if transport == "websockets":
            self.paho.ws_set_options(path="/mqtt")
            self.addr = server.mqtt_ws_addr
        else:
            self.addr = server.mqtt_addr
        self.inbox = queue.Queue()
        self.connack = None
        self.disconnect_reason = None
        self._answered = threading.Event()
        self._gone = threading.Event()
        self._acks = {}
        self._acks_cond = threading.Condition()
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_sub_ack
        self.paho.on_unsubscribe = self._on_sub_ack
        self.paho.on_publish = self._on_publish
        open_clients.append(self)

    # callbacks (network thread)

    def _on_connect(self, _c, _u, flags, reason_code, props):
        self.connack = Connack(bool(flags.session_present), reason_code.value, props)
        self._answered.set()

    def _on_disconnect(self, _c, _u, _flags, reason_code, _props):
        self.disconnect_reason = reason_code.value if reason_code is not None else None
        self._gone.set()
        self._answered.set()

    def _on_message(self, _c, _u, m):
        try:
            topic = m.topic
        except UnicodeDecodeError:
            topic = repr(m._topic)
        self.inbox.put(Message(topic, bytes(m.payload), m.qos, bool(m.retain), getattr(m, "properties", None)))

    def _store_ack(self, mid, ack):
        with self._acks_cond:
            self._acks[mid] = ack
            self._acks_cond.notify_all()

    def _on_sub_ack(self, _c, _u, mid, reason_codes, props):
        self._store_ack(mid, Ack([rc.value for rc in reason_codes], props))

    def _on_publish(self, _c, _u, mid, reason_code, props):
        self._store_ack(mid, Ack(reason_code.value, props))

    def _wait_ack(self, mid, what, timeout=WAIT):
        with self._acks_cond:
            if not self._acks_cond.wait_for(lambda: mid in self._acks, timeout):
                raise AssertionError(f"no {what} for packet {mid} within {timeout}s")
            return self._acks.pop(mid)

    # API

    def connect(self, keepalive=60, clean=None, props=None, username=None, password=None, will=None,
                expect=0):
        """Connects and waits for the CONNACK; `expect` is the reason code it must carry (None: any).
        `will` is a dict of paho will_set() arguments."""
        if username is not None:
            self.paho.username_pw_set(username, password)
        if will is not None:
            self.paho.will_set(**will)
        kwargs = {}
        if self.version == V5:
            kwargs = {"clean_start": self.clean if clean is None else clean, "properties": props}
        self.paho.connect(*self.addr, keepalive=keepalive, **kwargs)
        self.paho.loop_start()
        if not self._answered.wait(WAIT):
            raise AssertionError(f"no CONNACK within {WAIT}s")
        if self.connack is None:
            raise AssertionError(f"connection closed without a CONNACK (reason {self.disconnect_reason})")
        if expect is not None:
            assert self.connack.reason == expect, f"CONNACK reason {self.connack.reason:#x}, wanted {expect:#x}"
        return self.connack

    def subscribe(self, topic, qos=0, options=None, props=None):
        """Subscribes (one filter, or a list of (filter, qos) / (filter, SubscribeOptions)) and waits
        for the SUBACK; returns its reason codes (granted QoS or failure codes)."""
        return self.subscribe_ack(topic, qos, options, props).reason

    def subscribe_ack(self, topic, qos=0, options=None, props=None):
        if isinstance(topic, list) or options is not None:
            rc, mid = self.paho.subscribe(topic, options=options, properties=props)
        else:
            rc, mid = self.paho.subscribe(topic, qos, properties=props)
        assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS, rc
        return self._wait_ack(mid, "SUBACK")

    def unsubscribe(self, topic, props=None):
        rc, mid = self.paho.unsubscribe(topic, properties=props)
        assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS, rc
        return self._wait_ack(mid, "UNSUBACK").reason

    def publish(self, topic, payload=b"", qos=0, retain=False, props=None):
        """Publishes and waits until the flow completes (sent for QoS 0, PUBACK for 1, PUBCOMP for 2);
        returns the reason code of the acknowledgement."""
        return self.publish_ack(topic, payload, qos, retain, props).reason

    def publish_ack(self, topic, payload=b"", qos=0, retain=False, props=None):
        info = self.paho.publish(topic, payload, qos, retain, props)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, info.rc
        return self._wait_ack(info.mid, "acknowledgement")

    def messages(self, count, timeout=WAIT):
        """The next `count` messages, failing if they do not all arrive within `timeout`."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            try:
                out.append(self.inbox.get(timeout=max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                raise AssertionError(f"received {len(out)} of {count} messages within {timeout}s: {out}") from None
        return out

    def message(self, timeout=WAIT):
        return self.messages(1, timeout)[0]

    def no_message(self, wait=QUIET):
        """Fails if a message arrives within `wait` seconds."""
        try:
            m = self.inbox.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {m}")

    def drain(self, wait=0.3):
        """Everything that arrives until `wait` seconds pass without a message."""
        out = []
        while True:
            try:
                out.append(self.inbox.get(timeout=wait))
            except queue.Empty:
                return out

    def disconnect(self, reason=None, props=None):
        """A clean disconnect: sends DISCONNECT and waits for the connection to close."""
        self.paho.disconnect(reason, props)
        self._gone.wait(WAIT)
        self.paho.loop_stop()

    def drop(self):
        """Closes the network connection without a DISCONNECT packet, as a crashed client would."""
        self.paho.loop_stop()
        sock = self.paho.socket()
        if sock is not None:
            sock.close()
        self._gone.set()

    def close(self):
        if not self._gone.is_set():
            self.paho.disconnect()
        self.paho.loop_stop()


def connected(server, version=V5, client_id="", clean=True, transport="tcp", **connect_args):
    c = Client(server, version, client_id, clean, transport)
    c.connect(**connect_args)
    return c


def assert_serving(server, watcher, topic):
    """The server still serves everyone else: a new client and `watcher`, connected throughout and
    subscribed to a filter matching `topic`, both receive what the new client publishes there."""
    fresh = connected(server, V311)
    fresh.subscribe(topic, 1)
    payload = b"alive-%d" % time.monotonic_ns()
    assert fresh.publish(topic, payload, qos=1) == 0
    assert fresh.message().payload == payload
    deadline = time.monotonic() + WAIT
    while watcher.message(max(deadline - time.monotonic(), 0.001)).payload != payload:
        pass
    fresh.disconnect()


def options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    return SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=retain_as_published,
                            retainHandling=retain_handling)


# --- raw packets --------------------------------------------------------------------------------

# MQTT v5 property identifiers and their value types.
PROPERTY_IDS = {
    "PayloadFormatIndicator": (1, "byte"), "MessageExpiryInterval": (2, "u32"),
    "ContentType": (3, "str"), "ResponseTopic": (8, "str"), "CorrelationData": (9, "bin"),
    "SubscriptionIdentifier": (11, "varint"), "SessionExpiryInterval": (17, "u32"),
    "AssignedClientIdentifier": (18, "str"), "ServerKeepAlive": (19, "u16"),
    "AuthenticationMethod": (21, "str"), "AuthenticationData": (22, "bin"),
    "RequestProblemInformation": (23, "byte"), "WillDelayInterval": (24, "u32"),
    "RequestResponseInformation": (25, "byte"), "ResponseInformation": (26, "str"),
    "ServerReference": (28, "str"), "ReasonString": (31, "str"), "ReceiveMaximum": (33, "u16"),
    "TopicAliasMaximum": (34, "u16"), "TopicAlias": (35, "u16"), "MaximumQoS": (36, "byte"),
    "RetainAvailable": (37, "byte"), "UserProperty": (38, "pair"), "MaximumPacketSize": (39, "u32"),
    "WildcardSubscriptionAvailable": (40, "byte"), "SubscriptionIdentifierAvailable": (41, "byte"),
    "SharedSubscriptionAvailable": (42, "byte"),
}
PROPERTY_NAMES = {ident: (name, kind) for name, (ident, kind) in PROPERTY_IDS.items()}
REPEATABLE = {"UserProperty", "SubscriptionIdentifier"}


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf, pos):
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def string(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack(">H", len(b)) + b


def encode_properties(items=()):
    """Property block (length prefixed) from a dict or a list of (name, value) pairs; repeated
    properties (UserProperty) are given once per pair, in order."""
    pairs = items.items() if isinstance(items, dict) else items
    body = b""
    for name, value in pairs:
        ident, kind = PROPERTY_IDS[name]
        body += varint(ident)
        if kind == "byte":
            body += bytes([value])
        elif kind == "u16":
            body += struct.pack(">H", value)
        elif kind == "u32":
            body += struct.pack(">I", value)
        elif kind == "varint":
            body += varint(value)
        elif kind in ("str", "bin"):
            body += string(value)
        else:
            body += string(value[0]) + string(value[1])
    return varint(len(body)) + body


def decode_properties(buf, pos):
    """(dict of properties, position after them); repeatable ones are lists."""
    length, pos = read_varint(buf, pos)
    end = pos + length
    out = {}
    while pos < end:
        ident, pos = read_varint(buf, pos)
        name, kind = PROPERTY_NAMES[ident]
        if kind == "byte":
            value, pos = buf[pos], pos + 1
        elif kind == "u16":
            value, pos = struct.unpack_from(">H", buf, pos)[0], pos + 2
        elif kind == "u32":
            value, pos = struct.unpack_from(">I", buf, pos)[0], pos + 4
        elif kind == "varint":
            value, pos = read_varint(buf, pos)
        elif kind in ("str", "bin"):
            n = struct.unpack_from(">H", buf, pos)[0]
            value, pos = bytes(buf[pos + 2: pos + 2 + n]), pos + 2 + n
            if kind == "str":
                value = value.decode()
        else:
            pair = []
            for _ in range(2):
                n = struct.unpack_from(">H", buf, pos)[0]
                pair.append(bytes(buf[pos + 2: pos + 2 + n]).decode())
                pos += 2 + n
            value = tuple(pair)
        if name in REPEATABLE:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out, end


def fixed(ptype, flags, body):
    return bytes([ptype << 4 | flags]) + varint(len(body)) + body


def connect_packet(client_id="", version=V5, clean=True, keepalive=60, props=(), will=None,
                   username=None, password=None):
    """CONNECT; `will` is a dict with topic, payload and optionally qos, retain, props."""
    flags = 0x02 if clean else 0
    payload = string(client_id)
    if will is not None:
        flags |= 0x04 | will.get("qos", 0) << 3 | (0x20 if will.get("retain") else 0)
        if version == V5:
            payload += encode_properties(will.get("props", ()))
        payload += string(will["topic"]) + string(will["payload"])
    if username is not None:
        flags |= 0x80
        payload += string(username)
    if password is not None:
        flags |= 0x40
        payload += string(password)
    body = string("MQTT") + bytes([version, flags]) + struct.pack(">H", keepalive)
    if version == V5:
        body += encode_properties(props)
    return fixed(CONNECT, 0, body + payload)


def publish_packet(topic, payload=b"", qos=0, pid=1, retain=False, dup=False, version=V5, props=()):
    """PUBLISH; `qos` goes into the fixed header as given (3 makes a malformed packet)."""
    body = string(topic)
    if qos:
        body += struct.pack(">H", pid)
    if version == V5:
        body += encode_properties(props)
    return fixed(PUBLISH, int(dup) << 3 | qos << 1 | int(retain), body + payload)


def subscribe_packet(pid, filters, version=V5, props=(), flags=0b0010):
    """SUBSCRIBE; `filters` is a list of (filter, options byte): the QoS in bits 0-1, for v5 also
    No Local (0x04), Retain As Published (0x08) and Retain Handling (bits 4-5)."""
    body = struct.pack(">H", pid)
    if version == V5:
        body += encode_properties(props)
    for topic_filter, opts in filters:
        body += string(topic_filter) + bytes([opts])
    return fixed(SUBSCRIBE, flags, body)


def ack_packet(ptype, pid, version=V5, reason=0):
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""
    body = struct.pack(">H", pid)
    if version == V5 and reason:
        body += bytes([reason])
    return fixed(ptype, 0b0010 if ptype == PUBREL else 0, body)


def disconnect_packet(version=V5, reason=0):
    return fixed(DISCONNECT, 0, bytes([reason, 0]) if version == V5 and reason else b"")


PINGREQ_PACKET = fixed(PINGREQ, 0, b"")


@dataclasses.dataclass
class Packet:
    type: int
    flags: int
    body: bytes
    version: int
    # Filled in by type.
    pid: int = 0
    reason: int = 0
    reasons: list = dataclasses.field(default_factory=list)
    props: dict = dataclasses.field(default_factory=dict)
    session_present: bool = False
    topic: bytes = b""
    payload: bytes = b""

    @property
    def qos(self):
        return (self.flags >> 1) & 3

    @property
    def retain(self):
        return bool(self.flags & 1)

    @property
    def dup(self):
        return bool(self.flags & 8)

    def parse(self):
        b, v5 = self.body, self.version == V5
        if self.type == CONNACK:
            self.session_present = bool(b[0] & 1)
            self.reason = b[1]
            if v5 and len(b) > 2:
                self.props, _ = decode_properties(b, 2)
        elif self.type == PUBLISH:
            n = struct.unpack_from(">H", b, 0)[0]
            self.topic = bytes(b[2: 2 + n])
            pos = 2 + n
            if self.qos:
                self.pid = struct.unpack_from(">H", b, pos)[0]
                pos += 2
            if v5:
                self.props, pos = decode_properties(b, pos)
            self.payload = bytes(b[pos:])
        elif self.type in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.pid = struct.unpack_from(">H", b, 0)[0]
            if v5 and len(b) > 2:
                self.reason = b[2]
                if len(b) > 3:
                    self.props, _ = decode_properties(b, 3)
        elif self.type in (SUBACK, UNSUBACK):
            self.pid = struct.unpack_from(">H", b, 0)[0]
            pos = 2
            if v5:
                self.props, pos = decode_properties(b, pos)
            self.reasons = list(b[pos:])
        elif self.type == DISCONNECT:
            if len(b) >= 1:
                self.reason = b[0]
            if len(b) > 1:
                self.props, _ = decode_properties(b, 1)
        return self


class RawClient:
    """A TCP connection to the MQTT listener that sends bytes as given and parses what comes back."""

    def __init__(self, server, version=V5):
        self.version = version
        self.sock = socket.create_connection(server.mqtt_addr, timeout=WAIT)
        self.buf = b""
        self.eof = False
        open_clients.append(self)

    def send(self, data):
        self.sock.sendall(data)

    def connect(self, client_id="", expect=0, **kwargs):
        """Sends CONNECT and returns the CONNACK, which must carry reason `expect` (None: any)."""
        self.send(connect_packet(client_id, self.version, **kwargs))
        p = self.read()
        assert p is not None, "connection closed instead of a CONNACK"
        assert p.type == CONNACK, f"expected CONNACK, got {p}"
        if expect is not None:
            assert p.reason == expect, f"CONNACK reason {p.reason:#x}, wanted {expect:#x}"
        return p

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk

    def _take(self):
        """A whole packet from the buffer, or None if it holds only part of one."""
        if len(self.buf) < 2:
            return None
        length, shift, pos = 0, 0, 1
        while True:
            if pos >= len(self.buf):
                return None
            byte = self.buf[pos]
            length |= (byte & 0x7F) << shift
            shift += 7
            pos += 1
            if not byte & 0x80:
                break
        if len(self.buf) < pos + length:
            return None
        header, body = self.buf[0], self.buf[pos: pos + length]
        self.buf = self.buf[pos + length:]
        return Packet(header >> 4, header & 0x0F, body, self.version).parse()

    def read(self, timeout=WAIT):
        """The next packet; None once the server has closed the connection. Fails on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            p = self._take()
            if p is not None:
                return p
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no packet within {timeout}s")
            try:
                self._fill(left)
            except socket.timeout:
                raise AssertionError(f"no packet within {timeout}s") from None

    def expect(self, ptype, timeout=WAIT):
        p = self.read(timeout)
        assert p is not None, f"connection closed while waiting for packet type {ptype}"
        assert p.type == ptype, f"expected packet type {ptype}, got {p}"
        return p

    def expect_any(self, timeout=WAIT):
        p = self.read(timeout)
        assert p is not None, "connection closed"
        return p

    def closed(self, timeout=WAIT):
        """Reads until the server closes the connection; returns the packets received before that.
        Fails if the connection is still open after `timeout`."""
        packets = []
        deadline = time.monotonic() + timeout
        while True:
            p = self.read(max(deadline - time.monotonic(), 0.001))
            if p is None:
                return packets
            packets.append(p)

    def silent(self, wait=QUIET):
        """Fails if a packet arrives (or the connection closes) within `wait` seconds."""
        try:
            p = self.read(wait)
        except AssertionError:
            return
        raise AssertionError(f"unexpected {'close' if p is None else p}")

    def close(self):
        self.sock.close()


class WebSocketRawClient(RawClient):
    """RawClient over the WebSocket listener: the upgrade done by hand, packets carried in masked
    binary frames (`frames` splits what is sent at the given offsets, one frame per piece)."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, server, version=V5, protocol="mqtt"):
        self.version = version
        self.sock = socket.create_connection(server.mqtt_ws_addr, timeout=WAIT)
        self.buf = b""
        self.eof = False
        self.frames_in = b""
        open_clients.append(self)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            "GET /mqtt HTTP/1.1\r\n"
            f"Host: {server.mqtt_ws_addr[0]}:{server.mqtt_ws_addr[1]}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed during the WebSocket handshake: {response!r}"
            response += chunk
        head, self.frames_in = response.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = lines[0]
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        assert self.status.split()[1] == "101", self.status
        assert self.headers.get("sec-websocket-accept") == accept, self.headers

    @staticmethod
    def frame(payload, opcode=0x2):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        elif n < 1 << 16:
            head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack(">H", n)
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", n)
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def send(self, data, splits=()):
        cuts = [0, *splits, len(data)]
        self.sock.sendall(b"".join(self.frame(data[a:b]) for a, b in zip(cuts, cuts[1:])))

    def _fill(self, timeout):
        while True:
            # Unwrap every whole frame received so far.
            while len(self.frames_in) >= 2:
                b0, b1 = self.frames_in[0], self.frames_in[1]
                n, pos = b1 & 0x7F, 2
                if n == 126:
                    if len(self.frames_in) < 4:
                        break
                    n, pos = struct.unpack_from(">H", self.frames_in, 2)[0], 4
                elif n == 127:
                    if len(self.frames_in) < 10:
                        break
                    n, pos = struct.unpack_from(">Q", self.frames_in, 2)[0], 10
                assert not b1 & 0x80, "the server masked a frame"
                if len(self.frames_in) < pos + n:
                    break
                payload, self.frames_in = self.frames_in[pos: pos + n], self.frames_in[pos + n:]
                opcode = b0 & 0x0F
                if opcode in (0x0, 0x2):
                    self.buf += payload
                    return
                if opcode == 0x8:
                    self.eof = True
                    return
                if opcode == 0x9:
                    self.sock.sendall(self.frame(payload, 0xA))
                else:
                    raise AssertionError(f"unexpected WebSocket frame opcode {opcode:#x}")
            self.sock.settimeout(timeout)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.eof = True
                return
            self.frames_in += chunk


def disconnect_reason(packets):
    """The reason code of the DISCONNECT among `packets`, None if there is none."""
    codes = [p.reason for p in packets if p.type == DISCONNECT]
    return codes[-1] if codes else None


# --- server side helpers ------------------------------------------------------------------------


def hash_password(password):
    """An argon2 PHC string from `strata mqtt passwd`."""
    out = subprocess.run([strata_bin(), "mqtt", "passwd"], input=password + "\n", capture_output=True,
                         text=True, timeout=30, check=True).stdout.strip()
    assert out, "strata mqtt passwd printed nothing"
    return out


def kafka_topics(bootstrap):
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def consume_records(bootstrap, topic, count, timeout=15):
    """Reads `count` records from the start of `topic`: (partition, offset, key, value, headers)."""
    out = consume(bootstrap, topic, count, timeout=timeout, with_headers=True)
    assert len(out) == count, f"read {len(out)} of {count} records from {topic}: {out}"
    return out
