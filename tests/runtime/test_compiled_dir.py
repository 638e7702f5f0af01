"""Build once, deploy the same bytes: `compile` in one directory, then `up --compiled` and
`apply --compiled` of it; every sidecar reports the manifest's hash of its config. A changed
file is refused (exit 2, naming it) before anything runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshctl.runtime.probe import fetch_running
from tests.runtime.helpers import REPO_ROOT, gateway_port, get, meshctl, wait_until
from tests.runtime.test_up_failures_and_restarts import tiny_mesh


def sidecar_hashes(state: Path) -> dict[str, tuple[str, str]]:
    plan = json.loads((state / "plan.json").read_text())

    async def every() -> dict[str, tuple[str, str]]:
        out = {}
        for s in plan["sidecars"]:
            running = await fetch_running("127.0.0.1", s["admin_port"], 5.0)
            assert running is not None, s["instance"]
            out[s["sidecar"]] = (running.revision, running.sha256)
        return out

    return asyncio.run(every())


def manifest_hashes(out: Path) -> dict[str, tuple[str, str]]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {n: (manifest["revision"], e["sha256"]) for n, e in manifest["sidecars"].items()}


@pytest.mark.slow
def test_apply_compiled_runs_exactly_the_bytes_compiled_elsewhere(tmp_path: Path) -> None:
    root = tiny_mesh(tmp_path)
    ci = tmp_path / "ci"  # another checkout, as CI would build it
    assert meshctl(root, "compile", "mesh.d", "--out", str(ci / "first")).code == 0
    up = meshctl(root, "up", "--detach", "--gateway-port", "edge=0", "--compiled", str(ci / "first"))
    try:
        assert up.code == 0, up.stderr
        state = root / ".meshctl"
        assert sidecar_hashes(state) == manifest_hashes(ci / "first")

        policy = root / "mesh.d" / "mesh.yaml"
        policy.write_text(policy.read_text().replace("service: catalog", "service: catalog\n"
                                                     "      headers: {response: {set: {x-built: ci}}}"))
        assert meshctl(root, "compile", "mesh.d", "--out", str(ci / "second")).code == 0

        tampered = tmp_path / "tampered"
        subprocess.run(["cp", "-r", str(ci / "second"), str(tampered)], check=True)
        gw_file = tampered / "gateways" / "edge.json"
        gw_file.write_text(gw_file.read_text().replace('"x-built"', '"x-evil!"'))
        refused = meshctl(root, "apply", "--compiled", str(tampered), "--window", "0s")
        assert refused.code == 2 and str(gw_file) in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert sidecar_hashes(state) == manifest_hashes(ci / "first"), "nothing was applied"

        applied = meshctl(root, "apply", "--compiled", str(ci / "second"), "--window", "0s")
        assert applied.code == 0, applied.stderr
        # The changed sidecar runs the second build's bytes; the one whose policy did not
        # change is left alone (no reload), on the first build's bytes.
        running, first, second = sidecar_hashes(state), manifest_hashes(ci / "first"), \
            manifest_hashes(ci / "second")
        assert running["gateway/edge"] == second["gateway/edge"] != first["gateway/edge"]
        assert running["catalog"] == first["catalog"]
        port = gateway_port(state, "edge")
        wait_until(lambda: get("127.0.0.1", port, "/products/1")[0] == 200, timeout=30)
        assert json.loads((state / "applied.json").read_text())["revision"] == \
            json.loads((ci / "second" / "manifest.json").read_text())["revision"]
    finally:
        meshctl(root, "down")


def test_status_and_the_supervisor_load_neither_the_model_nor_a_yaml_parser(tmp_path: Path) -> None:
    """In fresh processes: what `meshctl status` imports on a running mesh, and the daemon."""
    forbidden = ("meshctl.model", "meshctl.validate", "meshctl.compile", "yaml", "ruamel", "jinja2",
                 "jsonschema")
    probe = (
        "import sys, runpy\n"
        "from meshctl.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('meshctl','yaml','ruamel','jinja2',"
        "'jsonschema')))\n"
    )
    from meshctl.runtime.control import reap_leftovers, start_daemon, stop_daemon, wait_ready
    from meshctl.runtime.state import StateDir
    from tests.runtime.test_state_files import fill, sleeper

    state = StateDir(tmp_path / "state")
    fill(state, [sleeper(tmp_path)])
    pid = start_daemon(state)
    try:
        wait_ready(state, {"sleeper"}, timeout=30, daemon_pid=pid)
        proc = subprocess.run([sys.executable, "-c", probe, "status", "--state", str(state.root),
                               "--interval", "0"], capture_output=True, text=True, cwd=REPO_ROOT,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        loaded = proc.stdout
        assert "meshctl.runtime.observe" in loaded  # it did look at the mesh
        daemon = subprocess.run(
            [sys.executable, "-c", "import sys, meshctl.runtime.supervisor, meshctl.identity; "
             "print(sorted(sys.modules))"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
        loaded_by_daemon = daemon.stdout
    finally:
        stop_daemon(state, timeout=15)
        reap_leftovers(state)
    for name in forbidden:
        assert f"'{name}" not in loaded, f"status loaded {name}: {loaded}"
        assert f"'{name}'" not in loaded_by_daemon and f"'{name}." not in loaded_by_daemon, \
            f"the supervisor loaded {name}"


def test_the_supervisor_starts_without_the_contract_models_or_an_http_client() -> None:
    """What the daemon imports before it starts its first process: not the sidecar-file models
    (`sidecar_files` writes those, in the CLI), not aiohttp (its probes frame HTTP with h11)."""
    daemon = subprocess.run(
        [sys.executable, "-c", "import sys, meshctl.runtime.supervisor; print(sorted(sys.modules))"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert daemon.returncode == 0, daemon.stderr
    assert "'meshctl.runtime.plan'" in daemon.stdout  # it did load what reads the plan
    for name in ("aiohttp", "meshctl.contract", "meshctl.runtime.sidecar_files", "mitmproxy"):
        assert f"'{name}'" not in daemon.stdout, f"the supervisor loaded {name} at import"


def test_the_daemon_entry_point_launches_the_fork_server_before_heavy_imports() -> None:
    """`meshctl.runtime.daemon` starts the fork server before it imports the supervisor: what
    it loads until then must be light (no event loop library, no pydantic, no psutil)."""
    entry = subprocess.run(
        [sys.executable, "-c", "import sys, meshctl.runtime.daemon; print(sorted(sys.modules))"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert entry.returncode == 0, entry.stderr
    assert "'meshctl.runtime.forklaunch'" in entry.stdout  # it did load what launches the server
    for name in ("asyncio", "pydantic", "psutil", "aiohttp", "meshctl.runtime.supervisor"):
        assert f"'{name}'" not in entry.stdout, f"the daemon's entry point loaded {name}"
