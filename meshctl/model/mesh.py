"""Kind Mesh: mesh-wide settings and the defaults every route rule inherits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from meshctl.contract import ConnectionLimits
from meshctl.model.documents import Envelope
from meshctl.model.route import Retries
from meshctl.model.values import ConnectionSettings, Duration, NoTimeout, Percent, Spec

# DNS name: dot-separated labels (SPIFFE trust domains are lower case).
TRUST_DOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class RetryBudget(Spec):
    percent: Percent = 20
    min_per_second: Annotated[int, Field(ge=0, le=100_000)] = 10


DEFAULT_TIMEOUT_MS = 15_000  # as Envoy's route default; Mesh.spec.defaults.timeout overrides


class Defaults(Spec):
    timeout: Duration | NoTimeout | None = None
    retries: Retries | None = None
    retry_budget: RetryBudget | None = None
    connections: ConnectionSettings | None = None


def effective_timeout_ms(own: int | str | None, defaults: Defaults | None) -> int | None:
    """A route rule's timeout in milliseconds: its own, else the mesh default, else 15 s; None for
    `timeout: none` (no route timeout). The one statement of the rule: validate checks against
    it, the compiler compiles it."""
    if own is None and defaults is not None:
        own = defaults.timeout
    if own is None:
        return DEFAULT_TIMEOUT_MS
    return None if own == "none" else int(own)


def connection_limits(*layers: ConnectionSettings | None) -> ConnectionLimits:
    """A listener's connection limits: the first layer (most specific first: a gateway
    listener's own, its Gateway's or its Service's, Mesh.spec.defaults.connections) that sets a
    field decides it, else the built-in default. The one statement of the rule: validate checks
    against it, the compiler compiles it."""
    builtin = ConnectionLimits()
    headers: int | str | None = None
    idle: int | None = None
    conns: int | None = None
    for layer in layers:
        if layer is None:
            continue
        headers = layer.request_headers_timeout if headers is None else headers
        idle = layer.idle_timeout if idle is None else idle
        conns = layer.max_connections if conns is None else conns
    return ConnectionLimits(
        request_headers_timeout_ms=builtin.request_headers_timeout_ms if headers is None
        else None if headers == "none" else int(headers),
        idle_timeout_ms=builtin.idle_timeout_ms if idle is None else idle,
        max_connections=builtin.max_connections if conns is None else conns,
    )


class Tracing(Spec):
    sampling: Annotated[float, Field(ge=0, le=1)] = 1.0
    # OTLP/HTTP collector base URL (spans go to <otlp>/v1/traces); no spans leave without it.
    otlp: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", max_length=2048)] | None = None


class AccessLogRotation(Spec):
    max_bytes: Annotated[int, Field(ge=4096, le=1 << 40)] = 16 * 1024 * 1024
    keep: Annotated[int, Field(ge=0, le=100)] = 3


class Telemetry(Spec):
    access_log: Literal["json", "text", "off"] = "json"
    access_log_rotation: AccessLogRotation | None = None
    tracing: Tracing | None = None


class Gate(Spec):
    window: Duration = 10_000
    max_error_rate: Percent = 1
    max_p99: Duration = 500


class Rollout(Spec):
    canary: Annotated[int, Field(ge=1, le=1_000)] | Annotated[str, Field(pattern=r"^([1-9][0-9]?|100)%$")] = 1
    gate: Gate | None = None


# A Kubernetes namespace / cluster name: what Istio-style telemetry reports (DNS-1123 label).
LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
CLUSTER_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


class MeshSpec(Spec):
    # Where the mesh runs, as Istio labels it: `render kubernetes` writes this namespace and
    # every sidecar reports it (`*_workload_namespace`); `cluster` fills `*_cluster`.
    namespace: Annotated[str, Field(pattern=LABEL_PATTERN, max_length=63)] = "default"
    cluster: Annotated[str, Field(pattern=CLUSTER_PATTERN, max_length=63)] = "Kubernetes"
    trust_domain: Annotated[str, Field(pattern=TRUST_DOMAIN_PATTERN, max_length=253)] | None = None
    mtls: Literal["strict", "permissive", "disabled"] = "strict"
    outbound_policy: Literal["registry-only", "allow-any"] = "registry-only"
    access_default: Literal["allow", "deny"] = "allow"
    defaults: Defaults | None = None
    telemetry: Telemetry | None = None
    rollout: Rollout | None = None


class Mesh(Envelope):
    kind: Literal["Mesh"]
    spec: MeshSpec = Field(default_factory=MeshSpec)
