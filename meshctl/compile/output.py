"""Compiled mesh -> compiled output: the deployment manifest plus one JSON file per sidecar.

The manifest carries what runtime, rollout and render need from the policy (services, versions,
replicas, commands, gateways, rollout settings with the defaults applied), so none of them reads
the policy model. Writing is all or nothing (`meshctl.compiled`).
"""

from __future__ import annotations

from pathlib import Path

from meshctl import defaults
from meshctl.compile.compiler import Compilation
from meshctl.compile.identity import DEFAULT_TRUST_DOMAIN
from meshctl.compiled import MANIFEST, CompiledMesh, sidecar_file, write_compiled_dir
from meshctl.contract import (
    DeploymentManifest,
    ManifestGate,
    ManifestGateway,
    ManifestListener,
    ManifestRollout,
    ManifestService,
    ManifestSidecar,
    ManifestVersion,
    config_hash,
)

__all__ = ["MANIFEST", "compiled_mesh", "manifest_of", "write_compiled"]


def manifest_of(compiled: Compilation, rendered: dict[str, str]) -> DeploymentManifest:
    policy = compiled.policy
    mesh = policy.mesh.spec if policy.mesh else None
    services = tuple(
        ManifestService(
            name=svc.metadata.name,
            protocol=svc.spec.protocol,
            port=svc.spec.port,
            health_path=svc.spec.health_check.path if svc.spec.health_check else None,
            versions=tuple(
                ManifestVersion(
                    name=v.name, replicas=v.replicas, run=tuple(v.run) if v.run else None,
                    env=dict(sorted((v.env or {}).items())), endpoints=tuple(v.endpoints or ()),
                    labels=dict(sorted((v.labels or {}).items())),
                )
                for v in svc.spec.versions
            ),
        )
        for svc in (loc.obj for loc in policy.services)
    )
    gateways = tuple(
        ManifestGateway(
            name=gw.metadata.name, port=gw.spec.primary_port,
            ports=tuple(sorted({lst.port for lst in gw.spec.listeners or ()} | (
                {gw.spec.port} if gw.spec.port is not None else set()))),
            listeners=tuple(
                ManifestListener(name=lst.name, port=lst.port, protocol=lst.protocol)
                for lst in gw.spec.listeners or ()
            ) or (ManifestListener(name="http", port=gw.spec.primary_port),),
            workers=gw.spec.workers,
        )
        for gw in (loc.obj for loc in policy.gateways)
    )
    rollout = mesh.rollout if mesh else None
    gate = rollout.gate if rollout else None
    any_config = next(iter(compiled.configs.values()), None)
    return DeploymentManifest(
        revision=compiled.revision,
        source_digest=compiled.source_digest,
        mesh=any_config.mesh if any_config else (policy.mesh.metadata.name if policy.mesh else "mesh"),
        namespace=compiled.namespace,
        trust_domain=(mesh.trust_domain if mesh and mesh.trust_domain else DEFAULT_TRUST_DOMAIN),
        mtls=mesh.mtls if mesh else "strict",
        services=services,
        gateways=gateways,
        rollout=ManifestRollout(
            canary=rollout.canary if rollout else defaults.CANARY,
            gate=ManifestGate(
                window_ms=gate.window if gate else defaults.GATE_WINDOW_MS,
                max_error_rate=float(gate.max_error_rate) if gate else defaults.GATE_MAX_ERROR_RATE,
                max_p99_ms=gate.max_p99 if gate else defaults.GATE_MAX_P99_MS,
            ),
        ),
        sidecars={
            name: ManifestSidecar(file=sidecar_file(name), kind=compiled.configs[name].kind,
                                  sha256=config_hash(text))
            for name, text in rendered.items()
        },
    )


def compiled_mesh(compiled: Compilation) -> CompiledMesh:
    rendered = compiled.rendered()
    return CompiledMesh(manifest_of(compiled, rendered), rendered, dict(compiled.configs))


def write_compiled(compiled: Compilation, out_dir: Path) -> DeploymentManifest:
    """Replace `out_dir` with the compiled output; returns the manifest written."""
    output = compiled_mesh(compiled)
    write_compiled_dir(output, out_dir)
    return output.manifest
