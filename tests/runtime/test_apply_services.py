"""`apply` starts the instances of new services and stops those of removed ones; a new instance
that cannot start fails the apply and leaves the mesh as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runtime.helpers import edit, gateway_port, get, meshctl, pid_alive, recorded_pids
from tests.runtime.test_up_failures_and_restarts import processes, tiny_mesh
from tests.support.git import commit_all, git

RATINGS = """\
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: ratings}
spec:
  versions:
    - name: v1
      run: %s
  healthCheck: {path: /healthz, interval: 1s}
"""


def running(root: Path) -> set[str]:
    raw = json.loads((root / ".meshctl" / "state.json").read_text())
    return {name for name, p in raw["processes"].items() if p["pid"]}


@pytest.mark.slow
def test_apply_starts_new_and_stops_removed_services(tmp_path: Path) -> None:
    root = tiny_mesh(tmp_path)
    git(root, "init", "-q", "-b", "main")
    base = commit_all(root, "catalog only")
    up = meshctl(root, "up", "--detach", "--gateway-port", "edge=0", "--timeout", "120")
    try:
        assert up.code == 0, up.stderr
        assert running(root) == {"catalog-v1-0", "catalog-v1-0.sidecar", "gateway-edge"}

        ratings = root / "mesh.d" / "ratings.yaml"
        ratings.write_text(RATINGS % '[python, -c, "import sys; sys.exit(5)"]')
        dirty = meshctl(root, "apply")
        assert dirty.code == 2 and "uncommitted changes" in dirty.stderr, dirty.stderr
        unknown = meshctl(root, "apply", "no-such-rev", "--dry-run")
        assert unknown.code == 2 and "unknown revision" in unknown.stderr, unknown.stderr
        commit_all(root, "ratings that cannot start")
        broken = meshctl(root, "apply", "--window", "1s")
        assert broken.code == 1, broken.stderr
        assert "ratings-v1-0 (app) exited with code 5" in broken.stderr
        assert running(root) == {"catalog-v1-0", "catalog-v1-0.sidecar", "gateway-edge"}
        assert git(root, "rev-parse", "refs/meshctl/applied") == base

        ratings.write_text(RATINGS % "[python, -m, shop.ratings]")
        added = commit_all(root, "ratings")
        dry = meshctl(root, "apply", "--dry-run", "--format", "json")
        assert dry.code == 0, dry.stderr
        assert dry.json()["added"] == ["ratings-v1-0"] and dry.json()["target"] == added
        applied = meshctl(root, "apply", "--window", "1s")
        assert applied.code == 0, applied.stderr
        assert "start   ratings-v1-0" in applied.stderr
        assert {"ratings-v1-0", "ratings-v1-0.sidecar"} <= running(root)
        status = meshctl(root, "status", "--format", "json", "--interval", "0").json()
        assert status["revision"] == added
        ratings_sidecar = next(s for s in status["sidecars"] if s["name"] == "ratings")
        assert ratings_sidecar["healthy"] and ratings_sidecar["revision"] == added

        ratings.unlink()
        commit_all(root, "no more ratings")
        removed = meshctl(root, "apply", "--window", "1s")
        assert removed.code == 0, removed.stderr
        assert "stop    ratings-v1-0" in removed.stderr
        assert running(root) == {"catalog-v1-0", "catalog-v1-0.sidecar", "gateway-edge"}
        assert get("127.0.0.1", gateway_port(root / ".meshctl", "edge"), "/products/1")[0] == 200

        # A version's new environment restarts its instances (and only the app).
        before = processes(root)
        edit(root / "mesh.d" / "mesh.yaml", "run: [python, -m, shop.catalog]",
             'run: [python, -m, shop.catalog]\n      env: {DELAY_MS: "1"}')
        commit_all(root, "catalog: a little slower")
        restarted = meshctl(root, "apply", "--window", "1s")
        assert restarted.code == 0, restarted.stderr
        assert "restart catalog-v1-0" in restarted.stderr
        after = processes(root)
        assert after["catalog-v1-0"]["pid"] != before["catalog-v1-0"]["pid"]
        assert after["catalog-v1-0"]["ready"]
        assert after["catalog-v1-0.sidecar"]["pid"] == before["catalog-v1-0.sidecar"]["pid"]
    finally:
        pids = recorded_pids(root / ".meshctl")
        meshctl(root, "down")
    assert not [p for p in pids if pid_alive(p)]


def test_apply_needs_a_running_mesh(tmp_path: Path) -> None:
    root = tiny_mesh(tmp_path)
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "catalog only")
    not_running = meshctl(root, "apply")
    assert not_running.code == 2 and "meshctl up" in not_running.stderr
    # A plan on disk with no daemon behind it is still "not running".
    (root / ".meshctl").mkdir()
    (root / ".meshctl" / "plan.json").write_text(
        json.dumps({"policy_dir": str(root / "mesh.d"), "revision": "x",
                    "topology": {"services": [], "gateways": []}, "sidecars": [], "processes": []})
    )
    assert meshctl(root, "apply").code == 2
    history = meshctl(root, "history")
    assert history.code == 0 and "nothing applied yet" in history.stdout
