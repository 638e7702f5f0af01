"""Shared by the runtime tests: a git repository holding the example shop, the real CLI, load."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.git import AUTHOR, EPOCH, commit_all, git_env, init_repo
from tests.support.git import git as git  # re-exported: the one git helper lives in tests/support/git.py
from tests.support.meshdir import add_shop_apps

GIT_ENV = AUTHOR | {"GIT_AUTHOR_DATE": EPOCH, "GIT_COMMITTER_DATE": EPOCH}  # prefer git_env()

REPO_ROOT = Path(__file__).resolve().parents[2]

def shop_repo(tmp: Path) -> Path:
    """A git repository with the example policy (without its tests) and the shop apps."""
    repo = tmp / "shop-repo"
    shutil.copytree(REPO_ROOT / "mesh.d", repo / "mesh.d", ignore=shutil.ignore_patterns("tests"))
    add_shop_apps(repo)
    init_repo(repo)
    commit_all(repo, "the example shop")
    return repo


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def meshctl(cwd: Path, *args: str, timeout: float = 180, env: dict[str, str] | None = None
            ) -> Result:
    base = git_env()
    base.pop("MESHCTL_STATE", None)
    env = base | (env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "meshctl", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def get(url_host: str, port: int, path: str, headers: dict[str, str] | None = None,
        timeout: float = 10) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, {"raw": body.decode(errors="replace")}


@dataclass
class Load:
    """A bounded load on the gateway: a few threads with keep-alive connections."""

    port: int
    path: str = "/product/1"
    threads: int = 2
    pause: float = 0.01
    max_requests: int = 4000
    statuses: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            with self._lock:
                if len(self.statuses) + len(self.failures) >= self.max_requests:
                    return
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                resp.read()
                with self._lock:
                    self.statuses.append(resp.status)
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            time.sleep(self.pause)
        conn.close()


def gateway_port(state: Path, name: str = "public") -> int:
    plan = json.loads((state / "plan.json").read_text())
    for s in plan["sidecars"]:
        if s["sidecar"] == f"gateway/{name}":
            return int(s["outbound_port"])
    raise AssertionError(f"no gateway {name} in the plan")


@contextmanager
def running_mesh(root: Path, gateway: str = "edge", timeout: int = 120) -> Iterator[int]:
    """`meshctl up --detach` in `root` with `gateway` on a free port; `up` must succeed. Yields
    that port; `meshctl down` on leaving, whatever happened inside."""
    up = meshctl(root, "up", "--detach", "--gateway-port", f"{gateway}=0", "--timeout", str(timeout))
    try:
        assert up.code == 0, up.stderr
        yield gateway_port(root / ".meshctl", gateway)
    finally:
        meshctl(root, "down")


def recorded_pids(state: Path) -> list[int]:
    raw = json.loads((state / "state.json").read_text())
    return [p["pid"] for p in raw["processes"].values() if p.get("pid")]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_until(predicate: Any, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met after {timeout}s")
        time.sleep(0.1)
