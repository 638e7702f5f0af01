"""Prometheus file-based service discovery for the local mesh: `<state>/prometheus/targets.json`.

The supervisor rewrites the file whenever the plan changes (up, apply adding or removing
instances, new ports) and empties it on shutdown, so a Prometheus pointed at it with
`file_sd_configs` (see `meshctl prometheus-config`) always scrapes exactly the running admin
listeners. Each target carries the labels Istio's tooling filters on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshctl.fsio import write_atomic
from meshctl.runtime.plan import Plan
from meshctl.runtime.ports import HOST
from meshctl.runtime.state import StateDir

JOB = "meshctl"


def targets_file(state: StateDir) -> Path:
    return state.root / "prometheus" / "targets.json"


def _namespace(state: StateDir, plan: Plan) -> str:
    """The namespace the sidecars report (from any compiled config; all share it)."""
    for record in plan.sidecars:
        try:
            config = json.loads(state.sidecar_config(record.instance).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        telemetry = config.get("telemetry") if isinstance(config, dict) else None
        namespace = telemetry.get("namespace") if isinstance(telemetry, dict) else None
        if isinstance(namespace, str):
            return namespace
    return "default"


def targets(state: StateDir, plan: Plan | None) -> list[dict[str, Any]]:
    if plan is None:
        return []
    namespace = _namespace(state, plan)
    groups = []
    for record in sorted(plan.sidecars, key=lambda r: r.instance):
        if record.is_gateway:
            name = record.sidecar.removeprefix("gateway/")
            service, workload, version = f"gateway-{name}", f"gateway-{name}", "unknown"
        else:
            service = record.service or record.sidecar
            version = record.version or "unknown"
            workload = f"{service}-{version}"
        groups.append({
            "targets": [f"{HOST}:{record.admin_port}"],
            "labels": {
                "job": JOB,
                "namespace": namespace,
                "workload": workload,
                "service": service,
                "version": version,
                "instance": record.instance,
                # A gateway's workers: one workload, one series each (sum by workload merges).
                **({"worker": str(record.worker)} if record.is_gateway else {}),
            },
        })
    return groups


def write_targets(state: StateDir, plan: Plan | None) -> None:
    """Write the target file (atomically; unchanged content is not rewritten)."""
    path = targets_file(state)
    text = json.dumps(targets(state, plan), indent=1, sort_keys=True) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)


def scrape_config(state: StateDir, interval_s: float) -> str:
    """A Prometheus configuration that scrapes the local mesh through the target file."""
    interval = f"{interval_s:g}s"
    return (
        "# Prometheus configuration for the meshctl mesh of this state directory.\n"
        "# Run: prometheus --config.file=<this file>\n"
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    metrics_path: /metrics\n"
        "    file_sd_configs:\n"
        f"      - files: [{json.dumps(str(targets_file(state)))}]\n"
        f"        refresh_interval: {interval}\n"
    )
