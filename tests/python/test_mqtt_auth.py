"""MQTT users and topic ACLs from `--mqtt-auth`: CONNACK codes, and what each client may publish
and subscribe to, in MQTT 3.1.1 (silent drops, SUBACK 0x80) and 5.0 (reason codes and strings)."""

import pytest

from mqtt_helpers import (
    PUBACK, PUBLISH, PUBREC, SUBACK, V5, V311, RawClient, ack_packet, connected, hash_password, prop,
    publish_packet, subscribe_packet, wait_until,
)

VERSIONS = pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
ACCEPTED = (0x00, 0x10)  # MQTT 5 PUBACK: success, or success with no matching subscribers
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def password_hashes():
    return {user: hash_password(pw) for user, pw in PASSWORDS.items()}


@pytest.fixture
def auth_server(make_server, tmp_path, password_hashes):
    """A server with users alice and bob; `allow_anonymous` as asked (default: not allowed)."""

    def start(allow_anonymous=False):
        path = tmp_path / f"mqtt-auth-{allow_anonymous}.toml"
        path.write_text(f"""\
allow_anonymous = {str(allow_anonymous).lower()}

[users.alice]
password = '{password_hashes["alice"]}'
publish = ["sensors/%u/#"]
subscribe = ["sensors/#"]

[users.bob]
password = '{password_hashes["bob"]}'
publish = ["sensors/%u/#", "devices/%c/#"]
subscribe = ["sensors/+/temp"]

[everyone]
publish = ["public/#"]
subscribe = ["public/#"]
""")
        return make_server("--mqtt-auth", str(path))

    return start


def login(user):
    return {"username": user, "password": PASSWORDS[user]}


def test_v311_connack_return_codes(auth_server):
    server = auth_server()
    ok = RawClient(server, V311)
    ok.connect("ok", username="alice", password=PASSWORDS["alice"])
    for name, creds, code in [
        ("wrong password", {"username": "alice", "password": "nope"}, 4),
        ("unknown user", {"username": "mallory", "password": "alice-secret"}, 4),
        ("no password", {"username": "alice"}, 4),
        ("anonymous", {}, 5),
    ]:
        c = RawClient(server, V311)
        ack = c.connect(f"refused-{code}", expect=None, **creds)
        assert ack.reason == code, f"{name}: return code {ack.reason}"
        assert not ack.session_present
        assert c.closed() == [], f"{name}: the connection stayed open"


def test_v5_connack_reason_codes(auth_server):
    server = auth_server()
    connected(server, V5, **login("bob"))
    connected(server, V5, expect=0x86, username="bob", password="alice-secret")
    connected(server, V5, expect=0x86, username="mallory", password="x")
    connected(server, V5, expect=0x87)
    raw = RawClient(server)
    raw.connect("raw-anon", expect=0x87)
    assert raw.closed() == []


@VERSIONS
def test_publish_acl(auth_server, version):
    server = auth_server()
    watcher = connected(server, version, "watcher", **login("alice"))
    watcher.subscribe([("sensors/#", 1), ("public/#", 1)])
    alice = connected(server, version, "alice-1", **login("alice"))

    # Allowed by her own rule (%u) and by the rule for everyone.
    for qos in range(3):
        assert alice.publish("sensors/alice/t", b"mine-%d" % qos, qos=qos) == 0
    assert alice.publish("public/news", b"public", qos=1) == 0
    got = watcher.messages(4)
    assert sorted((m.topic, m.payload) for m in got) == sorted(
        [("sensors/alice/t", b"mine-%d" % q) for q in range(3)] + [("public/news", b"public")])

    # Denied: never delivered. MQTT 5 says so in the PUBACK, with a reason string; MQTT 3.1.1 has no
    # way to, so the PUBACK looks like success and only the log tells.
    ack = alice.publish_ack("sensors/bob/t", b"not hers", qos=1)
    if version == V5:
        assert ack.reason == 0x87
        assert prop(ack.properties, "ReasonString")
    else:
        assert ack.reason == 0
        assert alice.publish("sensors/bob/t", b"not hers at QoS 2", qos=2) == 0
        wait_until(lambda: "denied" in server.logs(), what="a log line about the denied publish")
    alice.publish("sensors/bob/t", b"not hers either", qos=0)
    watcher.no_message()

    if version == V5:
        # QoS 2: the flow ends at a PUBREC carrying the failure.
        raw = RawClient(server)
        raw.connect("alice-raw", username="alice", password=PASSWORDS["alice"])
        raw.send(publish_packet("sensors/bob/t", b"qos2", qos=2, pid=9))
        rec = raw.expect(PUBREC)
        assert (rec.pid, rec.reason) == (9, 0x87)
        assert rec.props.get("ReasonString")
        watcher.no_message(0.5)
    # The connection survives a denial.
    assert alice.publish("sensors/alice/t", b"still here", qos=1) == 0
    assert watcher.message().payload == b"still here"


