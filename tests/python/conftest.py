"""Starts real `strata serve` processes for the client tests.

Each test gets its own server on free ports with a fresh data directory: Kafka, admin, and MQTT
over TCP and over WebSocket. The binary comes from STRATA_BIN (scripts/test.sh builds it); the
tests talk to it only through real clients.
"""

import os
import pathlib
import random
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def strata_bin():
    path = os.environ.get("STRATA_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
        path = os.path.join(target, "release", "strata")
    if not os.path.exists(path):
        pytest.fail(f"strata binary not found at {path}: build it or set STRATA_BIN")
    return path


_handed_out = set()


def _ephemeral_range():
    try:
        lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A free port below the ephemeral range, so that no client connection made meanwhile
    (which takes its local port from that range) can occupy it before the server binds it."""
    lo, _ = _ephemeral_range()
    if lo > 11000:
        for _ in range(500):
            port = random.randint(10000, lo - 1)
            if port in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `strata serve` process; restartable on the same ports and data directory."""

    def __init__(self, data_dir, extra_args=(), nofile=None, binary=None, env=None):
        self.binary = binary
        # STRATA_* variables for the process; a setting they give is not also given as a flag.
        self.env = dict(env or {})
        self.data_dir = str(data_dir)
        self.extra_args = list(extra_args)
        # (soft, hard) RLIMIT_NOFILE for the process, to test descriptor exhaustion.
        self.nofile = nofile
        self.kafka_port = free_port()
        self.admin_port = free_port()
        self.mqtt_port = free_port()
        self.mqtt_ws_port = free_port()
        self.proc = None
        self.log = []

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin_url(self):
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def mqtt_addr(self):
        """(host, port) of the MQTT listener over TCP."""
        return ("127.0.0.1", self.mqtt_port)

    @property
    def mqtt_ws_addr(self):
        """(host, port) of the MQTT listener over WebSocket, served at path /mqtt."""
        return ("127.0.0.1", self.mqtt_ws_port)

    def start(self):
        settings = [
            ("--data-dir", self.data_dir),
            ("--kafka-addr", f"127.0.0.1:{self.kafka_port}"),
            ("--admin-addr", f"127.0.0.1:{self.admin_port}"),
            ("--mqtt-addr", f"127.0.0.1:{self.mqtt_port}"),
            ("--mqtt-ws-addr", f"127.0.0.1:{self.mqtt_ws_port}"),
            ("--group-initial-rebalance-delay-ms", "300"),
            ("--log-level", os.environ.get("STRATA_TEST_LOG", "info")),
        ]
        args = [self.binary or strata_bin(), "serve"]
        for flag, value in settings:
            if "STRATA_" + flag[2:].upper().replace("-", "_") not in self.env:
                args += [flag, value]
        args += self.extra_args
        limit = None
        if self.nofile:
            import resource

            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, preexec_fn=limit,
                                     env={**os.environ, **self.env})
        ready = threading.Event()

        def pump(proc):
            for line in proc.stderr:
                self.log.append(line.rstrip("\n"))
                if "strata listening" in line:
                    ready.set()

        threading.Thread(target=pump, args=(self.proc,), daemon=True).start()
        deadline = time.time() + 60
        while not ready.wait(0.1):
            if self.proc.poll() is not None:
                raise RuntimeError("strata exited early:\n" + "\n".join(self.log[-30:]))
            if time.time() > deadline:
                raise RuntimeError("strata did not start:\n" + "\n".join(self.log[-30:]))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def logs(self):
        return "\n".join(self.log)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


# Connections a test opened (objects with a close() method, such as the MQTT clients in
# mqtt_helpers), closed when the test ends, before its servers stop.
open_clients = []


def close_clients():
    while open_clients:
        client = open_clients.pop()
        try:
            client.close()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data").start()
    yield s
    close_clients()
    s.stop()


@pytest.fixture
def make_server(tmp_path):
    """For tests that need their own flags."""
    servers = []

    def make(*extra):
        s = Server(tmp_path / f"data{len(servers)}", extra).start()
        servers.append(s)
        return s

    yield make
    close_clients()
    for s in servers:
        s.stop()


def unique(prefix):
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    """A throwaway MariaDB (scripts/mariadb.py) shared by the tests of one run."""
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    from mariadb import MariaDb

    db = MariaDb(tmp_path_factory.mktemp("mariadb")).start()
    yield db
    db.stop()


@pytest.fixture
def mysql_url(mariadb):
    """A fresh, empty database on the test MariaDB."""
    if mariadb.proc is None:
        mariadb.start()
    return mariadb.fresh_database()


@pytest.fixture(scope="session")
def s3server(tmp_path_factory):
    """A throwaway S3-compatible server (scripts/s3server.py) shared by the tests of one run."""
    import sys
    sys.path.insert(0, str(ROOT / "scripts"))
    from s3server import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_args(s3server):
    """`strata serve` flags for a fresh, empty bucket on the test S3 server."""
    if s3server.proc is None:
        s3server.start()
    return s3server.args(s3server.fresh_bucket())
