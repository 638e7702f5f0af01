"""From a topology and compiled configs to the processes the daemon runs and the files they read.

Every app instance gets a sidecar (its own config, bindings and mitmproxy confdir); every
gateway gets one gateway sidecar. Ports come from the PortBook so restarts keep them.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from meshctl.errors import UsageError
from meshctl.runtime.ports import HOST, PortBook
from meshctl.runtime.state import Record, StateDir, read_record, write_record
from meshctl.runtime.topology import GatewaySpec, Topology, VersionSpec

PLAN_VERSION = "meshctl.dev/state/plan/v1"

APP, SIDECAR, GATEWAY = "app", "sidecar", "gateway"


@dataclass(frozen=True)
class ProcessSpec:
    """One process the daemon keeps running. `env` is added to the daemon's environment."""

    name: str
    role: str  # app | sidecar | gateway
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    ready_url: str | None = None  # ready when GET answers 200
    ready_port: int | None = None  # ready when the port accepts connections
    tls_dir: str | None = None


@dataclass(frozen=True)
class SidecarRecord:
    """A running sidecar: which compiled config it takes and where to reach it."""

    sidecar: str  # compiled config key: "reviews" or "gateway/public"
    instance: str  # "reviews-v1-0" or "gateway-public"
    process: str  # its ProcessSpec name
    service: str | None
    version: str | None
    admin_port: int
    inbound_port: int | None = None
    outbound_port: int | None = None
    app_port: int | None = None
    app_process: str | None = None
    # A gateway's listeners: name -> the port it listens on here (the first port's is also
    # `outbound_port`); the sidecar reads it from its bindings (`listeners.gateway`).
    gateway_listeners: dict[str, int] = field(default_factory=dict)
    # A gateway's worker number (0 for the first); all its workers share its listener ports.
    worker: int = 0

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    @property
    def is_gateway(self) -> bool:
        return self.service is None


@dataclass
class Plan:
    policy_dir: str
    revision: str
    topology: Topology
    sidecars: list[SidecarRecord] = field(default_factory=list)
    processes: list[ProcessSpec] = field(default_factory=list)
    # The interpreter of every Python process, fixed at `up`: `meshctl` and `python -m meshctl`
    # may name it differently (python3, python), and that alone must not restart anything.
    python: str = field(default_factory=lambda: sys.executable)

    def gateway_urls(self) -> dict[str, str]:
        """Each gateway's first listener."""
        return {name: found[0][2] for name, found in self.gateway_listener_urls().items() if found}

    def gateway_listener_urls(self) -> dict[str, list[tuple[str, str, str]]]:
        """Gateway name -> (listener, protocol, URL) of every listener, in declared order."""
        specs = {g.name: g for g in self.topology.gateways}
        urls: dict[str, list[tuple[str, str, str]]] = {}
        for s in self.sidecars:
            if not s.is_gateway:
                continue
            name = s.sidecar.removeprefix("gateway/")
            spec = specs.get(name)
            found = []
            for lst in spec.all_listeners() if spec else ():
                port = s.gateway_listeners.get(lst.name, s.outbound_port)
                found.append((lst.name, lst.protocol, f"{lst.protocol}://{HOST}:{port}"))
            urls[name] = found or [("http", "http", f"http://{HOST}:{s.outbound_port}")]
        return urls


PLAN = Record(
    "plan.json", PLAN_VERSION, Plan,
    "`meshctl up` writes it: run `meshctl down`, then `meshctl up` to lay the mesh out again",
)


def read_plan(state: StateDir, *, required: bool = False) -> Plan | None:
    value: Plan | None = read_record(state.plan, PLAN, required=required)
    return value


def write_plan(state: StateDir, plan: Plan) -> None:
    write_record(state.plan, PLAN, plan)


def digest_of(plan_json: bytes) -> str:
    return hashlib.sha256(plan_json).hexdigest()


def plan_digest(state: StateDir) -> str:
    """The digest the daemon reports in state.json once it follows the current plan.json."""
    return digest_of(state.plan.read_bytes())


def python_argv(run: tuple[str, ...], python: str) -> tuple[str, ...]:
    """`python` in a run command means meshctl's interpreter: the shop apps need its packages."""
    if run and run[0] in ("python", "python3"):
        return (python, *run[1:])
    return run


def sidecar_argv(state: StateDir, instance: str, python: str) -> tuple[str, ...]:
    """What `meshctl sidecar` executes, started directly: without the CLI's imports a mesh of
    fifty sidecars start seconds sooner. -OO as there: no asserts, no docstrings."""
    return (
        python,
        "-OO",
        "-m",
        "proxy_addon",
        "--config",
        str(state.sidecar_config(instance)),
        "--bindings",
        str(state.sidecar_bindings(instance)),
        "--confdir",
        str(state.sidecar_dir(instance) / "confdir"),
    )


def build_plan(
    topology: Topology,
    *,
    policy_dir: Path,
    revision: str,
    state: StateDir,
    ports: PortBook,
    workdir: Path,
    gateway_ports: Mapping[str, int] | None = None,
    running: frozenset[str] = frozenset(),
    python: str | None = None,
) -> Plan:
    """Assign ports and lay out processes. `running`: processes alive now (ports held by them);
    `python`: the interpreter the running mesh uses (default: this one)."""
    plan = Plan(
        policy_dir=str(policy_dir), revision=revision, topology=topology,
        python=python or sys.executable,
    )
    overrides = dict(gateway_ports or {})
    _check_overrides(topology, overrides)
    for svc in topology.services:
        for ver in svc.versions:
            for instance in ver.instance_names():
                _add_instance(plan, svc.health_path, ver, instance, state, ports, workdir, running)
    for gw in topology.gateways:
        bound = _listener_ports(gw, overrides, ports, running)
        # Each worker: a process of its own with its own admin port, on the same listen ports.
        for worker, name in enumerate(gw.worker_instances()):
            admin = ports.assign(f"{name}/admin", in_use_ok=name in running)
            plan.sidecars.append(
                SidecarRecord(
                    sidecar=gw.sidecar, instance=name, process=name, service=None, version=None,
                    admin_port=admin, outbound_port=bound[gw.all_listeners()[0].name],
                    gateway_listeners=bound, worker=worker,
                )
            )
            plan.processes.append(
                ProcessSpec(
                    name=name, role=GATEWAY, argv=sidecar_argv(state, name, plan.python), env={},
                    cwd=str(workdir), ready_url=f"http://{HOST}:{admin}/ready",
                    tls_dir=str(state.sidecar_dir(name) / "tls"),
                )
            )
    return plan


