"""The page's other views: one service (rules, versions, instances), the rollout, explain."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meshctl.contract import SidecarConfig
from meshctl.dashboard.graph import gateway_id, numbers, served, service_id, version_id
from meshctl.dashboard.mesh import MeshState, pss_kib
from meshctl.dashboard.series import Counts, Series, is_probe
from meshctl.diff import words
from meshctl.errors import UsageError
from meshctl.explain import ExplainError, Question, explain, parse_header, text_report
from meshctl.revisions import commit_subjects
from meshctl.rollout import promotion
from meshctl.rollout.progress import FILE as PROGRESS_FILE
from meshctl.rollout.progress import VERSION as PROGRESS_VERSION
from meshctl.runtime.applied import read_history
from meshctl.runtime.plan import SidecarRecord

# --- service -------------------------------------------------------------------------------


def route_of(configs: Mapping[str, SidecarConfig], service: str) -> tuple[list[Any], bool]:
    """(rules, explicit) of a service's route, as its callers' sidecars hold it."""
    found = [c.destinations[service] for c in configs.values() if service in c.destinations]
    explicit = [d for d in found if d.has_route]
    chosen = explicit or found
    return (list(chosen[0].rules) if chosen else []), bool(explicit)


def rule_json(rule: Any, service: str) -> dict[str, Any]:
    total = sum(b.weight for b in rule.backends) or 1
    return {
        "name": rule.name,
        "match": words.matches(rule.matches) if rule.matches else "any request",
        "backends": [
            {"service": b.service, "version": b.version, "weight": b.weight,
             "percent": round(100.0 * b.weight / total, 1)}
            for b in rule.backends
        ],
        "redirect": words.redirect(rule.redirect) if rule.redirect else None,
        "respond": words.respond(rule.respond) if rule.respond else None,
        "sticky": words.sticky(rule.sticky) if rule.sticky else None,
        "timeout": words.duration(rule.timeout_ms) if rule.timeout_ms else None,
        "retries": (f"{rule.retries.attempts} on {', '.join(rule.retries.on)}"
                    if rule.retries.attempts else None),
        "fault": words.fault(rule.fault) if rule.fault else None,
        "mirror": words.mirror(rule.mirror, service) if rule.mirror else None,
    }


def configured_weights(rules: list[Any], service: str) -> dict[str, float]:
    """Version -> percent in the catch-all rule (the split most requests get)."""
    catch_all = next((r for r in rules if not r.matches and r.backends), None)
    rule = catch_all or next((r for r in reversed(rules) if r.backends), None)
    if rule is None:
        return {}
    total = sum(b.weight for b in rule.backends if b.service == service) or 1
    out: dict[str, float] = {}
    for b in rule.backends:
        if b.service == service and b.version:
            out[b.version] = out.get(b.version, 0.0) + round(100.0 * b.weight / total, 1)
    return out


def points(slices: list[tuple[float, float, Series]], service: str, version: str) -> list[dict[str, Any]]:
    """The small time series of one version: rps, success %, p50/p99 per slice."""
    out = []
    for at, seconds, series in slices:
        counts = served(series, service, version)
        nums = numbers(counts, seconds)
        success = None if nums["error_rate"] is None else round(100.0 - nums["error_rate"], 2)
        out.append({"t": round(at, 1), "rps": nums["rps"], "success": success,
                    "p50_ms": nums["p50_ms"], "p99_ms": nums["p99_ms"]})
    return out


def instance_json(mesh: MeshState, record: SidecarRecord, revision: str | None,
                  traffic: Series | None, seconds: float) -> dict[str, Any]:
    procs = [mesh.processes.get(n) for n in (record.app_process, record.process) if n]
    pss = [pss_kib(p.pid) if p else None for p in procs]
    own = Counts()
    for key, counts in (traffic or {}).items():
        if key.reporter == "destination" and not is_probe(key):
            own.add(counts)
    own.requests -= own.denied  # refused by its access policy: not served
    status = ", ".join(
        f"{'app' if p.name == record.app_process else 'sidecar'} {p.status}"
        for p in procs if p and not p.ready
    ) or ("ready" if all(procs) else "not started")
    return {
        "instance": record.instance, "healthy": mesh.healthy(record), "status": status,
        "revision": revision, "restarts": sum(p.restarts for p in procs if p),
        "pss_mb": round(sum(x for x in pss if x) / 1024, 1) if any(pss) else None,
        "admin_url": record.admin_url, **numbers(own, seconds),
    }


def service_view(mesh: MeshState, name: str, window: tuple[float, dict[str, Series]],
                 slices: list[tuple[float, float, Series]], revisions: Mapping[str, str | None],
                 total: Series) -> dict[str, Any] | None:
    svc = next((s for s in mesh.plan.topology.services if s.name == name), None)
    if svc is None:
        return None
    seconds, by_instance = window
    rules, explicit = route_of(mesh.configs, name)
    weights = configured_weights(rules, name)
    whole = served(total, name)
    versions = []
    for ver in svc.versions:
        counts = served(total, name, ver.version)
        nums = numbers(counts, seconds)
        versions.append({
            "id": version_id(name, ver.version), "version": ver.version,
            "weight": weights.get(ver.version, 0.0 if weights else None),
            "share": round(100.0 * counts.requests / whole.requests, 1) if whole.requests else None,
            "success": None if nums["error_rate"] is None else round(100.0 - nums["error_rate"], 2),
            **nums,
            "series": points(slices, name, ver.version),
            "static_endpoints": list(ver.endpoints) if not ver.run else [],
            "instances": [
                instance_json(mesh, r, revisions.get(r.instance), by_instance.get(r.instance), seconds)
                for r in mesh.records_of(name, ver.version)
            ],
        })
    callers = sorted(
        (gateway_id(c.name) if c.kind == "gateway" else c.name)
        for c in mesh.configs.values() if name in c.destinations
    )
    inbound = mesh.configs.get(name)
    access = []
    if inbound is not None and inbound.inbound is not None:
        acc = inbound.inbound.access
        access = [
            f"{p.action} {words.access_rule(r)}" for p in acc.policies for r in p.rules
        ] + [f"default {acc.default}"]
    return {
        "service": name, "id": service_id(name), "protocol": svc.protocol,
        "explicit_route": explicit, "rules": [rule_json(r, name) for r in rules],
        "versions": versions, "callers": callers, "access": access,
        "window_s": round(seconds, 1), **numbers(whole, seconds),
    }


# --- rollout -------------------------------------------------------------------------------


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_progress(mesh: MeshState) -> dict[str, Any] | None:
    """The last apply's progress file; a "running" one whose writer died is "abandoned"."""
    try:
        data = json.loads((mesh.state.root / PROGRESS_FILE).read_bytes())
    except (OSError, ValueError):
        return None  # none yet, or caught between two writes of another tool: next tick
    if not isinstance(data, dict) or data.get("version") != PROGRESS_VERSION:
        return None
    if data.get("status") == "running" and not _alive(data.get("pid")):
        data["status"] = "abandoned"
    data["in_progress"] = data.get("status") == "running"
    return data


