"""TCP port helpers: pick free ports, tell whether a port is taken and by whom.

Tests pick ports at run time (never fixed numbers) so several test sessions,
or a test session beside a developer's running stack, never collide. The CLI
uses standard ports and must say clearly when one is taken by a process that
the stack did not start, instead of launching a server that dies on bind.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A port that was free on ``host`` a moment ago (the OS picks it).

    There is a small window between closing the probe socket and the server
    binding it; the kernel does not hand the same ephemeral port out again
    right away, so this is reliable enough for tests.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = LOCALHOST) -> list[int]:
    """``count`` distinct free ports (probe sockets held open together)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    """Whether a server could not bind ``host:port`` now.

    Probes with SO_REUSEADDR, as servers do, so sockets lingering in
    TIME_WAIT from a stopped server don't count as "in use"; a listener on
    0.0.0.0 or on ``host`` does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_open(port: int, host: str = LOCALHOST, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (Linux /proc/net/tcp{,6})."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def port_owner(port: int) -> str | None:
    """Best-effort "pid N (name)" of the process listening on ``port``.

    Linux only, and only for processes this user may inspect; ``None`` when
    unknown. Used to make "port taken" errors actionable.
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        name = (proc / "comm").read_text().strip()
                        return f"pid {proc.name} ({name})"
    return None
