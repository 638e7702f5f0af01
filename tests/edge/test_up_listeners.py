"""`meshctl up` serves every listener of a Gateway: an http one on its declared port and an
https one moved with `--gateway-port NAME:LISTENER=0`; `status` lists both with their scheme."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.edge.gateway_mesh import call
from tests.edge.pki import make_ca
from tests.runtime.helpers import meshctl, pid_alive, recorded_pids
from tests.support.meshdir import policy_root
from tests.support.procs import free_port

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
    - {name: v1, run: [python, -m, shop.catalog]}
  healthCheck: {path: /healthz, interval: 1s}
---
apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  listeners:
    - {name: web, port: %(http)d, protocol: http, hosts: [shop.example.com]}
    - name: secure
      port: 8443
      protocol: https
      hosts: [shop.example.com]
      tls:
        certificates: [{certFile: %(pki)s/shop.crt, keyFile: %(pki)s/shop.key}]
  rules:
    - {name: all, service: catalog}
"""


@pytest.mark.slow
def test_up_serves_every_listener_and_status_lists_them(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    ca = make_ca(pki)
    ca.issue(["shop.example.com"], pki / "shop.crt", pki / "shop.key")
    http_port = free_port()
    root = policy_root(tmp_path / "tiny", {"mesh.yaml": MESH % {"http": http_port, "pki": pki}}, apps=True)

    bad = meshctl(root, "up", "--detach", "--gateway-port", "edge:nope=0")
    assert bad.code == 2 and "no listener nope" in bad.stderr and "secure" in bad.stderr

    up = meshctl(root, "up", "--detach", "--gateway-port", "edge:secure=0", "--timeout", "120")
    try:
        assert up.code == 0, up.stderr
        status = meshctl(root, "status", "--format", "json", "--interval", "0")
        assert status.code == 0, status.stderr
        [gw] = status.json()["gateways"]
        listeners = {lst["name"]: lst for lst in gw["listeners"]}
        assert listeners["web"] == {"name": "web", "protocol": "http",
                                    "url": f"http://127.0.0.1:{http_port}"}
        assert gw["url"] == listeners["web"]["url"]
        secure_url = listeners["secure"]["url"]
        assert listeners["secure"]["protocol"] == "https" and secure_url.startswith("https://")
        https_port = int(secure_url.rsplit(":", 1)[1])
        assert https_port not in (8443, http_port)

        text = meshctl(root, "status", "--interval", "0")
        assert f"http://127.0.0.1:{http_port}" in text.stdout and secure_url in text.stdout

        plain = call(http_port, "shop.example.com", "/products/1")
        assert plain.status == 200, plain.body
        secure = call(https_port, "shop.example.com", "/products/1", sni="shop.example.com", ca=ca)
        assert secure.status == 200, secure.body
        assert secure.cert_serial is not None
        # each port keeps its own protocol: TLS on the http one fails the handshake
        with pytest.raises(OSError):
            call(http_port, "shop.example.com", "/", sni="shop.example.com", ca=ca)
    finally:
        pids = recorded_pids(root / ".meshctl") if (root / ".meshctl" / "state.json").exists() else []
        down = meshctl(root, "down")
    assert down.code == 0, down.stderr
    assert not [p for p in pids if pid_alive(p)]
