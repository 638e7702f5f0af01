"""Port assignment on 127.0.0.1 that keeps a process on the same port across restarts and runs.

A key ("reviews-v1-0/inbound") keeps its port while that port is free; a new key gets a free
port chosen below the kernel's ephemeral range. Ports the kernel hands out itself (bind to 0)
would be a trap: any outgoing connection on the machine may take such a port as its source
port between the moment it is chosen and the moment the process listens on it.

Meshes run side by side (one per state directory) claim their ports in a shared directory
(`MESHCTL_PORT_CLAIMS`, default `<tmp>/meshctl-ports-<uid>/`): one file per port naming the
state directory that holds it. A claim is stale once its owner no longer lists the port.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from meshctl.runtime.state import Record, StateFileError, read_record, write_record

HOST = "127.0.0.1"
LOWEST_PORT = 10_000
RANGE_WIDTH = 20_000
CLAIM_GRACE_S = 300.0
PORTS_VERSION = "meshctl.dev/state/ports/v1"


@dataclass
class Ports:
    ports: dict[str, int] = field(default_factory=dict)


PORTS = Record(
    "ports.json", PORTS_VERSION, Ports,
    "after `meshctl down`, remove it: the next `meshctl up` chooses new ports",
)


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


def assignable_range() -> range:
    """Ports below the ephemeral range (Linux: ip_local_port_range), at most RANGE_WIDTH."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    top = max(low, LOWEST_PORT + 1_000)
    return range(max(LOWEST_PORT, top - RANGE_WIDTH), top)


def claims_dir() -> Path:
    env = os.environ.get("MESHCTL_PORT_CLAIMS")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"meshctl-ports-{os.getuid()}"


class PortBook:
    """Assignments by key; `assign` reuses a key's old port when it is still free."""

    def __init__(self, path: Path, *, required: bool = False) -> None:
        """`required`: the mesh runs, so its ports must be known (a missing file is an error)."""
        self.path = path
        self.owner = str(path.parent.resolve())
        saved: Ports | None = read_record(path, PORTS, required=required)
        self.ports: dict[str, int] = dict(saved.ports) if saved else {}
        self._taken_now: set[int] = set()
        self._claims = claims_dir()

    def assign(self, key: str, *, in_use_ok: bool = False) -> int:
        """A port for `key`. `in_use_ok`: the key's process may be running and holding it."""
        old = self.ports.get(key)
        if (
            old is not None
            and old not in self._taken_now
            and self._claim(old)
            and (in_use_ok or port_is_free(old))
        ):
            self._taken_now.add(old)
            return old
        port = self._fresh_port()
        self.ports[key] = port
        self._taken_now.add(port)
        return port

    def _fresh_port(self) -> int:
        taken = set(self.ports.values()) | self._taken_now
        candidates = assignable_range()
        for _ in range(500):
            port = random.choice(candidates)
            if port not in taken and port_is_free(port) and self._claim(port):
                return port
        raise OSError(f"no free port found in {candidates.start}-{candidates.stop - 1}")

    # --- claims between meshes on one machine -----------------------------------------------

    def _claim(self, port: int) -> bool:
        """Take `port` for this state directory unless another live mesh holds it."""
        self._claims.mkdir(parents=True, exist_ok=True)
        path = self._claims / str(port)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                owner = path.read_text(encoding="utf-8").strip()
            except OSError:
                return False
            if owner == self.owner:
                return True
            if _fresh(path) or _still_holds(owner, port):
                return False
            path.write_text(self.owner + "\n", encoding="utf-8")
            return True
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.owner + "\n")
        return True

    def save(self) -> None:
        write_record(self.path, PORTS, Ports(dict(sorted(self.ports.items()))))


def _fresh(claim: Path) -> bool:
    """A claim younger than this may belong to a mesh that has not saved its ports yet."""
    try:
        return time.time() - claim.stat().st_mtime < CLAIM_GRACE_S
    except OSError:
        return False


def _still_holds(owner: str, port: int) -> bool:
    """Does the state directory `owner` still list `port` in its ports.json?"""
    try:
        saved: Ports | None = read_record(Path(owner) / "ports.json", PORTS)
    except (OSError, StateFileError):
        return False
    return saved is not None and port in saved.ports.values()
