"""A small policy repository for git-based tests: three services, a route with a split."""

from __future__ import annotations

MESH = """\
apiVersion: meshctl/v1alpha1
kind: Mesh
metadata: {name: shop}
spec:
  trustDomain: shop.local
  accessDefault: allow
"""


def service(name: str, versions: tuple[str, ...] = ("v1",), port: int = 9080) -> str:
    body = "".join(f"    - name: {v}\n      endpoints: ['127.0.0.1:{port + i}']\n" for i, v in enumerate(versions))
    return (
        "apiVersion: meshctl/v1alpha1\nkind: Service\n"
        f"metadata: {{name: {name}}}\nspec:\n  port: {port}\n  versions:\n{body}"
    )


REVIEWS_ROUTE = """\
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - name: default
      backends:
        - {version: v1, weight: 90}
        - {version: v2, weight: 10}
      timeout: 3s
      retries: {attempts: 2, perTryTimeout: 1s, on: [connect-failure]}
"""

# The same route after a change: new weights, a beta rule first, more retries.
REVIEWS_ROUTE_CHANGED = """\
apiVersion: meshctl/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - name: beta-testers
      match:
        - headers: {end-user: {exact: jason}}
      backends:
        - {version: v2, weight: 100}
    - name: default
      backends:
        - {version: v1, weight: 80}
        - {version: v2, weight: 20}
      timeout: 3s
      retries: {attempts: 3, perTryTimeout: 1s, on: [connect-failure, 5xx]}
"""


def write_shop(repo: object, prefix: str = "mesh.d") -> None:
    write = repo.write  # type: ignore[attr-defined]
    write(f"{prefix}/mesh.yaml", MESH)
    write(f"{prefix}/services/productpage.yaml", service("productpage", port=9080))
    write(f"{prefix}/services/reviews.yaml", service("reviews", ("v1", "v2"), port=9100))
    write(f"{prefix}/services/ratings.yaml", service("ratings", port=9200))
    write(f"{prefix}/routes/reviews.yaml", REVIEWS_ROUTE)
