"""The patches of mitmproxy and pyOpenSSL internals hold on the installed versions, and the
addon also runs under plain `mitmdump -s`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshctl.contract import dump_json
from proxy_addon import patches
from tests.support.configs import destination, service_config, split
from tests.support.procs import REPO, bindings_for, free_port, start_app, wait_port

MITMDUMP = Path(sys.executable).parent / "mitmdump"


@pytest.mark.parametrize("key", list(patches.PATCHED))
def test_patched_internals_are_the_ones_the_patches_were_written_for(key: str) -> None:
    """Fails when an upgrade changes code a patch replaces or relies on: read the new code,
    adjust the patch, then record the new digest in `proxy_addon.patches.PATCHED`."""
    assert patches.source_digest(key) == patches.PATCHED[key], f"{key} changed under its patch"


def test_the_installed_versions_are_supported_and_nothing_drifted() -> None:
    assert patches.supported(), patches.versions()
    assert patches.drifted() == []


def test_a_version_guard_leaves_the_patch_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from mitmproxy.proxy.layers.http import _http1

    before = _http1.make_error_response
    monkeypatch.setitem(patches.SUPPORTED, "mitmproxy", "99.")
    patches.install_error_pages(lambda status, message: b"")
    assert _http1.make_error_response is before


def test_upstream_host_check_refuses_without_pyopenssl_internals() -> None:
    with pytest.raises(patches.UnsupportedOpenSSL):
        patches.verify_upstream_host(object(), b"reviews.test.local")


def test_the_sidecar_runs_under_plain_mitmdump(tmp_path: Path) -> None:
    app = start_app("reviews-v1")
    try:
        config = service_config("web", (destination("reviews", rules=(split("reviews", {"v1": 100}),)),))
        bindings = bindings_for(inbound=False, endpoints={"reviews": {"v1": (app.address,)}})
        (tmp_path / "config.json").write_text(dump_json(config))
        (tmp_path / "bindings.json").write_text(dump_json(bindings))
        port = free_port()
        proc = subprocess.Popen(
            [str(MITMDUMP), "-q", "-s", str(REPO / "proxy_addon" / "script.py"),
             "--mode", f"regular@127.0.0.1:{port}", "--set", "keep_host_header=true",
             "--set", f"meshctl_config={tmp_path / 'config.json'}",
             "--set", f"meshctl_bindings={tmp_path / 'bindings.json'}",
             "--set", f"confdir={tmp_path / 'conf'}"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        try:
            wait_port(port, proc=proc)
            out = subprocess.run(
                ["curl", "-s", "-x", f"http://127.0.0.1:{port}", "http://reviews/hello", "-D", "-"],
                capture_output=True, text=True, timeout=30,
            ).stdout
            assert out.startswith("HTTP/1.1 200"), out
            assert json.loads(out.replace("\r\n", "\n").split("\n\n", 1)[1])["path"] == "/hello"
            refused = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", f"http://127.0.0.1:{port}",
                 "http://nowhere/"], capture_output=True, text=True, timeout=30,
            ).stdout
            assert refused == "502"
        finally:
            proc.terminate()
            proc.wait(15)
    finally:
        app.stop()


def test_mitmdump_stops_on_a_bad_config_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"schema_version": "x/v9"}')
    (tmp_path / "bindings.json").write_text(dump_json(bindings_for(inbound=False)))
    started = time.monotonic()
    proc = subprocess.run(
        [str(MITMDUMP), "-q", "-s", str(REPO / "proxy_addon" / "script.py"),
         "--set", f"meshctl_config={tmp_path / 'config.json'}",
         "--set", f"meshctl_bindings={tmp_path / 'bindings.json'}",
         "--set", f"confdir={tmp_path / 'conf'}", "--listen-port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0 and time.monotonic() - started < 60
    assert "unknown schema_version 'x/v9'" in proc.stdout + proc.stderr
