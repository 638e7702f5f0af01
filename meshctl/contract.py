"""The compiled sidecar configuration: the one interface between compiler and addon.

`meshctl compile` writes one `SidecarConfig` per service and per gateway; the addon in
`proxy_addon/` loads it and does no policy reasoning of its own. Everything here is resolved:
defaults applied, durations in integer milliseconds, callers filtered, identities spelled out as
SPIFFE IDs. Addresses only the runtime knows (ports, DNS names) are not here: the runtime
binds them in a separate `RuntimeBindings` file, so one compiled output serves every runtime.

This module imports pydantic, the standard library and `meshctl.defaults` (plain constants)
only: a sidecar loads it.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from meshctl.defaults import MAX_GATEWAY_WORKERS

SCHEMA_VERSION = "meshctl.dev/sidecar/v1"
SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})

# A gateway's processes on its ports, as the policy bounds them; "auto": one per core of the
# machine that runs it (resolved by the runtime). The policy, the sidecar config and the manifest
# share this type, so a hand-edited manifest is held to the policy's bounds.
GatewayWorkers = Annotated[int, Field(ge=1, le=MAX_GATEWAY_WORKERS)] | Literal["auto"]


class Frozen(BaseModel):
    """Immutable, strict about unknown fields: a config the addon does not understand is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- matching -----------------------------------------------------------------------------


class CompiledStringMatch(Frozen):
    """Exactly one of the fields is set. `regex` is a full match (RE2-compatible subset).

    `segment_prefix` (paths only) matches whole segments: "/v2" holds for /v2 and /v2/x, not /v2x.
    """

    exact: str | None = None
    prefix: str | None = None
    segment_prefix: str | None = None
    regex: str | None = None
    present: bool | None = None


# --- the edge: gateway listeners, end-user JWT, CORS, client limits, TLS to external services


class CompiledCors(Frozen):
    """CORS answered at the gateway. Origins: exact / prefix / regex matches of `Origin`."""

    allow_origins: tuple[CompiledStringMatch, ...]
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()  # lower-case
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_s: int | None = None


class CompiledCertificate(Frozen):
    cert_file: str
    key_file: str


class ConnectionLimits(Frozen):
    """What one listener allows a client connection (ConnectionSettings, inherited and resolved).

    The defaults are the built-in ones the compiler fills in (docs/reliability.md says why)."""

    request_headers_timeout_ms: int | None = 10_000  # None: off
    idle_timeout_ms: int = 300_000
    max_connections: int = 1_024


class GatewayListener(Frozen):
    """One port. `hosts` empty: any host. https: `certificates` chosen by SNI, first default."""

    name: str
    port: int
    protocol: Literal["http", "https"] = "http"
    hosts: tuple[str, ...] = ()  # exact or "*.suffix"
    certificates: tuple[CompiledCertificate, ...] = ()
    # Listeners sharing a port share these (validate refuses two settings on one port)
    connections: ConnectionLimits = ConnectionLimits()


class CompiledJwtProvider(Frozen):
    issuer: str
    audiences: tuple[str, ...] = ()  # empty: any audience
    jwks_file: str | None = None
    jwks_uri: str | None = None
    refresh_ms: int = 300_000
    subject_header: str | None = None  # lower-case
    forward_original_token: bool = False


class CompiledClientRateLimit(Frozen):
    """A token bucket per client: by address, by a header's value or by a verified claim."""

    requests_per_second: float
    burst: int
    key: Literal["client-address", "header", "claim"] = "client-address"
    name: str | None = None  # the header (lower-case) or claim


class CompiledOriginationTls(Frozen):
    """TLS this sidecar originates to an external endpoint: the server verified against
    `ca_file` (None: the system trust store) for the name `sni` (None: the endpoint's host)."""

    sni: str | None = None
    ca_file: str | None = None


class RequestMatch(Frozen):
    """All present conditions must hold. Header names are lower-case.

    `source_versions` non-empty: holds only in sidecars of these versions of the calling service
    (`match.from: [reviews/v2]`; the sidecar compares its own version).
    """

    path: CompiledStringMatch | None = None
    methods: tuple[str, ...] = ()
    headers: dict[str, CompiledStringMatch] = {}
    query: dict[str, CompiledStringMatch] = {}
    claims: dict[str, CompiledStringMatch] = {}  # verified JWT claims (gateway); dotted names nest
    source_versions: tuple[str, ...] = ()


