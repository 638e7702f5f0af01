"""Istio's standard label values for every workload, decided once at compile time.

The sidecar reports what is written here and computes nothing per request: a service
`reviews` with version `v1` in namespace `shop` is workload `reviews-v1` (the Deployment name
`render kubernetes` writes), app and canonical service `reviews`, canonical revision and
version `v1`, service `reviews.shop.svc.cluster.local`. A gateway `public` is workload, app and
canonical service `gateway-public`, version `unknown`, canonical revision `latest` (what Istio
reports for a pod without a version label).
"""

from __future__ import annotations

from meshctl import contract as c
from meshctl.model.mesh import MeshSpec
from meshctl.spiffe import spiffe_id

GATEWAY_VERSION = ""  # the key of a gateway's single workload


def service_fqdn(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


def workload_name(service: str, version: str) -> str:
    return f"{service}-{version}"


def gateway_workload(name: str) -> str:
    return f"gateway-{name}"


def service_labels(mesh: MeshSpec, trust_domain: str, name: str, versions: tuple[str, ...]) -> c.ServiceLabels:
    principal = spiffe_id(trust_domain, "service", name)
    return c.ServiceLabels(
        service=service_fqdn(name, mesh.namespace),
        name=name,
        namespace=mesh.namespace,
        workloads={
            v: c.WorkloadLabels(
                workload=workload_name(name, v), namespace=mesh.namespace, app=name, version=v,
                canonical_service=name, canonical_revision=v, cluster=mesh.cluster,
                principal=principal,
            )
            for v in sorted(versions)
        },
    )


def gateway_labels(mesh: MeshSpec, trust_domain: str, name: str) -> c.ServiceLabels:
    workload = gateway_workload(name)
    return c.ServiceLabels(
        service=service_fqdn(workload, mesh.namespace),
        name=workload,
        namespace=mesh.namespace,
        workloads={
            GATEWAY_VERSION: c.WorkloadLabels(
                workload=workload, namespace=mesh.namespace, app=workload, version="unknown",
                canonical_service=workload, canonical_revision="latest", cluster=mesh.cluster,
                principal=spiffe_id(trust_domain, "gateway", name),
            )
        },
    )
