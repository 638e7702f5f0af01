"""`meshctl status`: per sidecar its revision, health and traffic, grouped per service version."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Annotated, Any

import typer

from meshctl.cli.common import PolicyDirOption, StateOption, TextOrJson, out, policy_dir
from meshctl.cli.tables import render_table
from meshctl.errors import UsageError
from meshctl.runtime.applied import read_applied
from meshctl.runtime.control import load_plan, require_running
from meshctl.runtime.memory import MeshMemory, mb, mesh_memory
from meshctl.runtime.metrics import pooled
from meshctl.runtime.observe import SidecarStatus, observe
from meshctl.runtime.observed import read_observed
from meshctl.runtime.plan import Plan
from meshctl.runtime.state import StateDir, resolve_state_dir


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def sidecar_json(s: SidecarStatus, memory: MeshMemory | None = None) -> dict[str, Any]:
    r, t = s.record, s.traffic
    return {
        "pss_mb": mb(memory.by_process.get(r.process)) if memory else None,
        "name": r.sidecar,
        "service": r.service,
        "version": r.version,
        "instance": r.instance,
        "revision": s.revision,
        "healthy": s.healthy,
        "status": s.status,
        "restarts": s.restarts,
        "inbound_url": f"http://127.0.0.1:{r.inbound_port}" if r.inbound_port else None,
        "admin_url": r.admin_url,
        "rps": _round(t.rps) if t and t.seconds else None,
        "requests": int(t.requests) if t else None,
        "error_rate": _round(t.error_rate, 2) if t else None,
        "p50_ms": _round(t.p50_ms) if t else None,
        "p99_ms": _round(t.p99_ms) if t else None,
        # callers' sidecars that eject this instance (outlier detection) or fail its health checks
        "ejected_by": s.callers.ejected_by if s.callers else [],
        "ejected_for_s": s.callers.ejected_for_s if s.callers else 0.0,
        "unhealthy_for": s.callers.unhealthy_for if s.callers else [],
    }


def version_rows(statuses: list[SidecarStatus]) -> list[dict[str, Any]]:
    """The A/B view: traffic per service version, its instances' histograms pooled."""
    groups: dict[tuple[str, str], list[SidecarStatus]] = defaultdict(list)
    for s in statuses:
        if s.record.service and s.record.version:
            groups[(s.record.service, s.record.version)].append(s)
    rows: list[dict[str, Any]] = []
    for (service, version), members in sorted(groups.items()):
        windows = [m.traffic for m in members if m.traffic]
        together = pooled(windows, 0.0)
        rows.append(
            {
                "service": service,
                "version": version,
                "instances": len(members),
                "healthy": sum(1 for m in members if m.healthy),
                "rps": round(sum(w.rps for w in windows), 1)
                if any(w.seconds for w in windows)
                else None,
                "error_rate": round(together.error_rate, 2),
                "p50_ms": _round(together.p50_ms),
                "p99_ms": _round(together.p99_ms),
                "requests": int(together.requests),
            }
        )
    # Each version's share of its service's requests: the split as it happens.
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row["service"]] += row["requests"]
    for row in rows:
        total = totals[row["service"]]
        row["share"] = round(100.0 * row["requests"] / total, 1) if total else None
    return rows


def gateway_summary(name: str, statuses: list[SidecarStatus]) -> dict[str, Any]:
    """One gateway, its workers summed: they serve the same ports as one gateway."""
    workers = [s for s in statuses if s.record.sidecar == f"gateway/{name}"]
    windows = [w.traffic for w in workers if w.traffic]
    timed = [t for t in windows if t.seconds]
    together = pooled(windows, 0.0)
    return {
        "workers": len(workers),
        "workers_healthy": sum(1 for w in workers if w.healthy),
        "healthy": any(w.healthy for w in workers),  # serving: some worker takes connections
        "status": next((w.status for w in workers if not w.healthy), "ready"),
        "rps": round(sum(t.rps for t in timed), 1) if timed else None,
        "requests": int(together.requests) if windows else None,
        "error_rate": _round(together.error_rate, 2) if windows else None,
        "p50_ms": _round(together.p50_ms),
        "p99_ms": _round(together.p99_ms),
        "restarts": sum(w.restarts for w in workers),
    }