# --- route rules --------------------------------------------------------------------------


# No CR, LF, NUL or other control but tab: a config that would split a response is refused.
HeaderValueText = Annotated[str, Field(pattern=r"^[^\x00-\x08\x0a-\x1f\x7f]*$")]


class CompiledHeaderOps(Frozen):
    set: dict[str, HeaderValueText] = {}
    add: dict[str, HeaderValueText] = {}
    remove: tuple[str, ...] = ()


class CompiledBackend(Frozen):
    service: str
    version: str | None = None  # None: every version of `service`, spread by its load balancer
    weight: int
    # Applied only when this backend is chosen, after the rule's own header operations.
    request_headers: CompiledHeaderOps = CompiledHeaderOps()
    response_headers: CompiledHeaderOps = CompiledHeaderOps()


class CompiledStickyCookie(Frozen):
    name: str
    ttl_ms: int


class CompiledSticky(Frozen):
    """Exactly one of header / cookie."""

    header: str | None = None
    cookie: CompiledStickyCookie | None = None


class CompiledBackoff(Frozen):
    base_ms: int = 25
    max_ms: int = 250


class RetryPolicy(Frozen):
    attempts: int = 0  # retries after the first try
    per_try_timeout_ms: int | None = None
    on: tuple[str, ...] = ()  # 5xx, gateway-error, connect-failure, reset, refused-stream,
    # retriable-4xx, a status code as a string ("503"), or a gRPC condition: cancelled,
    # deadline-exceeded, internal, resource-exhausted, unavailable
    backoff: CompiledBackoff = CompiledBackoff()
    non_idempotent: bool = False


class DelayFault(Frozen):
    fixed_ms: int
    percent: float


class AbortFault(Frozen):
    status: int  # for HTTP callers
    percent: float
    grpc_status: int | None = None  # for gRPC callers; None: the gRPC equivalent of `status`


class CompiledFault(Frozen):
    delay: DelayFault | None = None
    abort: AbortFault | None = None


class CompiledMirror(Frozen):
    service: str
    version: str | None = None
    percent: float = 100.0


class CompiledRegexRewrite(Frozen):
    pattern: str
    substitution: str  # \1-style group references


class CompiledRewrite(Frozen):
    """At most one of path_prefix, full_path, regex; host independently."""

    path_prefix: str | None = None
    full_path: str | None = None
    regex: CompiledRegexRewrite | None = None
    host: str | None = None


class CompiledRedirect(Frozen):
    path: str | None = None
    host: str | None = None
    scheme: str | None = None  # None: the request's scheme
    port: int | None = None  # None: the request's port (none when the scheme changes)
    status: int = 301


class CompiledDirectResponse(Frozen):
    status: int
    body: str = ""
    headers: dict[str, str] = {}


class CompiledRouteRule(Frozen):
    """One rule of a destination's route. `matches` empty means it matches every request.

    Exactly one of `backends` (non-empty), `redirect`, `respond` decides what happens.
    """

    name: str
    matches: tuple[RequestMatch, ...] = ()
    backends: tuple[CompiledBackend, ...] = ()
    redirect: CompiledRedirect | None = None
    respond: CompiledDirectResponse | None = None
    sticky: CompiledSticky | None = None
    timeout_ms: int | None = None  # whole request, retries included; None: no timeout
    retries: RetryPolicy = RetryPolicy()
    fault: CompiledFault | None = None
    mirror: CompiledMirror | None = None
    rewrite: CompiledRewrite | None = None
    request_headers: CompiledHeaderOps = CompiledHeaderOps()
    response_headers: CompiledHeaderOps = CompiledHeaderOps()
    cors: CompiledCors | None = None  # used when the request entered through a gateway


# --- destinations (the outbound view of another service) ------------------------------------


