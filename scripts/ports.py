"""Free TCP ports for the throwaway servers that scripts/mariadb.py and scripts/s3server.py
start: below the ephemeral range, so that no client's outgoing connection takes the port
before the server binds it."""

import random
import socket


def free_port():
    try:
        lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        lo = 32768
    for _ in range(500):
        port = random.randint(10000, max(10001, lo - 1))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below the ephemeral range")
