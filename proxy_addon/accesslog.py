"""The access log: Envoy's fields, as JSON lines or Envoy's default text format, in a file.

One entry per request (and one per refused TLS handshake). Lines are batched for up to
FLUSH_S (or FLUSH_BYTES), so a busy sidecar makes one write per batch rather than one per
request. The file rotates by size, as logrotate would: `access.log` -> `access.log.1` ... up to
`keep` old files. Without a file (Kubernetes) lines go to standard output, where the container
runtime collects them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

Format = Literal["json", "text", "off"]
# One encoder for every line: `json.dumps` with `separators` builds a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":"))
_second: list[tuple[int, str]] = [(-1, "")]  # the last second formatted, and its text


def rfc3339(ts: float) -> str:
    """2026-12-01T23:12:01.123Z, as Envoy's %START_TIME%. The date and time of day are
    formatted once per second; a request only adds its milliseconds."""
    frac, whole = math.modf(ts)  # split and rounded as datetime.fromtimestamp does
    second, micro = int(whole), round(frac * 1e6)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    cached, text = _second[0]
    if cached != second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _second[0] = (second, text)
    return f"{text}{micro // 1000:03d}Z"


def _q(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def text_line(entry: dict[str, Any]) -> str:
    """Envoy's default format, then upstream cluster, route, peer identity and trace id."""
    if "event" in entry:  # not a request: a TLS handshake refused, for instance
        rest = " ".join(f"{k}={_q(v)}" for k, v in entry.items() if k not in ("event", "start_time"))
        return f"[{entry.get('start_time', '-')}] {entry['event']} {rest}\n"
    return (
        f'[{entry["start_time"]}] "{entry["method"]} {entry["path"]} {entry["protocol"]}" '
        f'{entry["response_code"]} {entry["response_flags"]} {entry["bytes_received"]} '
        f'{entry["bytes_sent"]} {entry["duration"]} "{_q(entry["x_forwarded_for"])}" '
        f'"{_q(entry["user_agent"])}" "{_q(entry["request_id"])}" "{_q(entry["authority"])}" '
        f'"{_q(entry["upstream_host"])}" {_q(entry["upstream_cluster"])} {_q(entry["route_name"])} '
        f'{_q(entry["downstream_peer_uri_san"])} {_q(entry["trace_id"])}\n'
    )


class AccessLog:
    FLUSH_S = 0.05
    FLUSH_BYTES = 64 * 1024

    def __init__(self, stream: TextIO | None = None) -> None:
        self.format: Format = "json"
        self.path: Path | None = None
        self.max_bytes = 16 * 1024 * 1024
        self.keep = 3
        self._stream: TextIO = stream or sys.stdout
        self._own_stream = False
        self._pending: list[str] = []
        self._size = 0
        self._written = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self.format != "off"

    def configure(self, fmt: Format, path: str | None, max_bytes: int, keep: int) -> None:
        """Apply a config: format, file and rotation (reopening the file only if it changed)."""
        self.format, self.max_bytes, self.keep = fmt, max_bytes, keep
        new = Path(path) if path else None
        if new != self.path:
            self.flush()
            self.path = new
            self._reopen()

    def _reopen(self) -> None:
        if self._own_stream:
            self._stream.close()
            self._own_stream = False
        if self.path is None:
            self._stream = sys.stdout
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
            self._own_stream = True
            self._written = self._stream.tell()
        except OSError as exc:
            print(f"meshctl sidecar: access log {self.path}: {exc.strerror}; using stdout",
                  file=sys.stderr)
            self._stream = sys.stdout

    def write(self, entry: dict[str, Any]) -> None:
        if self.format == "off":
            return
        if self.format == "text":
            line = text_line(entry)
        else:
            line = _JSON.encode(entry) + "\n"
        self._pending.append(line)
        self._size += len(line)
        if self._size >= self.FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        data, self._pending, self._size = "".join(self._pending), [], 0
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):
            self.format = "off"  # the file or stdout went away; keep serving
            return
        self._written += len(data)
        if self._own_stream and self._written >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        assert self.path is not None
        try:
            self._stream.close()
            self._own_stream = False
            base = str(self.path)
            if self.keep == 0:
                os.unlink(base)
            else:
                for n in range(self.keep - 1, 0, -1):
                    if os.path.exists(f"{base}.{n}"):
                        os.replace(f"{base}.{n}", f"{base}.{n + 1}")
                os.replace(base, f"{base}.1")
        except OSError:
            pass  # rotation is best effort: keep appending to whatever is there
        self._reopen()

    def close(self) -> None:
        self.flush()
        if self._own_stream:
            self._stream.close()
            self._own_stream = False
