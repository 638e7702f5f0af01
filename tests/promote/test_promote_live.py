"""`meshctl promote` on a real mesh in a real git repository, under a steady bounded load.

Each step must show in the traffic (the load records which version answered, and when), a
failing or slower canary must be rolled back by a commit, a window without traffic must be
inconclusive, and a promotion killed mid-step must end, once resumed, where an uninterrupted
one would.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.runtime.helpers import meshctl, running_mesh
from tests.support.git import commit_all, git, git_env
from tests.support.meshdir import policy_root

MESH = """\
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: promo}
spec:
  trustDomain: promo.local
  rollout: {canary: 1, gate: {window: 1s, maxErrorRate: 50, maxP99: 5s}}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  port: 8080
  rules:
    - name: all
      service: catalog
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: catalog}
spec:
  versions:
    - name: v1
      run: [python, -m, shop.catalog]
      env: {DELAY_MS: "%(v1_delay)s"}
    - name: v2
      run: [python, -m, shop.catalog]
      env: {FAIL_PERCENT: "%(v2_fail)s", DELAY_MS: "%(v2_delay)s"}
"""
ROUTE = """\
# The catalog's split; `meshctl promote` edits the weights below.
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: catalog}
spec:
  service: catalog
  rules:
    - name: default
      backends:
        - {version: v1, weight: 100}
        - {version: v2, weight: 0}
