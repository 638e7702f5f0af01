"""The fork server's channel: one JSON object per line over a Unix stream socket.

Shared by the fork server (`proxy_addon.forkserver`) and the supervisor's client
(`meshctl.runtime.forkclient`): standard library only, so the supervisor imports no mitmproxy.

    server -> {"ready": pid}                                   once warm, before any request
    client -> {"args": [...], "cwd": ..., "env": {...}, "log": ..., "name": ...}
    server -> {"pid": N} | {"error": "..."}                   one reply per request
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

MODULE = "proxy_addon.forkserver"
CHANNEL_FD_ARG = "--channel-fd"
MAX_LINE = 1 << 20  # a request is a command line and an environment: far below this


class WireError(ValueError):
    """A line on the channel that is not a message of this protocol."""


@dataclass(frozen=True)
class ForkRequest:
    """Fork a sidecar that runs `proxy_addon` with `args` (what follows `-m proxy_addon`)."""

    name: str  # the supervisor's process name: the child's MESHCTL_PROCESS
    args: tuple[str, ...]
    cwd: str
    log: str  # appended to: the child's stdout and stderr
    env: dict[str, str] = field(default_factory=dict)  # set in the child's os.environ

    def encode(self) -> bytes:
        return _line(asdict(self))

    @classmethod
    def decode(cls, line: bytes) -> ForkRequest:
        data = _object(line)
        try:
            req = cls(
                name=str(data["name"]), args=tuple(str(a) for a in data["args"]),
                cwd=str(data["cwd"]), log=str(data["log"]),
                env={str(k): str(v) for k, v in dict(data.get("env", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"not a fork request: {exc}") from None
        return req


@dataclass(frozen=True)
class ForkReply:
    pid: int | None = None
    error: str | None = None

    def encode(self) -> bytes:
        return _line({"pid": self.pid} if self.error is None else {"error": self.error})

    @classmethod
    def decode(cls, line: bytes) -> ForkReply:
        data = _object(line)
        if isinstance(data.get("pid"), int) and data["pid"] > 0:
            return cls(pid=data["pid"])
        if isinstance(data.get("error"), str):
            return cls(error=data["error"])
        raise WireError(f"not a fork reply: {line[:200]!r}")


def ready_line(pid: int) -> bytes:
    return _line({"ready": pid})


def decode_ready(line: bytes) -> int:
    data = _object(line)
    pid = data.get("ready")
    if not isinstance(pid, int) or pid <= 0:
        raise WireError(f"not a ready message: {line[:200]!r}")
    return pid


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def _object(line: bytes) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WireError("not a JSON object")
    return data
