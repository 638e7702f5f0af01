"""Kind Service: a workload, its versions, and the traffic policy its clients apply."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from meshctl.model.documents import Envelope
from meshctl.model.route import StickyCookie
from meshctl.model.values import ConnectionSettings, Duration, ExactlyOne, HeaderName, Name, Percent, Spec

# host:port; a missing port is reported by a semantic check (MESH064) that says what to add.
ENDPOINT_PATTERN = r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$"
Port = Annotated[int, Field(ge=1, le=65535)]


class OriginationTls(Spec):
    """TLS the sidecar originates to a version's endpoints (an external service): `simple` as in
    Istio's DestinationRule, the server verified against `caFile` (the system trust store when
    absent) for the name `sni` (the endpoint's host when absent)."""

    mode: Literal["simple"]
    sni: Annotated[str, Field(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$", max_length=253)] | None = None
    ca_file: Annotated[str, Field(pattern=r"^/", max_length=4096)] | None = None


class Version(Spec):
    name: Name
    replicas: Annotated[int, Field(ge=0, le=100)] = 1
    labels: dict[str, str] | None = None
    run: Annotated[list[str], Field(min_length=1)] | None = None
    env: dict[str, str] | None = None
    endpoints: Annotated[list[Annotated[str, Field(pattern=ENDPOINT_PATTERN)]], Field(min_length=1)] | None = None
    tls: OriginationTls | None = None


class HealthCheck(Spec):
    path: Annotated[str, Field(pattern=r"^/")]
    interval: Duration = 5_000
    timeout: Duration = 1_000
    unhealthy_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    healthy_threshold: Annotated[int, Field(ge=1, le=100)] = 1


class HashOn(ExactlyOne):
    header: HeaderName | None = None
    cookie: StickyCookie | None = None


class HashBalancer(Spec):
    hash: HashOn


class ConnectionPool(Spec):
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    max_pending_requests: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    max_requests: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class OutlierDetection(Spec):
    consecutive_5xx: Annotated[int, Field(ge=1, le=10_000)] = Field(default=5, alias="consecutive5xx")
    interval: Duration = 10_000
    base_ejection_time: Duration = 30_000
    max_ejection_percent: Percent = 50


class RateLimit(Spec):
    requests_per_second: Annotated[float, Field(gt=0, le=1_000_000)]
    burst: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class TrafficPolicy(Spec):
    load_balancer: Literal["round-robin", "least-request", "random"] | HashBalancer = "round-robin"
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    rate_limit: RateLimit | None = None


class ServiceSpec(Spec):
    protocol: Literal["http", "grpc", "tcp"] = "http"
    port: Port | None = None
    versions: Annotated[list[Version], Field(min_length=1)]
    health_check: HealthCheck | None = None
    traffic_policy: TrafficPolicy | None = None
    connections: ConnectionSettings | None = None  # this service's sidecar listeners


class Service(Envelope):
    kind: Literal["Service"]
    spec: ServiceSpec
