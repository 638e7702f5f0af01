"""Istio's standard metric labels, as tuples built once per config load.

A request's label set is three parts: the source workload (8 values), the destination
workload and service (11), and what only the request knows (protocol, status, flags...).
The first two come from the compiled `ServiceLabels` (see meshctl/compile/telemetry.py) and are
cached here per (service, version, mTLS); a request only concatenates three tuples.

Across a hop the source's labels travel in one header (`x-mesh-peer`, Istio's metadata
exchange in miniature), which the inbound sidecar strips before the app sees it. A verified
peer certificate wins over the header: a caller cannot claim another service's labels.
"""

from __future__ import annotations

from meshctl.contract import RuntimeBindings, ServiceLabels, SidecarConfig, WorkloadLabels
from meshctl.spiffe import SpiffeIdError, parse

UNKNOWN = "unknown"
PEER_HEADER = "x-mesh-peer"
BLACKHOLE = "BlackHoleCluster"  # Istio's name for requests refused under registry-only
PASSTHROUGH = "PassthroughCluster"  # ... and for traffic passed to outside hosts (allow-any)

SOURCE_LABELS = (
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
)
DESTINATION_LABELS = (
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
)
REQUEST_LABELS = (
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
ISTIO_LABELS = ("reporter", *SOURCE_LABELS, *DESTINATION_LABELS, *REQUEST_LABELS)
TCP_LABELS = ("reporter", *SOURCE_LABELS, *DESTINATION_LABELS, "request_protocol",
              "response_flags", "connection_security_policy")

Source = tuple[str, ...]  # SOURCE_LABELS values
Dest = tuple[str, ...]  # DESTINATION_LABELS values
UNKNOWN_SOURCE: Source = (UNKNOWN,) * len(SOURCE_LABELS)
_PEER_CACHE_MAX = 4096


def _source(w: WorkloadLabels, principal: str) -> Source:
    return (w.workload, w.namespace, principal, w.app, w.version, w.canonical_service,
            w.canonical_revision, w.cluster)


def _dest(s: ServiceLabels, w: WorkloadLabels | None, principal: str) -> Dest:
    if w is None:
        return (UNKNOWN, UNKNOWN, principal, UNKNOWN, UNKNOWN, s.service, s.name, s.namespace,
                s.name, UNKNOWN, UNKNOWN)
    return (w.workload, w.namespace, principal, w.app, w.version, s.service, s.name,
            s.namespace, w.canonical_service, w.canonical_revision, w.cluster)


def unknown_dest(name: str) -> Dest:
    """A destination outside the mesh registry (BlackHoleCluster, PassthroughCluster, a host)."""
    return (UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, name, name, UNKNOWN, name, UNKNOWN,
            UNKNOWN)


def encode_peer(w: WorkloadLabels) -> str:
    return ";".join((w.workload, w.namespace, w.app, w.version, w.canonical_service,
                     w.canonical_revision, w.cluster))


class Labeller:
    """Label tuples for one config load."""

    def __init__(self, config: SidecarConfig, bindings: RuntimeBindings) -> None:
        self.config = config
        own = config.telemetry.labels
        name = f"gateway-{config.name}" if config.kind == "gateway" else config.name
        if own is None:  # a config compiled without labels: name what can be named
            own = ServiceLabels(service=name, name=name, namespace=config.telemetry.namespace)
        self.own = own
        key = bindings.version or ""
        self.workload = own.workloads.get(key) or WorkloadLabels(
            workload=f"{name}-{key}" if key else name,
            namespace=config.telemetry.namespace, app=name, version=key or UNKNOWN,
            canonical_service=name, canonical_revision=key or "latest",
            cluster=config.telemetry.cluster, principal=config.identity,
        )
        self.peer_header = encode_peer(self.workload)
        self.source_plain = _source(self.workload, UNKNOWN)
        self.source_mtls = _source(self.workload, self.workload.principal)
        self.inbound_plain = _dest(own, self.workload, UNKNOWN)
        self.inbound_mtls = _dest(own, self.workload, self.workload.principal)
        self._dests: dict[tuple[str, str, bool], Dest] = {}
        self._peers: dict[tuple[str, str | None], Source] = {}
        # Envoy's cluster names, as the access log's upstream_cluster shows them
        self.inbound_cluster = f"inbound|{bindings.listeners.inbound or 0}||"
        self._clusters: dict[tuple[str, str], str] = {}

    def destination(self, service: str, version: str, mtls: bool) -> Dest:
        key = (service, version, mtls)
        found = self._dests.get(key)
        if found is None:
            dest = self.config.destinations.get(service)
            labels = dest.labels if dest is not None else None
            if labels is None:
                found = unknown_dest(service)
            else:
                w = labels.workloads.get(version)
                found = _dest(labels, w, w.principal if (mtls and w is not None) else UNKNOWN)
            self._dests[key] = found
        return found

    def outbound_cluster(self, version: str, service: str) -> str:
        """outbound|80|<version>|<destination_service>, built once per pair."""
        key = (version, service)
        found = self._clusters.get(key)
        if found is None:
            found = self._clusters[key] = f"outbound|80|{version}|{service}"
        return found

    def peer(self, header: str | None, identity: str | None) -> Source:
        """The caller's source labels: from its header, checked against its certificate."""
        key = (header or "", identity)
        found = self._peers.get(key)
        if found is None:
            found = _parse_peer(header, identity)
            if len(self._peers) >= _PEER_CACHE_MAX:
                self._peers.clear()  # many distinct callers: rebuild rather than grow
            self._peers[key] = found
        return found


def _parse_peer(header: str | None, identity: str | None) -> Source:
    principal = identity or UNKNOWN
    parts = header.split(";") if header else []
    named: str | None = None
    if identity is not None:
        try:
            sid = parse(identity)
            named = sid.name if sid.kind == "service" else f"gateway-{sid.name}"
        except SpiffeIdError:
            named = None
    if len(parts) == 7 and all(parts) and (named is None or parts[2] == named):
        workload, namespace, app, version, canonical, revision, cluster = parts
        return (workload, namespace, principal, app, version, canonical, revision, cluster)
    if named is not None:
        return (UNKNOWN, UNKNOWN, principal, named, UNKNOWN, named, UNKNOWN, UNKNOWN)
    return UNKNOWN_SOURCE
