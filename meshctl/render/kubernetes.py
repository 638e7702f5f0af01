"""Compiled mesh -> plain Kubernetes manifests (ConfigMaps, Deployments with the sidecar, Services).

The same compiled sidecar configs as the local runtime, with Kubernetes bindings: each sidecar
listens on fixed ports in its pod, and endpoints are the per-version Services' DNS names. The
output is plain YAML that `kubectl apply -k`, Argo CD or Flux sync as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshctl import contract, defaults
from meshctl.compiled import CompiledMesh
from meshctl.contract import ManifestService
from meshctl.fsio import write_atomic
from meshctl.templating import render

OUTBOUND_PORT = 15001  # the ports Istio users know: outbound, inbound, admin
INBOUND_PORT = 15006
ADMIN_PORT = 15020
DEFAULT_APP_PORT = defaults.APP_PORT
CONFIG_DIR = "/etc/meshctl"
TLS_DIR = "/etc/meshctl/tls"


@dataclass(frozen=True)
class RenderOptions:
    namespace: str = "default"
    image_prefix: str = ""  # app images are <prefix><service>:<version>
    sidecar_image: str = "meshctl:latest"


def _dns(service: str, version: str, options: RenderOptions) -> str:
    return f"{service}-{version}.{options.namespace}.svc.cluster.local:{INBOUND_PORT}"


Endpoints = dict[str, dict[str, tuple[str, ...]]]


def _endpoints(compiled: CompiledMesh, options: RenderOptions) -> tuple[Endpoints, set[str]]:
    endpoints: Endpoints = {}
    plaintext: set[str] = set()
    for svc in compiled.manifest.services:
        versions: dict[str, tuple[str, ...]] = {}
        for version in svc.versions:
            if version.endpoints:
                versions[version.name] = tuple(version.endpoints)
                plaintext |= set(version.endpoints)
            else:
                versions[version.name] = (_dns(svc.name, version.name, options),)
        endpoints[svc.name] = versions
    return endpoints, plaintext


def _bindings(
    compiled: CompiledMesh, options: RenderOptions, *, instance: str, version: str | None, app_port: int | None,
    gateway_port: int | None = None,
) -> str:
    endpoints, plaintext = _endpoints(compiled, options)
    mtls = compiled.manifest.mtls != "disabled"
    bindings = contract.RuntimeBindings(
        version=version,
        instance=instance,
        listeners=contract.Listeners(
            host="0.0.0.0",  # reachable from other pods; the outbound listener is for the app only
            outbound=gateway_port if gateway_port is not None else OUTBOUND_PORT,
            inbound=INBOUND_PORT if app_port is not None else None,
            admin=ADMIN_PORT,
        ),
        app=f"127.0.0.1:{app_port}" if app_port is not None else None,
        endpoints=endpoints,
        tls=contract.TlsFiles(cert_file=f"{TLS_DIR}/tls.crt", key_file=f"{TLS_DIR}/tls.key",
                              ca_file=f"{TLS_DIR}/ca.crt") if mtls else None,
        plaintext_endpoints=tuple(sorted(plaintext)),
    )
    return contract.dump_json(bindings)


def _service_manifest(compiled: CompiledMesh, svc: ManifestService, options: RenderOptions) -> str:
    name = svc.name
    app_port = svc.port or DEFAULT_APP_PORT
    versions = []
    for version in svc.versions:
        if version.run is None:
            continue  # static endpoints: nothing to deploy
        labels = {"app": name, "version": version.name, **(version.labels or {})}
        versions.append({
            "name": version.name,
            "replicas": version.replicas,
            "labels": dict(sorted(labels.items())),
            "command": list(version.run),
            "env": dict(sorted((version.env or {}).items())),
            "image": f"{options.image_prefix}{name}:{version.name}",
            "bindings": _bindings(compiled, options, instance=f"{name}-{version.name}", version=version.name,
                                  app_port=app_port),
        })
    context = {
        "name": name,
        "namespace": options.namespace,
        "revision": compiled.revision,
        "config": compiled.rendered[name],
        "versions": versions,
        "app_port": app_port,
        "sidecar_image": options.sidecar_image,
        "ports": {"outbound": OUTBOUND_PORT, "inbound": INBOUND_PORT, "admin": ADMIN_PORT},
        "config_dir": CONFIG_DIR,
        "tls_dir": TLS_DIR,
        "tls": compiled.configs[name].mtls != "disabled",
        "health_path": svc.health_path,
    }
    return render("kubernetes/service.yaml.j2", context)


def _gateway_ports(gateway: contract.CompiledGateway) -> list[dict[str, object]]:
    """Every listener port, once (listeners may share one): the first is named by its protocol
    as before, the others `<protocol>-<port>` (port names are unique DNS labels, <= 15 chars)."""
    listeners = gateway.listeners or (contract.GatewayListener(name="http", port=gateway.port),)
    found: dict[int, str] = {}
    for lst in listeners:
        found.setdefault(lst.port, lst.protocol)
    return [
        {"name": proto if i == 0 else f"{proto}-{port}", "port": port}
        for i, (port, proto) in enumerate(found.items())
    ]


def _gateway_manifest(compiled: CompiledMesh, key: str, options: RenderOptions) -> str:
    config = compiled.configs[key]
    assert config.gateway is not None
    context = {
        "name": config.name,
        "namespace": options.namespace,
        "revision": compiled.revision,
        "config": compiled.rendered[key],
        "bindings": _bindings(compiled, options, instance=f"gateway-{config.name}", version=None, app_port=None,
                              gateway_port=config.gateway.port),
        "port": config.gateway.port,
        "ports": _gateway_ports(config.gateway),
        "sidecar_image": options.sidecar_image,
        "admin_port": ADMIN_PORT,
        "config_dir": CONFIG_DIR,
        "tls_dir": TLS_DIR,
        "tls": config.mtls != "disabled",
        # One gateway process per pod, as everywhere in Kubernetes: `workers: N` is N pods
        # behind the gateway's Service (docs/gateway.md); `auto` (cores of a node nobody
        # knows at render time) stays one pod for an autoscaler to grow.
        "replicas": config.gateway.workers if isinstance(config.gateway.workers, int) else 1,
    }
    return render("kubernetes/gateway.yaml.j2", context)


def render_manifests(compiled: CompiledMesh, options: RenderOptions) -> dict[str, str]:
    """File name -> YAML text; deterministic. Reads the compiled output only (manifest and
    configs), never the policy."""
    files: dict[str, str] = {}
    for svc in compiled.manifest.services:
        files[f"{svc.name}.yaml"] = _service_manifest(compiled, svc, options)
    for key in sorted(k for k in compiled.configs if k.startswith("gateway/")):
        files[f"gateway-{key.removeprefix('gateway/')}.yaml"] = _gateway_manifest(compiled, key, options)
    files["kustomization.yaml"] = render("kubernetes/kustomization.yaml.j2",
                                         {"namespace": options.namespace, "resources": sorted(files)})
    return dict(sorted(files.items()))


def write_manifests(files: dict[str, str], out_dir: Path) -> None:
    for name, text in files.items():
        write_atomic(out_dir / name, text)
