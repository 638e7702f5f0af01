"""Preparing a mesh to run: compile, lay out the plan, check ports, issue certificates, write files.

`up` calls `prepare`, starts the daemon, and once everything is ready `record_up`; `apply`
calls `write_sidecar_files` for the sidecars of new instances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from meshctl.compiled import CompiledMesh, read_compiled_dir, write_compiled_dir
from meshctl.contract import SidecarConfig, TlsFiles
from meshctl.errors import UsageError
from meshctl.runtime.applied import record_applied
from meshctl.runtime.plan import Plan, build_plan, write_plan
from meshctl.runtime.ports import HOST, PortBook, port_is_free
from meshctl.runtime.sidecar_files import write_bindings, write_sidecar_config
from meshctl.runtime.state import StateDir
from meshctl.runtime.topology import topology_of
from meshctl.validate.diagnostics import Diagnostic


@dataclass(frozen=True)
class LaunchPlan:
    """What `up` is about to start: the plan, the compiled mesh it runs, the policy's warnings."""

    plan: Plan
    compiled: CompiledMesh
    warnings: list[Diagnostic]


def compile_dir(policy_dir: Path, rev: str | None = None) -> tuple[CompiledMesh, list[Diagnostic]]:
    """Compile the work tree (or a revision): (compiled output, warnings); PolicyInvalid
    carrying the diagnostics when the policy has errors."""
    from meshctl.compile.output import compiled_mesh
    from meshctl.pipeline import build_source

    if not policy_dir.is_dir():
        raise UsageError(f"policy directory {policy_dir} does not exist")
    result = build_source(policy_dir, rev)
    return compiled_mesh(result.compiled_or_raise("nothing was started")), result.warnings


def prepare(
    policy_dir: Path,
    state: StateDir,
    *,
    gateway_ports: Mapping[str, int] | None = None,
    replacing: frozenset[str] = frozenset(),
    compiled_dir: Path | None = None,
) -> LaunchPlan:
    """`replacing`: processes a dead supervisor left that `up` is about to replace; their
    ports are theirs to hand over, not taken. `compiled_dir`: run that compiled output (built
    elsewhere, hash-checked) instead of compiling `policy_dir`."""
    warnings: list[Diagnostic] = []
    if compiled_dir is not None:
        compiled = read_compiled_dir(compiled_dir)
    else:
        compiled, warnings = compile_dir(policy_dir)
    state.ensure()
    ports = PortBook(state.ports)
    plan = build_plan(
        topology_of(compiled.manifest),
        policy_dir=policy_dir.resolve(),
        revision=compiled.revision,
        state=state,
        ports=ports,
        workdir=policy_dir.resolve().parent,
        gateway_ports=gateway_ports,
        running=replacing,
    )
    check_ports_free(plan, skip=[s.instance for s in plan.sidecars
                                 if {s.process, s.app_process} & replacing])
    ports.save()
    write_compiled_dir(compiled, state.compiled(compiled.revision))
    write_sidecar_files(state, plan, compiled, (s.instance for s in plan.sidecars))
    write_plan(state, plan)
    return LaunchPlan(plan=plan, compiled=compiled, warnings=warnings)


def record_up(policy_dir: Path, state: StateDir, prepared: LaunchPlan) -> None:
    """The revision `up` started is the applied one, once it runs."""
    compiled = prepared.compiled
    record_applied(state, compiled.revision, compiled.manifest.source_digest, compiled.rendered,
                   [s.instance for s in prepared.plan.sidecars])
    _record_ref(policy_dir, prepared.compiled.revision)


def _record_ref(policy_dir: Path, revision: str) -> None:
    """A clean commit that runs is the applied revision in git too (`meshctl diff` reads it)."""
    from meshctl.sources.git import GitError, PolicyRepo

    if revision.endswith("-dirty"):
        return
    try:
        PolicyRepo.discover(policy_dir).update_ref(revision, f"meshctl up {revision}")
    except GitError:
        pass


def check_ports_free(plan: Plan, skip: Iterable[str] = ()) -> None:
    """UsageError naming every taken port and what needed it (before anything starts)."""
    skipped = set(skip)
    # A gateway's workers share its listen ports (SO_REUSEPORT): a new worker joins ports its
    # running siblings hold. Any other holder still makes the port taken.
    shared = {
        (s.sidecar, port) for s in plan.sidecars if s.is_gateway and s.instance in skipped
        for port in (s.outbound_port, *s.gateway_listeners.values())
    }
    taken = []
    for s in plan.sidecars:
        if s.instance in skipped:
            continue
        wanted = {
            "gateway listener" if s.is_gateway else "outbound listener": s.outbound_port,
            "inbound listener": s.inbound_port,
            "admin listener": s.admin_port,
            "app": s.app_port,
        }
        items = list(wanted.items()) + [
            (f"gateway listener {name}", port)
            for name, port in s.gateway_listeners.items() if port != s.outbound_port
        ]
        for what, port in dict(items).items():
            if s.is_gateway and what != "admin listener" and (s.sidecar, port) in shared:
                continue
            if port is not None and not port_is_free(port):
                taken.append(f"{s.sidecar} ({s.instance}) {what}: port {port} on {HOST} is taken")
    if taken:
        hint = (
            "; stop what holds it, or choose another port (gateways: --gateway-port NAME=PORT or NAME:LISTENER=PORT)"
        )
        raise UsageError("cannot start:\n  " + "\n  ".join(taken) + "\n" + hint)


def issue_certificates(
    state: StateDir, configs: Mapping[str, SidecarConfig], instances: Iterable[tuple[str, str]]
) -> dict[str, TlsFiles]:
    """Certificates for (instance, sidecar) pairs from the mesh CA in <state>/ca/."""
    from meshctl.identity import MeshCA, write_sidecar_certs

    pairs = list(instances)
    if not pairs:
        return {}
    trust_domain = next(iter(configs.values())).trust_domain
    ca = MeshCA.load_or_create(state.ca_dir, trust_domain)
    return {
        instance: write_sidecar_certs(
            ca, configs[sidecar].identity, state.sidecar_dir(instance) / "tls"
        )
        for instance, sidecar in pairs
    }


def tls_of(state: StateDir, plan: Plan) -> dict[str, TlsFiles]:
    """The certificate files of every sidecar that has them."""
    from meshctl.identity import tls_files

    out = {}
    for s in plan.sidecars:
        tls_dir = state.sidecar_dir(s.instance) / "tls"
        if (tls_dir / "cert.pem").is_file():
            out[s.instance] = tls_files(tls_dir)
    return out


def write_sidecar_files(
    state: StateDir,
    plan: Plan,
    compiled: CompiledMesh,
    instances: Iterable[str],
    *,
    all_bindings: bool = True,
) -> None:
    """Config, certificates and bindings of `instances` (new ones); with `all_bindings` every
    other sidecar's bindings too (they learn the new endpoints)."""
    wanted = set(instances)
    records = [s for s in plan.sidecars if s.instance in wanted]
    needs_tls = [
        (s.instance, s.sidecar) for s in records if compiled.configs[s.sidecar].mtls != "disabled"
    ]
    issue_certificates(state, compiled.configs, needs_tls)
    for s in records:
        write_sidecar_config(state, s.instance, compiled.configs[s.sidecar])
    write_bindings(state, plan, tls_of(state, plan), None if all_bindings else wanted)
