"""mosquitto_pub and mosquitto_sub (Debian's mosquitto-clients) against `strata serve`."""

import queue
import subprocess
import threading
import time

import pytest

from mqtt_helpers import WAIT, hash_password


def address(server):
    return ["-h", server.mqtt_addr[0], "-p", str(server.mqtt_addr[1])]


def pub(server, *args, check=True):
    return subprocess.run(["mosquitto_pub", *address(server), *args], capture_output=True, text=True,
                          timeout=15, check=check)


class Sub:
    """mosquitto_sub in the background, started once its subscription is acknowledged."""

    def __init__(self, server, *args):
        # Line-buffered stdout, so the -d line for the SUBACK arrives when it is printed.
        self.proc = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", *address(server), "-d", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + WAIT
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"mosquitto_sub got no SUBACK: {self.proc.stderr.read()}") from None
            if line is None:
                raise AssertionError(f"mosquitto_sub exited: {self.proc.stderr.read()}")
            if "received SUBACK" in line:
                return

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def finish(self, timeout=15):
        """Waits for mosquitto_sub to exit; returns (exit code, printed messages without -d lines)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        out = []
        while (line := self.lines.get(timeout=5)) is not None:
            if not (line.startswith("Client ") or line.startswith("Subscribed (")):
                out.append(line)
        return code, out


@pytest.mark.parametrize("proto", ["mqttv311", "mqttv5"])
def test_round_trip(server, proto):
    sub = Sub(server, "-V", proto, "-q", "1", "-t", "cli/#", "-C", "3", "-W", "10", "-F", "%q %t %p")
    for i, qos in enumerate((1, 2, 0)):
        pub(server, "-V", proto, "-q", str(qos), "-t", f"cli/{i}", "-m", f"message {i}")
    assert sub.finish() == (0, ["1 cli/0 message 0", "1 cli/1 message 1", "0 cli/2 message 2"])


@pytest.mark.parametrize("proto", ["mqttv311", "mqttv5"])
def test_retained(server, proto):
    pub(server, "-V", proto, "-q", "1", "-r", "-t", "cli/state", "-m", "on")
    out = subprocess.run(["mosquitto_sub", *address(server), "-V", proto, "-q", "1", "-t", "cli/state",
                          "-C", "1", "-W", "5", "-F", "%r %q %t %p"],
                         capture_output=True, text=True, timeout=15)
    assert (out.returncode, out.stdout.splitlines()) == (0, ["1 1 cli/state on"]), out.stderr
    # A null retained message clears it: nothing arrives before the timeout.
    pub(server, "-V", proto, "-q", "1", "-r", "-n", "-t", "cli/state")
    start = time.monotonic()
    out = subprocess.run(["mosquitto_sub", *address(server), "-V", proto, "-t", "cli/state", "-C", "1", "-W", "1"],
                         capture_output=True, text=True, timeout=15)
    assert out.returncode != 0 and out.stdout == "" and time.monotonic() - start < 4


def test_count_and_timeout(server):
    sub = Sub(server, "-q", "1", "-t", "count/#", "-C", "2", "-W", "10")
    for i in range(3):
        pub(server, "-q", "1", "-t", f"count/{i}", "-m", f"c{i}")
    assert sub.finish() == (0, ["c0", "c1"])
    # Nothing to receive: mosquitto_sub gives up after -W seconds with a failure.
    start = time.monotonic()
    out = subprocess.run(["mosquitto_sub", *address(server), "-t", "silence", "-C", "1", "-W", "1"],
                         capture_output=True, text=True, timeout=15)
    assert out.returncode != 0 and out.stdout == ""
    assert time.monotonic() - start < 4


@pytest.mark.parametrize("proto", ["mqttv311", "mqttv5"])
def test_user_and_password(make_server, tmp_path, proto):
    auth = tmp_path / "mqtt-auth.toml"
    auth.write_text(f"""\
[users.carol]
password = '{hash_password("carol-secret")}'
publish = ["cli/#"]
subscribe = ["cli/#"]
""")
    server = make_server("--mqtt-auth", str(auth))
    creds = ["-u", "carol", "-P", "carol-secret"]
    pub(server, "-V", proto, *creds, "-q", "1", "-r", "-t", "cli/auth", "-m", "accepted")
    out = subprocess.run(["mosquitto_sub", *address(server), "-V", proto, *creds, "-t", "cli/#",
                          "-C", "1", "-W", "5", "-v"], capture_output=True, text=True, timeout=15)
    assert (out.returncode, out.stdout) == (0, "cli/auth accepted\n"), out.stderr
    for name, args in [("wrong password", ["-u", "carol", "-P", "nope"]), ("unknown user", ["-u", "dave", "-P", "x"]),
                       ("anonymous", [])]:
        failed = pub(server, "-V", proto, *args, "-q", "1", "-t", "cli/auth", "-m", "refused", check=False)
        assert failed.returncode != 0, f"{name}: mosquitto_pub succeeded"
        failed = subprocess.run(["mosquitto_sub", *address(server), "-V", proto, *args, "-t", "cli/#", "-C", "1",
                                 "-W", "3"], capture_output=True, text=True, timeout=15)
        assert failed.returncode != 0 and failed.stdout == "", f"{name}: mosquitto_sub {failed}"