@VERSIONS
def test_subscribe_acl(auth_server, version):
    server = auth_server()
    denied = 0x87 if version == V5 else 0x80
    # Raw SUBACKs, to see the codes exactly as sent.
    alice = RawClient(server, version)
    alice.connect("alice-raw", username="alice", password=PASSWORDS["alice"])
    filters = ["sensors/#", "sensors/+/temp", "sensors/alice/#", "public/#", "other/#", "#", "+/alice/#"]
    alice.send(subscribe_packet(1, [(f, 1) for f in filters], version))
    ack = alice.expect(SUBACK)
    assert ack.reasons == [1, 1, 1, 1, denied, denied, denied]
    if version == V5:
        assert ack.props.get("ReasonString")

    # A filter is allowed only when a rule covers all of it.
    bob = RawClient(server, version)
    bob.connect("bob-raw", username="bob", password=PASSWORDS["bob"])
    bob.send(subscribe_packet(2, [("sensors/+/temp", 2), ("sensors/kitchen/temp", 0), ("sensors/#", 1),
                                  ("sensors/+/humidity", 1)], version))
    assert bob.expect(SUBACK).reasons == [2, 0, denied, denied]

    # What was granted delivers; what was denied does not.
    publisher = connected(server, version, **login("alice"))
    publisher.publish("sensors/alice/temp", b"21", qos=1)
    m = bob.expect(PUBLISH)
    assert (m.topic, m.payload, m.qos) == (b"sensors/alice/temp", b"21", 1)
    bob.send(ack_packet(PUBACK, m.pid, version))
    publisher.publish("sensors/alice/humidity", b"40", qos=1)
    bob.silent()


def test_client_id_in_rules(auth_server):
    server = auth_server()
    bob = connected(server, V5, "dev1", **login("bob"))
    assert bob.publish("devices/dev1/state", b"on", qos=1) in ACCEPTED
    assert bob.publish("devices/dev2/state", b"on", qos=1) == 0x87
    other = connected(server, V5, "dev2", **login("bob"))
    assert other.publish("devices/dev2/state", b"on", qos=1) in ACCEPTED
    assert other.publish("devices/dev1/state", b"on", qos=1) == 0x87


def test_anonymous_clients_get_the_rules_for_everyone(auth_server):
    server = auth_server(allow_anonymous=True)
    anon = connected(server, V5)
    assert anon.subscribe([("public/#", 1), ("sensors/#", 1)]) == [1, 0x87]
    assert anon.publish("public/chat", b"hi", qos=1) == 0
    assert anon.message().payload == b"hi"
    assert anon.publish("sensors/anon/t", b"no", qos=1) == 0x87
    anon.no_message()
    # Bad credentials are still refused rather than treated as anonymous.
    connected(server, V5, expect=0x86, username="alice", password="wrong")
    connected(server, V311, expect=0x86, username="alice", password="wrong")  # return code 4
    alice = connected(server, V5, **login("alice"))
    assert alice.subscribe("public/#", 1) == [1]