class LoadBalancer(Frozen):
    policy: Literal["round-robin", "least-request", "random", "hash"] = "round-robin"
    hash_header: str | None = None
    hash_cookie: CompiledStickyCookie | None = None


class CompiledConnectionPool(Frozen):
    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None


class CompiledOutlierDetection(Frozen):
    consecutive_5xx: int = 5
    interval_ms: int = 10_000
    base_ejection_time_ms: int = 30_000
    max_ejection_percent: float = 50.0


class CompiledHealthCheck(Frozen):
    path: str
    interval_ms: int = 5_000
    timeout_ms: int = 1_000
    unhealthy_threshold: int = 3
    healthy_threshold: int = 1


class CompiledTrafficPolicy(Frozen):
    load_balancer: LoadBalancer = LoadBalancer()
    connection_pool: CompiledConnectionPool | None = None
    outlier_detection: CompiledOutlierDetection | None = None
    health_check: CompiledHealthCheck | None = None


# --- telemetry labels (Istio's standard label values, resolved at compile time) -------------


class WorkloadLabels(Frozen):
    """One workload (a service version, or a gateway) as Istio's metrics name it."""

    workload: str  # the Deployment name: <service>-<version>, gateway-<name>
    namespace: str
    app: str
    version: str
    canonical_service: str
    canonical_revision: str
    cluster: str
    principal: str  # SPIFFE ID; reported only when a handshake verified it


class ServiceLabels(Frozen):
    """A service as Istio's metrics name it, and its workloads by version."""

    service: str  # <name>.<namespace>.svc.cluster.local
    name: str
    namespace: str
    workloads: dict[str, WorkloadLabels] = {}


class Destination(Frozen):
    """How this sidecar reaches one service: its route, versions and traffic policy.

    `has_route` is true when the service has an explicit Route: a request that matches no rule
    then gets 404 NR. Without one, `rules` holds the single implicit catch-all rule.
    Endpoints of each version are resolved at run time from `RuntimeBindings.endpoints`.
    """

    service: str
    protocol: Literal["http", "grpc", "tcp"] = "http"
    identity: str  # SPIFFE ID the destination must present
    versions: tuple[str, ...]
    has_route: bool
    rules: tuple[CompiledRouteRule, ...]
    traffic_policy: CompiledTrafficPolicy = CompiledTrafficPolicy()
    labels: ServiceLabels | None = None  # None: labelled from `service` alone
    # version -> TLS this sidecar originates to that version's endpoints (external services)
    origination: dict[str, CompiledOriginationTls] = {}


# --- inbound (this sidecar's own service) ---------------------------------------------------


class CompiledAccessRule(Frozen):
    """`sources` None means any caller, with or without identity; "*" any mesh identity."""

    sources: tuple[str, ...] | None = None  # SPIFFE IDs or "*"
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # exact, "prefix*" or "*suffix"
    # "<iss>/<sub>" of the end user a gateway verified, or "*"; None: not a condition
    request_principals: tuple[str, ...] | None = None


class CompiledAccessPolicy(Frozen):
    name: str
    action: Literal["allow", "deny"] = "allow"
    rules: tuple[CompiledAccessRule, ...] = ()


class Access(Frozen):
    default: Literal["allow", "deny"] = "allow"
    policies: tuple[CompiledAccessPolicy, ...] = ()


class CompiledRateLimit(Frozen):
    requests_per_second: float
    burst: int


class Inbound(Frozen):
    service: str
    protocol: Literal["http", "grpc", "tcp"] = "http"
    access: Access = Access()
    rate_limit: CompiledRateLimit | None = None
    health_check: CompiledHealthCheck | None = None


# --- gateway ------------------------------------------------------------------------------


class CompiledGatewayRule(Frozen):
    """Exactly one of `service`, `redirect`, `respond`."""

    name: str
    matches: tuple[RequestMatch, ...] = ()
    service: str | None = None
    redirect: CompiledRedirect | None = None
    respond: CompiledDirectResponse | None = None
    request_headers: CompiledHeaderOps = CompiledHeaderOps()
    response_headers: CompiledHeaderOps = CompiledHeaderOps()
    hosts: tuple[str, ...] = ()  # exact or "*.suffix"; empty: every host
    listeners: tuple[str, ...] = ()  # listener names; empty: every listener
    require_token: bool = False
    cors: CompiledCors | None = None