def read_promotion(mesh: MeshState) -> dict[str, Any] | None:
    """`meshctl promote`'s journal: present while a promotion is under way (or interrupted)."""
    try:
        journal = promotion.read(mesh.state.root)
    except UsageError as exc:  # damaged: shown on the card, the rest of the view stands
        return {"error": str(exc)}
    if journal is None:
        return None
    data: dict[str, Any] = journal.model_dump(mode="json")
    data["current"] = journal.steps[min(journal.passed, len(journal.steps) - 1)] if journal.steps else None
    return data


def rollout_view(mesh: MeshState, subjects: dict[str, str]) -> dict[str, Any]:
    entries = [dataclasses.asdict(e) for e in reversed(read_history(mesh.state))][:50]
    progress = read_progress(mesh)
    for entry in entries:
        entry["subject"] = subjects.get(str(entry.get("revision")))
    if progress is not None:
        progress["subject"] = subjects.get(str(progress.get("target")))
    return {
        "revision": mesh.revision, "subject": subjects.get(str(mesh.revision)),
        "history": entries, "progress": progress, "promotion": read_promotion(mesh),
    }


class Subjects:
    """Commit subjects, asked of git once per revision."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}
        self._asked: set[str] = set()

    def of(self, mesh: MeshState) -> dict[str, str]:
        wanted = {e.revision for e in read_history(mesh.state)}
        wanted.add(str(mesh.revision))
        progress = read_progress(mesh)
        if progress and progress.get("target"):
            wanted.add(str(progress["target"]))
        new = sorted(r for r in wanted - self._asked if r and r != "None")
        if new:
            self._asked.update(new)
            self.known.update(commit_subjects(Path(mesh.plan.policy_dir), new))
        return self.known


# --- explain -------------------------------------------------------------------------------


def explain_view(mesh: MeshState, body: Mapping[str, Any]) -> dict[str, Any]:
    """The `meshctl explain` answer for one request, and what to light up on the graph."""
    source = str(body.get("from") or "").strip()
    method = str(body.get("method") or "GET").strip() or "GET"
    url = str(body.get("url") or "").strip()
    raw_headers = body.get("headers") or []
    if isinstance(raw_headers, str):
        raw_headers = [h for h in raw_headers.splitlines() if h.strip()]
    if not source or not url:
        raise ExplainError("give the calling service (from) and a URL")
    if not mesh.configs:
        raise ExplainError(f"no compiled configs of revision {mesh.revision} in {mesh.state.root}")
    headers = dict(parse_header(str(h)) for h in raw_headers)
    result = explain(mesh.configs, Question(source, method, url, headers))
    src_nodes = [gateway_id(source)] if source.startswith("gateway/") else [
        version_id(source, v.version) for s in mesh.plan.topology.services if s.name == source
        for v in s.versions
    ]
    targets = [version_id(b.service, b.version) if b.version else service_id(b.service)
               for b, _ in result.backends]
    refused = result.access == "deny" or result.status is not None
    if not targets and result.destination:
        targets = [service_id(result.destination)]
    return {
        "answer": result.as_dict(),
        "text": text_report(result),
        "highlight": {
            "nodes": sorted(set(src_nodes + targets)),
            "edges": sorted({f"{s}->{t}" for s in src_nodes for t in targets}),
            "refused": refused,
        },
    }
