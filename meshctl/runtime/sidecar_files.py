"""The files a sidecar reads, written from the plan: its compiled config and its bindings.

Apart from `plan` so that what only reads the plan (the supervisor, `status`) does not load the
contract's models.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from meshctl.contract import Listeners, RuntimeBindings, SidecarConfig, TlsFiles, dump_json
from meshctl.fsio import write_atomic
from meshctl.runtime.plan import Plan, SidecarRecord, endpoints_of, plaintext_endpoints_of
from meshctl.runtime.ports import HOST
from meshctl.runtime.state import StateDir


def bindings_for(
    record: SidecarRecord, plan: Plan, tls: TlsFiles | None, draining: Collection[str] = (),
    access_log: str | None = None,
) -> RuntimeBindings:
    return RuntimeBindings(
        version=record.version,
        instance=record.instance,
        listeners=Listeners(
            host=HOST,
            outbound=record.outbound_port,
            inbound=record.inbound_port,
            admin=record.admin_port,
            gateway=dict(record.gateway_listeners),
            # Gateways always bind shared: a worker added by `apply` joins the running ones.
            shared=record.is_gateway,
            worker=record.worker if record.is_gateway else None,
        ),
        app=f"{HOST}:{record.app_port}" if record.app_port else None,
        endpoints=endpoints_of(plan, draining),
        tls=tls,
        plaintext_endpoints=plaintext_endpoints_of(plan),
        access_log=access_log,
    )


def write_bindings(
    state: StateDir,
    plan: Plan,
    tls: Mapping[str, TlsFiles],
    only: Collection[str] | None = None,
    draining: Collection[str] = (),
) -> list[str]:
    """Write the bindings of every sidecar (or of `only`); return the instances whose file
    changed. Running sidecars reload them: new endpoints take traffic from then on."""
    changed = []
    for record in plan.sidecars:
        if only is not None and record.instance not in only:
            continue
        path = state.sidecar_bindings(record.instance)
        # The access log has a file of its own, apart from the process output (the sidecar
        # rotates it); logs/<process>.log keeps what the process prints.
        access_log = str(state.logs / f"{record.instance}.access.log")
        text = dump_json(bindings_for(record, plan, tls.get(record.instance), draining, access_log))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            (state.sidecar_dir(record.instance) / "confdir").mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
            changed.append(record.instance)
    return changed


def write_sidecar_config(state: StateDir, instance: str, config: SidecarConfig) -> None:
    state.sidecar_dir(instance).mkdir(parents=True, exist_ok=True)
    write_atomic(state.sidecar_config(instance), dump_json(config))
