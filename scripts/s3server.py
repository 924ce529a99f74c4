#!/usr/bin/env python3
"""A throwaway S3-compatible server (tools/s3-server, s3s-fs's backend): its own directory and a
free port, path-style, with fixed test credentials.

Used by the client tests (tests/python/conftest.py) and the storage benchmark script:

    scripts/s3server.py start DIR    # starts a server that stays up; prints its endpoint URL
    scripts/s3server.py stop DIR     # stops it and removes DIR

The binary is $STRATA_TEST_S3, else ~/.cache/strata/tools/bin/strata-test-s3, where
scripts/test.sh installs it (cargo install --locked --path tools/s3-server).
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

from ports import free_port

ACCESS_KEY, SECRET_KEY = "strata-test", "strata-test-secret"


def binary():
    path = os.environ.get("STRATA_TEST_S3") or os.path.expanduser(
        "~/.cache/strata/tools/bin/strata-test-s3")
    if not os.path.exists(path):
        found = shutil.which("strata-test-s3")
        if not found:
            raise RuntimeError(
                "strata-test-s3 not found: install it with "
                "`cargo install --locked --path tools/s3-server --root ~/.cache/strata/tools` "
                "(scripts/test.sh does)")
        path = found
    return path


class S3Server:
    def __init__(self, directory, port=None):
        self.dir = pathlib.Path(directory).resolve()
        self.port = port or free_port()
        self.proc = None
        self._buckets = 0

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def args(self, bucket):
        """`strata serve` flags for `bucket` on this server."""
        return ["--s3-endpoint", self.endpoint, "--s3-bucket", bucket,
                "--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY]

    def fresh_bucket(self, prefix="b"):
        self._buckets += 1
        name = f"{prefix}-{os.getpid()}-{self._buckets}"
        (self.dir / "root" / name).mkdir(parents=True, exist_ok=True)
        return name

    def objects(self, bucket):
        """Keys of the files under a bucket (s3s-fs keeps one file per object)."""
        root = self.dir / "root" / bucket
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and not p.name.startswith(".") and ".s3s" not in p.parts)

    def start(self, timeout=30):
        (self.dir / "root").mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [binary(), "--host", "127.0.0.1", "--port", str(self.port), "--access-key",
             ACCESS_KEY, "--secret-key", SECRET_KEY, str(self.dir / "root")],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        deadline = time.time() + timeout
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the S3 server did not start:\n"
                                   + (self.dir / "server.log").read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit(__doc__)
    directory = pathlib.Path(sys.argv[2])
    if sys.argv[1] == "start":
        server = S3Server(directory).start()
        (directory / "server.pid").write_text(str(server.proc.pid))
        print(server.endpoint)
    else:
        try:
            os.kill(int((directory / "server.pid").read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