class CompiledGateway(Frozen):
    name: str
    port: int  # the first listener's (the old single-listener form's port)
    rules: tuple[CompiledGatewayRule, ...]
    listeners: tuple[GatewayListener, ...] = ()
    jwt: tuple[CompiledJwtProvider, ...] = ()
    cors: CompiledCors | None = None  # for rules without their own
    rate_limit: CompiledClientRateLimit | None = None
    workers: GatewayWorkers = 1


# --- the whole sidecar config ---------------------------------------------------------------


class CompiledRetryBudget(Frozen):
    percent: float = 20.0
    min_per_second: int = 10


class CompiledTelemetry(Frozen):
    access_log: Literal["json", "text", "off"] = "json"
    access_log_max_bytes: int = 16 * 1024 * 1024  # rotate the access log file past this
    access_log_keep: int = 3  # rotated files kept (access.log.1 ... .N)
    tracing_sampling: float = 1.0
    otlp_endpoint: str | None = None  # OTLP/HTTP base URL; None: spans are not recorded
    namespace: str = "default"
    cluster: str = "Kubernetes"
    # This sidecar's own service (or gateway) and its workloads by version ("" for a gateway):
    # the source labels of what it sends and the destination labels of what it receives.
    labels: ServiceLabels | None = None


class SidecarConfig(Frozen):
    schema_version: str = SCHEMA_VERSION
    revision: str
    kind: Literal["service", "gateway"]
    name: str  # service or gateway name
    mesh: str  # Mesh metadata.name
    trust_domain: str
    identity: str  # this sidecar's SPIFFE ID
    mtls: Literal["strict", "permissive", "disabled"] = "strict"
    outbound_policy: Literal["registry-only", "allow-any"] = "registry-only"
    retry_budget: CompiledRetryBudget = CompiledRetryBudget()
    telemetry: CompiledTelemetry = CompiledTelemetry()
    inbound: Inbound | None = None  # kind == "service"
    gateway: CompiledGateway | None = None  # kind == "gateway"
    # Services this sidecar may call, by name. Mesh services absent here are refused at the
    # source with 403 RBAC (their access policy can never admit this caller); see `denied`.
    destinations: dict[str, Destination] = {}
    denied: tuple[str, ...] = ()
    # The outbound and inbound listeners of a service's sidecar (a gateway's are per listener)
    connections: ConnectionLimits = ConnectionLimits()


# --- runtime bindings (written by a runtime, never by the compiler) -------------------------


class Listeners(Frozen):
    host: str = "127.0.0.1"
    outbound: int | None = None
    inbound: int | None = None
    admin: int
    gateway: dict[str, int] = {}  # gateway listener name -> port, when not its own
    # One of a gateway's workers: its listeners bind with SO_REUSEPORT, shared with the other
    # workers (each has its own admin port). `worker` numbers them from 0.
    shared: bool = False
    worker: int | None = None


class TlsFiles(Frozen):
    cert_file: str
    key_file: str
    ca_file: str


class RuntimeBindings(Frozen):
    """What a runtime knows and the compiler cannot: ports, addresses, certificate files.

    `endpoints[service][version]` lists "host:port" of the inbound listeners of that version's
    instances (or static endpoints). `app` is "host:port" of the local application.
    """

    version: str | None = None
    instance: str
    listeners: Listeners
    app: str | None = None
    endpoints: dict[str, dict[str, tuple[str, ...]]] = {}
    tls: TlsFiles | None = None
    # Endpoints with no sidecar in front (a version's static `endpoints`): called over plain
    # HTTP even under mTLS, since nothing there holds a mesh certificate.
    plaintext_endpoints: tuple[str, ...] = ()
    # The access log file (rotated by the sidecar); None: standard output.
    access_log: str | None = None
    # Name -> IP address, consulted before DNS (as /etc/hosts): how a runtime points an
    # external service's DNS name somewhere, e.g. a local stand-in.
    hosts: dict[str, str] = {}


