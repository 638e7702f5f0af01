"""Kubernetes Services, Deployments and ServiceAccounts of the input: versions, labels, ports.

Istio and the Gateway API name workloads by labels (`app`, `version`), services by Kubernetes
Service, and callers by service account; meshctl names services and versions. This index is
the translation table between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from meshctl.importers.read import Src
from meshctl.importers.report import ImportReport

APP_LABELS = ("app", "app.kubernetes.io/name", "service.istio.io/canonical-name")
VERSION_LABELS = ("version", "app.kubernetes.io/version", "service.istio.io/canonical-revision")
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def meshctl_name(text: str) -> str:
    """A lower-case DNS label: what meshctl accepts as a service, version or rule name."""
    name = _NOT_NAME.sub("-", text.lower()).strip("-")[:63].strip("-")
    return name or "x"


def short_host(host: str, namespace: str = "default") -> str:
    """reviews, reviews.default, reviews.default.svc.cluster.local -> reviews."""
    host = host.lower()
    for suffix in (f".{namespace}.svc.cluster.local", ".svc.cluster.local", f".{namespace}.svc", f".{namespace}"):
        if host.endswith(suffix):
            return host[: -len(suffix)].split(".")[0]
    return host


def label_of(labels: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = labels.get(key)
        if isinstance(value, str) and value:
            return value
    return None


@dataclass
class Workload:
    src: Src
    app: str
    version: str
    labels: dict[str, str]
    replicas: int
    port: int | None
    account: str | None


@dataclass
class KubeService:
    src: Src
    name: str
    selector: dict[str, str]
    port: int | None
    grpc: bool


@dataclass
class Kube:
    services: dict[str, KubeService] = field(default_factory=dict)
    workloads: list[Workload] = field(default_factory=list)
    accounts: dict[str, str] = field(default_factory=dict)  # service account -> service

    def target(self, name: str) -> tuple[str, str | None]:
        """A Kubernetes Service name -> (meshctl service, version or None).

        A Service whose selector names a version (bookinfo's `reviews-v1`) is that version of
        the app it selects.
        """
        ks = self.services.get(name)
        if ks is not None:
            version = label_of(ks.selector, VERSION_LABELS)
            app = label_of(ks.selector, APP_LABELS)
            if version is not None and app is not None:
                return meshctl_name(app), meshctl_name(version)
        return meshctl_name(name), None

    def versions(self, service: str) -> list[Workload]:
        return [w for w in self.workloads if w.app == service]

    def port(self, service: str) -> int | None:
        ks = self.services.get(service)
        if ks is not None and ks.port is not None:
            return ks.port
        return next((w.port for w in self.versions(service) if w.port), None)

    def app_of_labels(self, labels: dict[str, Any]) -> str | None:
        """The service a workload selector (matchLabels, sourceLabels) points at."""
        app = label_of(labels, APP_LABELS)
        if app is not None:
            return meshctl_name(app)
        for w in self.workloads:
            if labels and all(w.labels.get(k) == v for k, v in labels.items()):
                return w.app
        return None


def index(objects: list[Src], report: ImportReport) -> Kube:
    kube = Kube()
    for src in objects:
        if src.kind == "Service" and src.group == "":
            _service(kube, src)
        elif src.kind == "Deployment":
            _deployment(kube, src, report)
        elif src.kind == "ServiceAccount":
            report.imported.append(f"{src.label} ({src.where})")
    return kube


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ports(spec: dict[str, Any]) -> list[dict[str, Any]]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def _service(kube: Kube, src: Src) -> None:
    spec = src.spec
    selector = _dict(spec.get("selector"))
    ports = _ports(spec)
    port = ports[0].get("port") if ports and isinstance(ports[0].get("port"), int) else None
    grpc = any(str(p.get("name", "")).startswith("grpc") or p.get("appProtocol") in ("grpc", "kubernetes.io/h2c")
               for p in ports)
    kube.services[src.name] = KubeService(src, src.name, {str(k): str(v) for k, v in selector.items()}, port, grpc)


def _deployment(kube: Kube, src: Src, report: ImportReport) -> None:
    spec = src.spec
    template = _dict(spec.get("template"))
    labels = {str(k): str(v) for k, v in _dict(_dict(template.get("metadata")).get("labels")).items()}
    pod = _dict(template.get("spec"))
    app = label_of(labels, APP_LABELS) or src.name
    version = label_of(labels, VERSION_LABELS) or "v1"
    port = None
    for container in pod.get("containers") or []:
        for p in (container.get("ports") or []) if isinstance(container, dict) else []:
            if isinstance(p, dict) and isinstance(p.get("containerPort"), int) and port is None:
                port = p["containerPort"]
    replicas = spec.get("replicas", 1)
    account = pod.get("serviceAccountName") if isinstance(pod.get("serviceAccountName"), str) else None
    workload = Workload(src, meshctl_name(app), meshctl_name(version), labels,
                        replicas if isinstance(replicas, int) else 1, port, account)
    kube.workloads.append(workload)
    if account:
        kube.accounts.setdefault(account, workload.app)
    report.imported.append(f"{src.label} ({src.where})")
    report.drop(src.doc, src.label, ("spec", "template", "spec"),
                "meshctl runs no container images: the version gets a static endpoint "
                f"{workload.app}-{workload.version}:{port or 80}; set `run` or the real address",
                kind="ignored")
