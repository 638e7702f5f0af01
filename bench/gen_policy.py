"""Generate a large policy repository for benchmarks: N services, N routes, N access policies.

Usage: python bench/gen_policy.py OUT_DIR [--services 1000] [--variant K]

Each service has two versions; each route has a header-matched A/B rule and a 90/10 default
split with retries and a timeout; each service admits calls from three neighbours (as real
meshes are sparse: callers see only what they may call). `--variant K` shifts the weights of
every K-th route, giving a second revision for diff benchmarks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MESH = """apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: bench}
spec:
  trustDomain: bench.local
  mtls: strict
  defaults:
    timeout: 5s
    retries: {attempts: 2, on: [connect-failure, refused-stream]}
"""

SERVICE = """---
apiVersion: meshctl/v1alpha1
kind: Service
metadata:
  name: {name}
  labels: {{team: t{team}}}
spec:
  port: 8080
  versions:
    - name: v1
      run: [python, -m, app]
    - name: v2
      run: [python, -m, app]
      env: {{FEATURE: "on"}}
  trafficPolicy:
    loadBalancer: least-request
    outlierDetection: {{consecutive5xx: 5, interval: 10s, baseEjectionTime: 30s}}
"""

ROUTE = """---
apiVersion: meshctl/v1alpha1
kind: Route
metadata:
  name: {name}
spec:
  service: {name}
  rules:
    - name: beta
      match:
        - headers: {{x-beta: {{exact: "1"}}}}
          path: {{prefix: /api}}
      backends: [{{version: v2, weight: 100}}]
    - name: default
      backends:
        - {{version: v1, weight: {w1}}}
        - {{version: v2, weight: {w2}}}
      timeout: 2s
      retries: {{attempts: 2, perTryTimeout: 500ms, on: [5xx, connect-failure]}}
"""

ACCESS = """---
apiVersion: meshctl/v1alpha1
kind: AccessPolicy
metadata:
  name: {name}
spec:
  service: {name}
  rules:
    - from: [{callers}]
      methods: [GET, POST]
"""

GATEWAY = """apiVersion: meshctl/v1alpha1
kind: Gateway
metadata: {name: edge}
spec:
  port: 18080
  rules:
    - name: front
      service: svc-0000
"""


def service_name(i: int) -> str:
    return f"svc-{i:04d}"


def generate(out: Path, services: int, variant: int = 0) -> None:
    for sub in ("services", "routes", "access"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "mesh.yaml").write_text(MESH)
    (out / "gateway.yaml").write_text(GATEWAY)
    # One document per file, so that check-jsonschema (single-document files only) can read them.
    for i in range(services):
        name = service_name(i)
        shifted = variant and i % variant == 0
        callers = sorted({service_name((i + k) % services) for k in (1, 2, 3)} - {name})
        if i == 0:
            callers.append("gateway/edge")
        documents = {
            "services": SERVICE.format(name=name, team=i % 20),
            "routes": ROUTE.format(name=name, w1=80 if shifted else 90, w2=20 if shifted else 10),
            "access": ACCESS.format(name=name, callers=", ".join(callers)),
        }
        for sub, text in documents.items():
            (out / sub / f"{name}.yaml").write_text(text.removeprefix("---\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--variant", type=int, default=0)
    args = parser.parse_args()
    generate(args.out, args.services, args.variant)


if __name__ == "__main__":
    main()
