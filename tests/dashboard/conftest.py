"""The example shop running with traffic, and `meshctl dashboard` serving it (module-wide:
starting the shop costs seconds of CPU on a shared machine)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.helpers import edit, gateway_port, meshctl, shop_repo
from tests.support.git import commit_all, git_env

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"


@dataclass
class ShopLoad:
    """Bounded traffic through the gateway: beta tester and other users, a few denied calls."""

    port: int
    plan: dict[str, Any]
    max_seconds: float = 600.0
    pause: float = 0.05
    statuses: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for target in (self._shoppers, self._intruders):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _shoppers(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        i = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            i += 1
            user = "jason" if i % 2 else f"user{i % 23}"
            path = "/" if i % 3 == 0 else f"/product/{i % 3 + 1}"
            self.statuses.append(_get(self.port, path, {"end-user": user}))
            time.sleep(self.pause)

    def _intruders(self) -> None:
        """Calls the access policy refuses: ratings may call nobody (refused at its sidecar);
        frontend may not POST to reviews (refused by the reviews sidecar)."""
        deadline = time.monotonic() + self.max_seconds
        ratings = _outbound(self.plan, "ratings-v1-0")
        frontend = _outbound(self.plan, "frontend-v1-0")
        while not self._stop.is_set() and time.monotonic() < deadline:
            _via_proxy(ratings, "GET", "http://reviews/reviews/1")
            _via_proxy(frontend, "POST", "http://reviews/reviews/1")
            time.sleep(0.5)


def _get(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def _outbound(plan: dict[str, Any], instance: str) -> int:
    return int(next(s["outbound_port"] for s in plan["sidecars"] if s["instance"] == instance))


def _via_proxy(port: int, method: str, url: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, url, body=b"" if method == "POST" else None)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


@dataclass
class Running:
    repo: Path
    state: Path
    url: str
    gateway: int
    load: ShopLoad
    process: subprocess.Popen[str]

    def api(self, path: str, body: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        host, port = self.url.removeprefix("http://").rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request("POST" if body is not None else "GET", path, body=data,
                         headers={"Content-Type": "application/json", **(headers or {})})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        return resp.status, json.loads(raw) if raw else None

    def wait_for(self, path: str, check: Any, timeout: float = 60, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            status, last = self.api(path)
            if status == 200 and check(last):
                return last
            time.sleep(0.5)
        raise AssertionError(f"{what or path} not seen after {timeout}s; last answer: {last}")


def start_dashboard(repo: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = git_env()
    env.pop("MESHCTL_STATE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshctl", "dashboard", "--port", "0", "--interval", "1",
         "--window", "6", *args],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "meshctl dashboard: serving http://127.0.0.1:PORT/"
    if "serving" not in line:
        proc.kill()
        raise AssertionError(f"dashboard did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, line.split("serving", 1)[1].strip()


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    repo = shop_repo(tmp_path_factory.mktemp("dashboard"))
    state = repo / ".meshctl"
    # A loaded CI machine makes latency noisy: the apply below gates on errors, not on p99.
    edit(repo / "mesh.d/mesh.yaml", "maxP99: 500ms", "maxP99: 5s")
    commit_all(repo, "shop: gate on errors only")
    up = meshctl(repo, "up", "--detach", "--gateway-port", "public=0", "--timeout", "150")
    assert up.code == 0, up.stderr
    proc: subprocess.Popen[str] | None = None
    load: ShopLoad | None = None
    try:
        plan = json.loads((state / "plan.json").read_text())
        load = ShopLoad(gateway_port(state), plan)
        load.start()
        proc, url = start_dashboard(repo)
        yield Running(repo, state, url, gateway_port(state), load, proc)
    finally:
        if proc is not None:
            stop(proc)
        if load is not None:
            load.stop()
        meshctl(repo, "down")