def memory_json(memory: MeshMemory) -> dict[str, Any]:
    sidecars = memory.sidecar_processes
    return {
        "sidecars_pss_mb": mb(memory.sidecars),
        "sidecar_count": len(sidecars),
        "sidecar_avg_pss_mb": mb(memory.sidecars // len(sidecars)) if sidecars else None,
        "apps_pss_mb": mb(memory.apps),
        "forkserver_pss_mb": mb(memory.forkserver),
        "total_pss_mb": mb(memory.total),
    }


def status_json(plan: Plan, revision: str | None, statuses: list[SidecarStatus],
                memory: MeshMemory | None = None) -> str:
    data = {
        "revision": revision,
        "gateways": [
            {"name": n, "url": found[0][2], **gateway_summary(n, statuses), "listeners": [
                {"name": lst, "protocol": proto, "url": url} for lst, proto, url in found
            ]}
            for n, found in sorted(plan.gateway_listener_urls().items()) if found
        ],
        "sidecars": [sidecar_json(s, memory) for s in statuses],
        "versions": version_rows(statuses),
        "memory": memory_json(memory) if memory else None,
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def _health(s: SidecarStatus) -> str:
    own = "healthy" if s.healthy else s.status
    return f"{own}, {s.callers.words}" if s.callers and s.callers.words else own


def status_text(plan: Plan, revision: str | None, statuses: list[SidecarStatus],
                memory: MeshMemory | None = None) -> str:
    lines = [f"applied revision {revision or '-'}"]
    for name, found in sorted(plan.gateway_listener_urls().items()):
        gw = gateway_summary(name, statuses)
        n, up = gw["workers"], gw["workers_healthy"]
        if n == 0:
            state = "?"
        elif up == n:
            state = "healthy"
        else:
            state = f"{up}/{n} workers healthy" if n > 1 else gw["status"]
        urls = "  ".join(url for _, _, url in found)
        workers = f"  {n} workers" if n > 1 else ""
        pss = ""
        if memory and n:
            names = [w.record.process for w in statuses if w.record.sidecar == f"gateway/{name}"]
            pss = f"  PSS {_fmt(mb(sum(memory.by_process.get(p, 0) for p in names)), ' MB')}"
        latency = f"  p50 {_fmt(gw['p50_ms'], 'ms')}  p99 {_fmt(gw['p99_ms'], 'ms')}" if gw["p99_ms"] else ""
        lines.append(f"gateway {name}  {urls}  {state}  {_fmt(gw['rps'])} req/s{latency}{workers}{pss}")
    if memory:
        m = memory_json(memory)
        lines.append(
            f"memory (PSS): {m['sidecar_count']} sidecars {_fmt(m['sidecars_pss_mb'], ' MB')} "
            f"(avg {_fmt(m['sidecar_avg_pss_mb'], ' MB')}), fork server "
            f"{_fmt(m['forkserver_pss_mb'], ' MB')}, apps {_fmt(m['apps_pss_mb'], ' MB')}, "
            f"total {_fmt(m['total_pss_mb'], ' MB')}"
        )
    header = ("SERVICE", "VERSION", "INSTANCE", "REVISION", "HEALTH", "REQ/S", "SHARE", "ERR%",
              "P50", "P99", "RESTARTS", "PSS")
    rows: list[tuple[str, ...]] = []
    by_version = {(v["service"], v["version"]): v for v in version_rows(statuses)}
    ordered = sorted(
        (s for s in statuses if not s.record.is_gateway),
        key=lambda s: (s.record.service or "", s.record.version or "", s.record.instance),
    )
    previous: tuple[str, str] | None = None
    for s in ordered:
        r, t = s.record, s.traffic
        key = (r.service or "", r.version or "")
        v = by_version[key]
        share = ""
        if key != previous:
            share = _fmt(v["share"], "%")
            if v["instances"] > 1:
                rows.append((r.service or "", r.version or "", f"({v['instances']} instances)",
                             "", f"{v['healthy']}/{v['instances']}", _fmt(v["rps"]), share,
                             _fmt(v["error_rate"]), _fmt(v["p50_ms"], "ms"), _fmt(v["p99_ms"], "ms"),
                             "", ""))
                share = ""
        previous = key
        rows.append((
            r.service or "", r.version or "", r.instance, (s.revision or "?")[:12],
            _health(s),
            _fmt(t.rps if t and t.seconds else None), share, _fmt(t.error_rate if t else None),
            _fmt(t.p50_ms if t else None, "ms"), _fmt(t.p99_ms if t else None, "ms"),
            str(s.restarts),
            _fmt(mb(memory.by_process.get(r.process)), "MB") if memory else "-",
        ))
    return "\n".join(lines) + "\n" + render_table(header, rows)


def status_command(
    dir_option: PolicyDirOption = None,
    state: StateOption = None,
    format: Annotated[TextOrJson, typer.Option("--format", help="Output format.")] = "text",
    interval: Annotated[
        float, typer.Option(help="Seconds between the two metric scrapes (0: since start).")
    ] = 1.0,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh every interval until Ctrl-C.")
    ] = False,
) -> None:
    """Show each sidecar's revision, health, req/s, error rate and p50/p99."""
    if interval < 0:
        raise UsageError("--interval must be >= 0")
    sdir = StateDir(resolve_state_dir(policy_dir(None, dir_option), state))
    load_plan(sdir)  # a clear error when nothing was ever started here
    require_running(sdir)
    render = status_json if format == "json" else status_text
    if watch and interval <= 0:
        raise UsageError("--watch needs an --interval > 0")
    try:
        _show(sdir, render, interval, watch)
    except KeyboardInterrupt:
        if not watch:
            raise  # --watch ends with Ctrl-C: that is its normal exit


def _show(
    sdir: StateDir,
    render: Callable[[Plan, str | None, list[SidecarStatus], MeshMemory | None], str],
    interval: float,
    watch: bool,
) -> None:
    while True:
        plan = load_plan(sdir)  # an apply may have started or stopped instances
        applied = read_applied(sdir)
        revision = applied.revision if applied else plan.revision
        statuses = observe(sdir, plan, interval)
        text = render(plan, revision, statuses, mesh_memory(read_observed(sdir)))
        if not watch:
            out(text)
            return
        clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
        out(f"{clear}{time.strftime('%H:%M:%S')}  {text}")
        require_running(sdir)


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
