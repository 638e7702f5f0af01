"""`meshctl status` shows what the callers' sidecars know: an instance killed under traffic is
ejected by the gateway's outlier detection, and shows back in service once it is restarted and
its ejection is over, in text and in `--format json`."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.helpers import Load, meshctl, running_mesh, wait_until
from tests.runtime.test_up_failures_and_restarts import processes
from tests.support.meshdir import policy_root

pytestmark = pytest.mark.slow

# The second start of an instance waits 15 s: the restarted app stays down long enough for
# status to be read while it is out, whatever the machine's load. No active health check: it
# would take the instance out first (no traffic, no ejection) and end an ejection early.
RUN = ("[sh, -c, 'if [ -e started-$PORT ]; then sleep 15; fi; touch started-$PORT; "
       f"exec {sys.executable} -m shop.catalog']")
MESH = """\
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: tiny}
spec: {trustDomain: tiny.local}
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: catalog}
spec:
  versions:
    - {name: v1, replicas: 2, run: RUN}
  trafficPolicy:
    outlierDetection: {consecutive5xx: 2, interval: 1s, baseEjectionTime: 20s}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  port: 8080
  rules:
    - name: all
      service: catalog
""".replace("RUN", RUN)


def _instance(root: Path, name: str) -> dict[str, Any]:
    result = meshctl(root, "status", "--format", "json", "--interval", "0")
    assert result.code == 0, result.stderr
    return next(s for s in result.json()["sidecars"] if s["instance"] == name)  # type: ignore[no-any-return]


def _line(root: Path, name: str) -> str:
    text = meshctl(root, "status", "--interval", "0").stdout
    return next(line for line in text.splitlines() if name in line)


def test_status_shows_an_ejected_instance_and_its_return(tmp_path: Path) -> None:
    root = policy_root(tmp_path / "tiny", {"mesh.yaml": MESH}, apps=True)
    with running_mesh(root) as port:
        victim = "catalog-v1-1"
        assert _instance(root, victim)["ejected_by"] == []
        with Load(port, path="/products/1", threads=2, pause=0.02, max_requests=3000) as load:
            wait_until(lambda: len(load.statuses) > 20, what="load flows")
            os.killpg(processes(root)[victim]["pid"], signal.SIGKILL)
            seen_lines: list[str] = []

            def ejected() -> bool:
                seen_lines.append(_line(root, victim))
                return "ejected by 1 caller" in seen_lines[-1]

            try:
                wait_until(ejected, timeout=30, what="status shows the ejection")
            except AssertionError:
                raise AssertionError(f"{seen_lines[-3:]}; {processes(root)[victim]}") from None
            seen = _instance(root, victim)
            assert seen["ejected_by"] == ["gateway-edge"] and seen["ejected_for_s"] > 0, seen
            assert _instance(root, "catalog-v1-0")["ejected_by"] == []
            wait_until(lambda: processes(root)[victim]["ready"], timeout=90, what="restarted")
            wait_until(lambda: not (s := _instance(root, victim))["ejected_by"] and not s["unhealthy_for"],
                       timeout=60, what="status shows it back")
            text = meshctl(root, "status", "--interval", "0").stdout
            assert "ejected" not in text and "failing" not in text, text
        assert load.statuses.count(200) > 0.9 * len(load.statuses)
