"""An external HTTPS service called as `http://payments-api/`: the sidecar originates TLS.

Real parts: a local HTTPS server with a certificate from a test CA stands in for the third
party (`api.payments.example`); the name resolves to 127.0.0.1 only through the runtime
bindings' `hosts` (there is no DNS here, and nothing else maps it). The app's view is
`HTTP_PROXY` pointing at the sidecar's outbound listener, as for any mesh call.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshctl.contract import (
    CompiledOriginationTls,
    CompiledOutlierDetection,
    CompiledRetryBudget,
    CompiledTrafficPolicy,
    Destination,
    RetryPolicy,
    RuntimeBindings,
    SidecarConfig,
)
from tests.dataplane.conftest import fire, get
from tests.edge.pki import make_ca
from tests.support.configs import destination, service_config, split
from tests.support.procs import App, Sidecar, bindings_for, start_app, start_sidecar

NAME = "api.payments.example"


@dataclass
class ThirdParty:
    app: App
    ca: Path
    other_ca: Path

    def configure(self, **settings: object) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.check_hostname = False  # reached by address here; the sidecar checks the name
        req = urllib.request.Request(f"https://127.0.0.1:{self.app.port}/__config",
                                     data=json.dumps(settings).encode(), method="POST")
        urllib.request.urlopen(req, timeout=5, context=ctx).read()


@pytest.fixture(scope="module")
def third_party(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThirdParty]:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root / "ca")
    other = make_ca(root / "other", "someone else's CA")
    ca.issue([NAME], root / "api.crt", root / "api.key")
    app = start_app("payments", tls=(root / "api.crt", root / "api.key"))
    yield ThirdParty(app, ca.path, other.path)
    app.stop()


def _payments(ca_file: Path) -> Destination:
    rule = split("payments-api", {"v1": 100}, retries=RetryPolicy(attempts=3, on=("5xx", "connect-failure")),
                 timeout_ms=5000)
    base = destination("payments-api", ("v1",), rules=(rule,), traffic_policy=CompiledTrafficPolicy(
        outlier_detection=CompiledOutlierDetection(consecutive_5xx=5, base_ejection_time_ms=1000,
                                                   max_ejection_percent=100)))  # one endpoint
    return base.model_copy(update={"origination": {"v1": CompiledOriginationTls(sni=NAME, ca_file=str(ca_file))}})


def _shop(ca_file: Path, revision: str) -> SidecarConfig:
    # Half the calls fail: a budget that lets every failed call retry (the default 20% would
    # refuse most retries, as it should under a real outage).
    return service_config("shop", (_payments(ca_file),), revision=revision,
                          retry_budget=CompiledRetryBudget(percent=100, min_per_second=100))


def _bindings(port: int) -> RuntimeBindings:
    base = bindings_for(inbound=False, endpoints={"payments-api": {"v1": (f"{NAME}:{port}",)}})
    return base.model_copy(update={"hosts": {NAME: "127.0.0.1"}, "plaintext_endpoints": (f"{NAME}:{port}",)})


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, third_party: ThirdParty) -> Iterator[Sidecar]:
    config = _shop(third_party.ca, "r1")
    sc = start_sidecar(Path(tmp_path_factory.mktemp("shop")), config, _bindings(third_party.app.port))
    yield sc
    assert sc.stop() == 0, sc.stderr()[-2000:]


def test_retried_tls_origination_succeeds_when_the_service_fails_half_the_time(
    shop: Sidecar, third_party: ThirdParty
) -> None:
    third_party.configure(fail_percent=50, reset=True)
    try:
        results = fire(get("http://payments-api/charge", 200), proxy=shop.outbound_proxy, concurrency=1)
    finally:
        third_party.configure(fail_percent=0)
    ok = [r for r in results if r.status == 200]
    assert len(ok) >= 198, [(r.status, r.flags) for r in results if r.status != 200][:5]
    seen = ok[0].json()
    assert seen["headers"]["Host"] == NAME  # the third party's own name, not the mesh's
    # Half the attempts failed: the sidecar retried them (the app counted them all).
    attempts = third_party_count(third_party)
    assert attempts >= 290, attempts
    metrics = shop.metrics()
    assert 'destination_service_name="payments-api"' in metrics
    assert 'meshctl_retries_total{destination_service_name="payments-api"}' in metrics


def third_party_count(third_party: ThirdParty) -> int:
    ctx = ssl.create_default_context(cafile=str(third_party.ca))
    ctx.check_hostname = False
    with urllib.request.urlopen(f"https://127.0.0.1:{third_party.app.port}/__stats", timeout=5,
                                context=ctx) as resp:
        return int(json.loads(resp.read())["requests"])


def test_a_certificate_from_another_ca_is_refused_with_a_flagged_503(
    shop: Sidecar, third_party: ThirdParty
) -> None:
    wrong = _shop(third_party.other_ca, "wrong-ca")
    shop.reload(wrong)
    try:
        results = fire(get("http://payments-api/charge", 5), proxy=shop.outbound_proxy)
        assert {r.status for r in results} == {503}
        assert all("UF" in (r.flags or "") for r in results)
    finally:
        shop.reload(_shop(third_party.ca, "r2"))
    # The refusals counted as failures: outlier detection ejected the endpoint for 1 s.
    assert 'meshctl_outlier_ejections_total{destination_service_name="payments-api"}' in shop.metrics()
    time.sleep(1.2)
    assert fire(get("http://payments-api/ok"), proxy=shop.outbound_proxy)[0].status == 200


def test_registry_only_reaches_declared_external_hosts_only(shop: Sidecar) -> None:
    # The declared service by its mesh name works (above); an undeclared host does not, even
    # the third party's own DNS name: only what the policy declares is reachable.
    for url in (f"http://{NAME}/charge", "http://example.com/"):
        result = fire(get(url), proxy=shop.outbound_proxy)[0]
        assert (result.status, result.flags) == (502, "NR"), url
