"""The per-request cost of the edge features, each against the plain gateway path.

    .venv/bin/python -m bench.edge.run [--duration 5] [--rounds 2] [--connections 16]

One gateway sidecar in front of one plain app. Its config has an http and an https listener
(any host); each variant is a hot reload of that config (JWT required and verified, CORS,
per-client rate limit set far above the load) or another URL (https: TLS terminated, with
keep-alive). External services: one outbound sidecar calling the same kind of app as
`http://plain-api/` (plain HTTP) and as `http://payments-api/` (TLS originated to a local
HTTPS server through a name bound in RuntimeBindings.hosts). Variants alternate within each
round against the baseline run in the same round; the table shows medians over rounds, and
the cost as sidecar CPU per request (what a busy shared machine disturbs least). Results also
go to bench/results/edge.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.mtls.run import cpu_seconds, parse_wrk
from meshctl.contract import (
    CompiledCertificate,
    CompiledClientRateLimit,
    CompiledCors,
    CompiledGateway,
    CompiledGatewayRule,
    CompiledJwtProvider,
    CompiledOriginationTls,
    CompiledStringMatch,
    CompiledTelemetry,
    GatewayListener,
    Listeners,
    RuntimeBindings,
    SidecarConfig,
)
from tests.edge.pki import make_ca
from tests.support.configs import destination, gateway_config, service_config
from tests.support.procs import REPO, bindings_for, free_port, start_app, start_sidecar

ISSUER = "https://id.bench"
QUIET = CompiledTelemetry(access_log="off", tracing_sampling=0.0)


def lua(path: str, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "GET"', f'wrk.path = "{path}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="meshctl-bench-edge-"))
    ca = make_ca(root / "pki")
    ca.issue(["shop.bench", "api.bench"], root / "gw.crt", root / "gw.key")
    key = rsa.generate_private_key(65537, 2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (root / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256"}]}))
    token = jwt.encode({"iss": ISSUER, "sub": "bench", "exp": int(time.time()) + 3600}, key,
                       algorithm="RS256", headers={"kid": "k1"})
    app = start_app("shop", plain=True)
    tls_app = start_app("payments", plain=True, tls=(root / "gw.crt", root / "gw.key"))
    http_port, https_port = free_port(), free_port()
    listeners = (GatewayListener(name="web", port=http_port),
                 GatewayListener(name="secure", port=https_port, protocol="https",
                                 certificates=(CompiledCertificate(cert_file=str(root / "gw.crt"),
                                                                   key_file=str(root / "gw.key")),)))

    def gateway(rev: str, **extra: object) -> SidecarConfig:
        rule = CompiledGatewayRule(name="all", service="shop", require_token=bool(extra.pop("token", False)))
        gw = CompiledGateway(name="edge", port=http_port, rules=(rule,), listeners=listeners, **extra)  # type: ignore[arg-type]
        return gateway_config("edge", gw, (destination("shop"),), revision=rev).model_copy(
            update={"telemetry": QUIET})

    variants: dict[str, tuple[dict[str, object], int, str, dict[str, str]]] = {
        "baseline (http)": ({}, http_port, "http", {"Host": "shop.bench"}),
        "https listener": ({}, https_port, "https", {"Host": "shop.bench"}),
        "JWT (RS256) required": ({"token": True, "jwt": (CompiledJwtProvider(
            issuer=ISSUER, jwks_file=str(root / "jwks.json"), subject_header="x-user"),)},
            http_port, "http", {"Host": "shop.bench", "Authorization": f"Bearer {token}"}),
        "CORS (allowed origin)": ({"cors": CompiledCors(allow_origins=(
            CompiledStringMatch(exact="https://app.bench"),), allow_methods=("GET",))},
            http_port, "http", {"Host": "shop.bench", "Origin": "https://app.bench"}),
        "per-client rate limit": ({"rate_limit": CompiledClientRateLimit(
            requests_per_second=1e6, burst=1_000_000)}, http_port, "http", {"Host": "shop.bench"}),
    }
    gw_bindings = RuntimeBindings(instance="gw", listeners=Listeners(admin=free_port()),
                                  endpoints={"shop": {"v1": (app.address,)}})
    ext_dests = (destination("plain-api"), destination("payments-api").model_copy(update={
        "origination": {"v1": CompiledOriginationTls(sni="api.bench", ca_file=str(ca.path))}}))
    ext_config = service_config("caller", ext_dests, inbound=None).model_copy(update={"telemetry": QUIET})
    ext_bindings = bindings_for(inbound=False, endpoints={
        "plain-api": {"v1": (app.address,)},
        "payments-api": {"v1": (f"api.bench:{tls_app.port}",)}}).model_copy(
        update={"hosts": {"api.bench": "127.0.0.1"}})
    sidecars = []
    try:
        gw = start_sidecar(root / "gw", gateway("r0"), gw_bindings)
        sidecars.append(gw)
        ext = start_sidecar(root / "ext", ext_config, ext_bindings)
        sidecars.append(ext)
        ext_port = ext.bindings.listeners.outbound
        assert ext_port is not None
        results: dict[str, list[dict[str, float]]] = {}
        rev = 0
        for round_no in range(args.rounds):
            for name, (extra, port, scheme, headers) in variants.items():
                rev += 1
                gw.reload(gateway(f"r{rev}", **dict(extra)))
                script = root / "v.lua"
                script.write_text(lua("/bench", headers))
                url = f"{scheme}://127.0.0.1:{port}"
                results.setdefault(name, []).append(
                    _run(url, script, args, [gw.proc.pid], warm=True))
            for name, host in (("external: plain HTTP", "plain-api"),
                               ("external: TLS originated", "payments-api")):
                script = root / "e.lua"
                script.write_text(lua(f"http://{host}/bench", {"Host": host}))
                results.setdefault(name, []).append(
                    _run(f"http://127.0.0.1:{ext_port}", script, args, [ext.proc.pid], warm=True))
            print(f"round {round_no + 1} done", file=sys.stderr)
        return _report(results, args)
    finally:
        for sc in sidecars:
            sc.stop()
        app.stop()
        tls_app.stop()
        shutil.rmtree(root, ignore_errors=True)


def _run(url: str, script: Path, args: argparse.Namespace, pids: list[int], warm: bool) -> dict[str, float]:
    def once(duration: int) -> dict[str, float]:
        before = cpu_seconds(pids)
        out = subprocess.run(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
            check=True, capture_output=True, text=True,
        ).stdout
        result = parse_wrk(out)
        requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        result["cpu_ms_per_request"] = (cpu_seconds(pids) - before) * 1000 / max(requests, 1)
        return result

    if warm:
        once(1)
    result = once(args.duration)
    print(f"  {url} {result['rps']:.0f} req/s cpu {result['cpu_ms_per_request']:.3f} ms/req "
          f"non-2xx {result['non_2xx']:.0f}", file=sys.stderr)
    return result


def _report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> int:
    summary = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
               for name, runs in results.items()}
    base = summary["baseline (http)"]["cpu_ms_per_request"]
    ext_base = summary["external: plain HTTP"]["cpu_ms_per_request"]
    print("| variant | req/s | p50 ms | p99 ms | sidecar CPU ms/request | added CPU ms/request |")
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        ref = ext_base if name.startswith("external") else base
        print(f"| {name} | {s['rps']:.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
              f"{s['cpu_ms_per_request']:.3f} | {s['cpu_ms_per_request'] - ref:+.3f} |")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "edge.json").write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "duration_s": args.duration,
        "connections": args.connections, "rounds": results, "median": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