def _check_overrides(topology: Topology, overrides: Mapping[str, int]) -> None:
    """Keys are NAME (the gateway's first port) or NAME:LISTENER (that listener's port)."""
    gateways = {g.name: g for g in topology.gateways}
    for key in sorted(overrides):
        name, _, listener = key.partition(":")
        if name not in gateways:
            known = ", ".join(sorted(gateways)) or "none"
            raise UsageError(f"--gateway-port: no gateway named {name} (gateways: {known})")
        names = [lst.name for lst in gateways[name].all_listeners()]
        if listener and listener not in names:
            raise UsageError(f"--gateway-port: gateway {name} has no listener {listener} "
                             f"(listeners: {', '.join(names)})")


def _listener_ports(
    gw: GatewaySpec, overrides: Mapping[str, int], ports: PortBook, running: frozenset[str]
) -> dict[str, int]:
    """Listener name -> bound port. Listeners that share a declared port share the bound one
    (they are told apart by host), so an override moves the whole declared port."""
    listeners = gw.all_listeners()
    wanted: dict[int, int] = {}  # declared port -> bound port
    if gw.name in overrides:
        wanted[listeners[0].port] = overrides[gw.name]
    for lst in listeners:
        moved = overrides.get(f"{gw.name}:{lst.name}")
        if moved is not None:
            wanted[lst.port] = moved
    bound: dict[int, int] = {}
    for i, declared in enumerate(dict.fromkeys(lst.port for lst in listeners)):
        port = wanted.get(declared, declared)
        if port == 0:
            # The first port keeps its historic PortBook key, so restarts keep its number.
            key = f"{gw.instance}/listen" if i == 0 else f"{gw.instance}/listen/{declared}"
            held = any(n == gw.instance or n.startswith(f"{gw.instance}_w") for n in running)
            port = ports.assign(key, in_use_ok=held)
        bound[declared] = port
    return {lst.name: bound[lst.port] for lst in listeners}


def _add_instance(
    plan: Plan,
    health_path: str | None,
    ver: VersionSpec,
    instance: str,
    state: StateDir,
    ports: PortBook,
    workdir: Path,
    running: frozenset[str],
) -> None:
    assert ver.run is not None
    sidecar_process = f"{instance}.sidecar"
    app_port = ports.assign(f"{instance}/app", in_use_ok=instance in running)
    held = sidecar_process in running
    inbound = ports.assign(f"{instance}/inbound", in_use_ok=held)
    outbound = ports.assign(f"{instance}/outbound", in_use_ok=held)
    admin = ports.assign(f"{instance}/admin", in_use_ok=held)
    env = {
        **ver.env,
        "PORT": str(app_port),
        "SERVICE": ver.service,
        "VERSION": ver.version,
        "HTTP_PROXY": f"http://{HOST}:{outbound}",
        "http_proxy": f"http://{HOST}:{outbound}",
        "grpc_proxy": f"http://{HOST}:{outbound}",  # gRPC clients tunnel to their sidecar
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    app_ready = f"http://{HOST}:{app_port}{health_path}" if health_path else None
    plan.processes.append(
        ProcessSpec(
            name=instance, role=APP, argv=python_argv(ver.run, plan.python), env=env, cwd=str(workdir),
            ready_url=app_ready, ready_port=None if app_ready else app_port,
        )
    )
    plan.processes.append(
        ProcessSpec(
            name=sidecar_process, role=SIDECAR, argv=sidecar_argv(state, instance, plan.python), env={},
            cwd=str(workdir), ready_url=f"http://{HOST}:{admin}/ready",
            tls_dir=str(state.sidecar_dir(instance) / "tls"),
        )
    )
    plan.sidecars.append(
        SidecarRecord(
            sidecar=ver.service, instance=instance, process=sidecar_process,
            service=ver.service, version=ver.version, admin_port=admin,
            inbound_port=inbound, outbound_port=outbound, app_port=app_port,
            app_process=instance,
        )
    )


def endpoints_of(
    plan: Plan, draining: Collection[str] = ()
) -> dict[str, dict[str, tuple[str, ...]]]:
    """service -> version -> inbound listener addresses (or the policy's static endpoints).
    Instances `draining` (about to restart) are left out: callers stop sending them requests."""
    table: dict[str, dict[str, tuple[str, ...]]] = {}
    for ver in plan.topology.versions():
        if ver.run:
            addrs = tuple(
                f"{HOST}:{s.inbound_port}"
                for s in plan.sidecars
                if s.service == ver.service and s.version == ver.version
                and s.instance not in draining
            )
        else:
            addrs = ver.endpoints
        table.setdefault(ver.service, {})[ver.version] = addrs
    return table


def plaintext_endpoints_of(plan: Plan) -> tuple[str, ...]:
    """Static endpoints: no sidecar in front of them, so no mesh certificate (called plain)."""
    return tuple(sorted({a for ver in plan.topology.versions() if not ver.run for a in ver.endpoints}))
