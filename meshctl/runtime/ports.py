"""Port assignment on 127.0.0.1 that keeps a process on the same port across restarts and runs.

A key ("reviews-v1-0/inbound") keeps its port while that port is free; a new key gets a port
the kernel picks as free. Assignments live in the state dir's ports.json.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from meshctl.runtime.state import read_json, write_json

HOST = "127.0.0.1"


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _kernel_free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class PortBook:
    """Assignments by key; `assign` reuses a key's old port when it is still free."""

    def __init__(self, path: Path) -> None:
        self.path = path
        raw = read_json(path, {}) or {}
        self.ports: dict[str, int] = {str(k): int(v) for k, v in raw.items()}
        self._taken_now: set[int] = set()

    def assign(self, key: str, *, in_use_ok: bool = False) -> int:
        """A port for `key`. `in_use_ok`: the key's process may be running and holding it."""
        old = self.ports.get(key)
        if old is not None and old not in self._taken_now and (in_use_ok or port_is_free(old)):
            self._taken_now.add(old)
            return old
        taken = set(self.ports.values()) | self._taken_now
        for _ in range(50):
            port = _kernel_free_port()
            if port not in taken:
                break
        self.ports[key] = port
        self._taken_now.add(port)
        return port

    def release(self, prefix: str) -> None:
        for key in [k for k in self.ports if k.startswith(prefix)]:
            del self.ports[key]

    def save(self) -> None:
        write_json(self.path, self.ports)