"""


def promo_mesh(tmp: Path, *, v2_fail: int = 0, v1_delay: int = 0, v2_delay: int = 0) -> Path:
    mesh = MESH % {"v2_fail": v2_fail, "v1_delay": v1_delay, "v2_delay": v2_delay}
    return policy_root(tmp / "promo", {"mesh.yaml": mesh, "routes/catalog.yaml": ROUTE},
                       apps=True, commit="catalog v1, v2 dark")


@dataclass
class VersionLoad:
    """Bounded load on the gateway recording (time, version) of every answer."""

    port: int
    threads: int = 3
    max_seconds: float = 240.0
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> VersionLoad:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/products/1")
                resp = conn.getresponse()
                body = resp.read()
                at = time.monotonic()
                if resp.status == 200:
                    self.answers.append((at, json.loads(body)["served_by"]["catalog"]))
                else:
                    self.failures.append((at, f"{resp.status} {body[:80]!r}"))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.failures.append((time.monotonic(), repr(exc)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.close()

    def share(self, version: str, start: float, end: float) -> tuple[float, int]:
        seen = [v for at, v in self.answers if start <= at <= end]
        return (100.0 * seen.count(version) / len(seen) if seen else float("nan")), len(seen)


class Promote:
    """`meshctl promote` as a process whose stderr lines are stamped as they arrive."""

    def __init__(self, root: Path, *args: str) -> None:
        env = git_env()
        env.pop("MESHCTL_STATE", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshctl", "promote", *args], cwd=root, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        # stdout only: stderr belongs to the reader thread (communicate() would steal its lines)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.proc.returncode, out, "\n".join(line for _, line in self.lines)

    def when(self, text: str, timeout: float = 180) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never printed:\n" + "\n".join(line for _, line in self.lines))


def route_weights(root: Path) -> str:
    text = (root / "mesh.d" / "routes" / "catalog.yaml").read_text()
    return " ".join(line.strip() for line in text.splitlines() if "version:" in line)


def step_windows(promote: Promote, labels: list[str]) -> list[tuple[float, float]]:
    return [(promote.when(f"{label}: watching"), promote.when(f"{label}: analysis"))
            for label in labels]


@pytest.mark.slow
def test_healthy_canary_promoted_through_every_step_and_resume_after_kill(tmp_path: Path) -> None:
    root = promo_mesh(tmp_path)
    start = git(root, "rev-parse", "HEAD")
    with running_mesh(root) as port, VersionLoad(port) as load:
        dry = meshctl(root, "promote", "catalog", "v2", "--dry-run", "--interval", "4s")
        assert dry.code == 0, dry.stderr
        assert "step 1/4 (5%): v1 95, v2 5" in dry.stdout, dry.stdout
        assert "final (retire v1): v2 100" in dry.stdout

        args = ("catalog", "v2", "--interval", "4s", "--min-requests", "20")
        first = Promote(root, *args)
        steps = ["step 1/4 (5%)", "step 2/4 (25%)"]
        windows = step_windows(first, steps[:1])
        first.when(f"{steps[1]}: watching")
        first.proc.kill()  # killed mid-step: the journal says where it stood
        first.wait()
        assert (root / ".meshctl" / "promote.json").exists()

        again = meshctl(root, "promote", "catalog", "v2")
        assert again.code == 2 and "--resume" in again.stderr, again.stderr

        resumed = Promote(root, "--resume", "--min-requests", "20")
        windows += step_windows(resumed, ["step 2/4 (25%)", "step 3/4 (50%)", "step 4/4 (100%)"])
        code, out, errors = resumed.wait()
        assert code == 0, errors
        assert "catalog v2 promoted" in out
        time.sleep(1.0)
        end = time.monotonic()

    # Every step's share, as the traffic saw it.
    for (low, high), expected in zip(windows, [5, 25, 50, 100], strict=True):
        share, n = load.share("v2", low, high)
        assert n >= 100, f"only {n} answers while {expected}% was watched"
        assert abs(share - expected) <= 5, f"v2 had {share:.1f}% of {n} answers at step {expected}%"
    assert load.failures == [], load.failures[:5]
    assert load.share("v2", end - 1.0, end)[0] == 100

    subjects = git(root, "log", "--format=%s", f"{start}..HEAD").splitlines()[::-1]
    assert len(subjects) == 5, subjects
    assert subjects[0] == "promote catalog v2: step 1/4 (5%), v1 95, v2 5"
    assert subjects[-1] == "promote catalog v2: done, v1 retired from rule 'default'"
    body = git(root, "log", "-1", "--format=%b", "HEAD~1")
    assert "The previous step passed its analysis" in body and "Mann-Whitney" in body
    assert route_weights(root) == "- {version: v2, weight: 100}"
    assert "# The catalog's split" in (root / "mesh.d" / "routes" / "catalog.yaml").read_text()
    assert not (root / ".meshctl" / "promote.json").exists()
    history = meshctl(root, "history", "--format", "json").json()
    assert history["current"] == git(root, "rev-parse", "HEAD")


@pytest.mark.slow
def test_failing_slower_and_idle_canaries_are_rolled_back_by_commits(tmp_path: Path) -> None:
    root = promo_mesh(tmp_path, v2_fail=10)
    with running_mesh(root) as port:
        with VersionLoad(port) as load:
            failing = Promote(root, "catalog", "v2", "--steps", "25,50,100", "--interval", "3s",
                              "--min-requests", "30")
            code, out, errors = failing.wait()
            done = time.monotonic()  # the rollback commit is applied when promote exits
            time.sleep(2.0)
            end = time.monotonic()
        assert code == 1, errors
        assert "success rate" in errors and "is under 99%" in errors
        assert "v2:" in errors and "v1:" in errors  # both versions' numbers
        assert "rolling back: v1 100, v2 0" in errors
        assert load.share("v2", done, end)[0] == 0  # traffic went back to v1
        assert route_weights(root) == "- {version: v1, weight: 100} - {version: v2, weight: 0}"
        subjects = git(root, "log", "--format=%s", "-2").splitlines()
        assert subjects == ["promote catalog v2: roll back to v1 100, v2 0",
                            "promote catalog v2: step 1/3 (25%), v1 75, v2 25"]

        # Same v2, now without errors but 20% slower: only the comparison with v1 can tell.
        # (Delays of 100 ms and more keep the difference clear of a busy machine's noise.)
        mesh = root / "mesh.d" / "mesh.yaml"
        mesh.write_text(mesh.read_text().replace('FAIL_PERCENT: "10", DELAY_MS: "0"',
                                                 'FAIL_PERCENT: "0", DELAY_MS: "120"')
                        .replace('DELAY_MS: "0"}', 'DELAY_MS: "100"}'))
        commit_all(root, "v1 100 ms, v2 120 ms")
        applied = meshctl(root, "apply", "--window", "1s")
        assert applied.code == 0, applied.stderr
        with VersionLoad(port, threads=8):
            slower = meshctl(root, "promote", "catalog", "v2", "--steps", "40,100", "--interval",
                             "5s", "--min-requests", "30", "--min-success-rate", "0")
        assert slower.code == 1, slower.stderr
        assert "is slower than v1" in slower.stderr, slower.stderr

        idle = meshctl(root, "promote", "catalog", "v2", "--steps", "50,100", "--interval", "2s",
                       "--on-inconclusive", "fail")
        assert idle.code == 1, idle.stderr
        assert "analysis inconclusive" in idle.stderr and "analysis passed" not in idle.stderr
        assert route_weights(root) == "- {version: v1, weight: 100} - {version: v2, weight: 0}"

        # A new environment that makes v1 fail (90%, over the gate's 50%): apply restarts it, gates
        # it, and undoes it.
        broken = mesh.read_text().replace('DELAY_MS: "100"}', 'DELAY_MS: "100", FAIL_PERCENT: "90"}')
        mesh.write_text(broken)
        bad = commit_all(root, "v1 fails most of the time")
        with VersionLoad(port, threads=2) as load:
            gated = meshctl(root, "apply", "--window", "3s")
            time.sleep(1.5)
            settled = time.monotonic()
            time.sleep(1.0)
        assert gated.code == 1, gated.stderr
        assert "restarted failed the gate" in gated.stderr, gated.stderr
        assert git(root, "rev-parse", "refs/meshctl/applied") != bad
        assert [f for at, f in load.failures if at > settled] == []  # the old environment is back
