#!/usr/bin/env python3
"""A throwaway MariaDB server: its own data directory, a free port, root over a private socket.

Used by the client tests (tests/python/conftest.py) and the storage benchmark script:

    scripts/mariadb.py start DIR     # starts a server that stays up; prints an empty database's URL
    scripts/mariadb.py fresh DIR     # prints the URL of another empty database on it
    scripts/mariadb.py stop DIR      # stops it and removes DIR

Needs Debian's mariadb-server (scripts/test.sh installs it); never touches a server that
happens to be running already.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from ports import free_port

USER, PASSWORD = "strata", "strata-test"


def _binary(name):
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    path = shutil.which(name)
    if path:
        return path
    raise RuntimeError(f"{name} not found: install Debian's mariadb-server (scripts/test.sh does)")


class MariaDb:
    def __init__(self, directory, port=None):
        self.dir = pathlib.Path(directory).resolve()
        self.port = port or free_port()
        self.proc = None
        self._databases = 0

    @property
    def socket(self):
        return str(self.dir / "sock")

    def url(self, database):
        return f"mysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def install(self):
        data = self.dir / "data"
        if (data / "mysql").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            [_binary("mariadb-install-db"), "--no-defaults", f"--datadir={data}",
             "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"],
            capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError("mariadb-install-db failed:\n" + out.stdout + out.stderr)

    def start(self, timeout=60):
        self.install()
        log = open(self.dir / "error.log", "ab")
        self.proc = subprocess.Popen(
            [_binary("mariadbd"), "--no-defaults", f"--datadir={self.dir / 'data'}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
             f"--pid-file={self.dir / 'pid'}", "--user=root", "--skip-log-bin",
             "--max-allowed-packet=256M", "--innodb-buffer-pool-size=256M",
             "--innodb-log-file-size=256M", "--max-connections=1000"],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        deadline = time.time() + timeout
        while not self._try("SELECT 1"):
            if self.proc.poll() is not None or time.time() > deadline:
                tail = (self.dir / "error.log").read_text(errors="replace")[-2000:]
                raise RuntimeError("MariaDB did not start:\n" + tail)
            time.sleep(0.1)
        self.sql(f"CREATE USER IF NOT EXISTS {USER}@'%' IDENTIFIED BY '{PASSWORD}'; "
                 f"GRANT ALL ON *.* TO {USER}@'%'")
        return self

    def _try(self, sql):
        return subprocess.run(
            [_binary("mariadb"), "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", sql],
            capture_output=True).returncode == 0

    def sql(self, sql):
        out = subprocess.run(
            [_binary("mariadb"), "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-e", sql],
            capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"MariaDB refused {sql!r}: {out.stderr}")
        return out.stdout

    def fresh_database(self, prefix="t"):
        self._databases += 1
        name = f"{prefix}{os.getpid()}_{self._databases}"
        self.sql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self):
        """A clean shutdown (SIGTERM), as an operator's restart would do."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "fresh", "stop"):
        sys.exit(__doc__)
    directory = pathlib.Path(sys.argv[2])
    if sys.argv[1] == "start":
        db = MariaDb(directory).start()
        (directory / "port").write_text(str(db.port))
        (directory / "server.pid").write_text(str(db.proc.pid))
        print(db.fresh_database("bench"))
    elif sys.argv[1] == "fresh":
        db = MariaDb(directory, port=int((directory / "port").read_text()))
        db._databases = int(time.time() * 1000) % 10**9
        print(db.fresh_database("bench"))
    else:
        pid = int((directory / "server.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(600):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
