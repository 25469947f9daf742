"""Ports for servers that cannot bind port 0 and say which they got.

Redis, PostgreSQL, Prometheus, Alertmanager, the Pushgateway, etcd, the API
server and the operator's own listeners are told a port. Every one of them, in
``tests/`` and in ``e2e/``, gets it here, so that one run never hands out the
same port twice (a restarted operator keeps its webhook port; nothing else can
have been given it in the meantime).

The ports come from outside the kernel's ephemeral range
(``net.ipv4.ip_local_port_range``), where nothing binding port 0 (sidecars,
upstreams) and no outgoing connection gets a port: between the check here and
the server's own bind, no other part of the run can take it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 10000  # below: well-known services a machine may run
_HIGHEST = 65535
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _outside_ephemeral() -> range:
    """The wider of the two stretches around the ephemeral range."""
    low, high = _ephemeral_range()
    below = range(_LOWEST, max(_LOWEST, low))
    above = range(min(high + 1, _HIGHEST + 1), _HIGHEST + 1)
    return below if len(below) >= len(above) else above


PORTS = _outside_ephemeral()


def free_port() -> int:
    """A port nothing listens on and this run has not handed out before."""
    for _ in range(1000):
        port = random.choice(PORTS)
        if port in _handed_out:
            continue
        _handed_out.add(port)  # taken or not, never offered again
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # a service of the machine's own
        return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1} after 1000 tries")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports, each as :func:`free_port` gives them."""
    return [free_port() for _ in range(count)]
