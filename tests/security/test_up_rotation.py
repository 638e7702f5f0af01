"""The user's path: `meshctl up` a small strict-mTLS mesh, rotate its CA under traffic through
the gateway, finish the rotation, and find no private key in the runtime's logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.identity import MeshCA
from tests.runtime.helpers import (
    Load,
    gateway_port,
    meshctl,
    recorded_pids,
    wait_until,
)
from tests.security.test_key_leak import key_bodies, scan
from tests.support.meshdir import policy_root

pytestmark = pytest.mark.slow

POLICY = """\
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: mini}
spec: {trustDomain: mini.local, mtls: strict, accessDefault: deny}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: public}
spec:
  port: 8080
  rules:
    - name: all
      match: [{path: {prefix: /}}]
      service: catalog
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: catalog}
spec:
  versions:
    - name: v1
      run: [python, -m, shop.catalog]
---
apiVersion: meshctl/v1alpha1
kind: AccessPolicy
metadata: {name: catalog}
spec:
  service: catalog
  rules:
    - from: [gateway/public]
"""


def sidecar_log(state: Path, process: str) -> str:
    path = state / "logs" / f"{process}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_ca_rotation_under_traffic_with_the_local_runtime(tmp_path: Path) -> None:
    repo = policy_root(tmp_path / "repo", {"mesh.yaml": POLICY}, apps=True, commit="a small mesh")
    state = repo / ".meshctl"

    up = meshctl(repo, "up", "--detach", "--gateway-port", "public=0", "--timeout", "150")
    try:
        assert up.code == 0, up.stderr
        port = gateway_port(state)
        pids = sorted(recorded_pids(state))
        cert = state / "sidecars" / "catalog-v1-0" / "tls" / "cert.pem"
        sidecars = ("catalog-v1-0.sidecar", "gateway-public")
        renewed = "certificate for spiffe://mini.local/"
        with Load(port, path="/products/1", threads=2, pause=0.02) as load:
            wait_until(lambda: len(load.statuses) > 20, 60, "traffic through the gateway")
            rotate = meshctl(repo, "ca", "rotate")
            assert rotate.code == 0, rotate.stderr
            ca = MeshCA.load(state / "ca")
            assert ca.issued_by_current(cert.read_bytes())  # re-issued in place
            wait_until(lambda: all(renewed in sidecar_log(state, n) for n in sidecars), 60,
                       "every sidecar to load its new certificate")
            seen = len(load.statuses)
            wait_until(lambda: len(load.statuses) > seen + 20, 60, "traffic after rotate")
            finish = meshctl(repo, "ca", "rotate", "--finish")
            assert finish.code == 0, finish.stderr
            seen = len(load.statuses)
            wait_until(lambda: len(load.statuses) > seen + 40, 60, "traffic after --finish")
        assert load.failures == [], load.failures[:5]
        assert set(load.statuses) == {200}, sorted(set(load.statuses))
        assert sorted(recorded_pids(state)) == pids  # nothing restarted
        assert len(MeshCA.load(state / "ca").bundle) == 1
        logs = "".join(p.read_text(errors="replace") for p in (state / "logs").glob("*.log*"))
        assert "catalog" in logs
        assert scan(logs, key_bodies(state)) == []
    finally:
        down = meshctl(repo, "down")
        assert down.code == 0, down.stderr