# --- loading ------------------------------------------------------------------------------


class ContractError(ValueError):
    """A compiled config the addon cannot use: unknown schema version, or not a valid config."""


def parse_sidecar_config(text: str | bytes) -> SidecarConfig:
    """Parse and check a compiled sidecar config; raise ContractError with a readable message."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ContractError("not a JSON object")
    version = raw.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        known = ", ".join(sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise ContractError(
            f"unknown schema_version {version!r}; this sidecar understands {known} "
            "(recompile with a matching meshctl, or upgrade the sidecar)"
        )
    try:
        return SidecarConfig.model_validate(raw)
    except ValidationError as exc:
        raise ContractError(_first_errors(exc)) from None


def parse_runtime_bindings(text: str | bytes) -> RuntimeBindings:
    try:
        return RuntimeBindings.model_validate_json(text)
    except ValidationError as exc:
        raise ContractError(_first_errors(exc)) from None


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def dump_json(model: BaseModel) -> str:
    """Canonical JSON: compact, every field spelled out (nulls too), fields in declaration order.

    Stable across machines: field order is the class's; the compiler fills dicts in sorted order.
    Serialized by pydantic's Rust core (~10x faster than json.dumps of a dict for large meshes).
    """
    return model.model_dump_json() + "\n"


# --- the deployment manifest (manifest.json beside the sidecar configs) -----------------------

MANIFEST_VERSION = "meshctl.dev/manifest/v1"


class ManifestVersion(Frozen):
    """One version of a service as the runtime deploys it."""

    name: str
    replicas: int
    run: tuple[str, ...] | None = None  # None: not run by the mesh (static `endpoints`)
    env: dict[str, str] = {}
    endpoints: tuple[str, ...] = ()
    labels: dict[str, str] = {}


class ManifestService(Frozen):
    name: str
    protocol: str
    port: int | None = None  # the app's port when the policy fixes it (Kubernetes)
    health_path: str | None = None
    versions: tuple[ManifestVersion, ...]


class ManifestListener(Frozen):
    name: str
    port: int
    protocol: Literal["http", "https"] = "http"


class ManifestGateway(Frozen):
    name: str
    port: int  # the primary listener's port
    ports: tuple[int, ...] = ()  # every listener's port
    # Every listener in declaration order (the single-port form: one named "http")
    listeners: tuple[ManifestListener, ...] = ()
    workers: GatewayWorkers = 1


class ManifestGate(Frozen):
    window_ms: int
    max_error_rate: float  # percent
    max_p99_ms: int


class ManifestRollout(Frozen):
    canary: int | str  # a count, or a share such as "10%"
    gate: ManifestGate


class ManifestSidecar(Frozen):
    file: str  # relative path of its config in the compiled directory
    kind: Literal["service", "gateway"]
    sha256: str  # "sha256:<hex>" of the file's bytes


class DeploymentManifest(Frozen):
    """Everything a runtime needs besides the sidecar configs: what to run, where, and how to
    roll it out. Runtime, rollout and render read this, never the policy."""

    manifest_version: str = MANIFEST_VERSION
    schema_version: str = SCHEMA_VERSION  # of the sidecar configs beside it
    revision: str
    source_digest: str
    mesh: str
    namespace: str
    trust_domain: str
    mtls: Literal["strict", "permissive", "disabled"]
    services: tuple[ManifestService, ...]
    gateways: tuple[ManifestGateway, ...]
    rollout: ManifestRollout
    sidecars: dict[str, ManifestSidecar]


def config_hash(data: str | bytes) -> str:
    """How the manifest spells the hash of a config file's bytes."""
    import hashlib

    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def parse_manifest(text: str | bytes) -> DeploymentManifest:
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("manifest_version") != MANIFEST_VERSION:
        found = raw.get("manifest_version") if isinstance(raw, dict) else None
        raise ContractError(
            f"unknown manifest_version {found!r}; this meshctl reads {MANIFEST_VERSION} "
            "(recompile with this meshctl)"
        )
    try:
        return DeploymentManifest.model_validate(raw)
    except ValidationError as exc:
        raise ContractError(_first_errors(exc)) from None
