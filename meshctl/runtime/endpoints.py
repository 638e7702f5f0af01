"""What the callers' sidecars think of each instance: ejected by outlier detection, failing
active health checks. Each sidecar reports its view of every destination endpoint on its admin
`/endpoints`; an instance is found by its inbound listener's address."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from meshctl.runtime.plan import SidecarRecord
from meshctl.runtime.ports import HOST
from meshctl.runtime.probe import ask_all, fetch


@dataclass
class EndpointView:
    """One instance as its callers see it: the caller sidecars (instance names) that eject it,
    or whose health checks fail it, and the longest remaining ejection."""

    ejected_by: list[str] = field(default_factory=list)
    unhealthy_for: list[str] = field(default_factory=list)
    ejected_for_s: float = 0.0

    @property
    def words(self) -> str:
        parts = []
        if self.ejected_by:
            parts.append(f"ejected by {len(self.ejected_by)} caller{'s' * (len(self.ejected_by) > 1)}")
        if self.unhealthy_for:
            parts.append(f"failing health checks of {len(self.unhealthy_for)}")
        return ", ".join(parts)


def endpoint_views(records: Iterable[SidecarRecord], timeout: float = 2.0) -> dict[str, EndpointView]:
    """Instance name -> its callers' view, for every instance some caller does not find healthy
    (or has ejected). Sidecars that do not answer are left out."""
    items = list(records)
    by_address = {f"{HOST}:{r.inbound_port}": r.instance for r in items if r.inbound_port}
    views: dict[str, EndpointView] = {}
    for caller, body in ask_all(items, lambda r: fetch(HOST, r.admin_port, "/endpoints", timeout)):
        for endpoint in _endpoints(body):
            instance = by_address.get(str(endpoint.get("address")))
            if instance is None:
                continue
            ejected, healthy = endpoint.get("ejected") is True, endpoint.get("healthy") is not False
            if not ejected and healthy:
                continue
            view = views.setdefault(instance, EndpointView())
            if ejected:
                view.ejected_by.append(caller.instance)
                remaining = endpoint.get("ejected_for_s")
                if isinstance(remaining, (int, float)):
                    view.ejected_for_s = max(view.ejected_for_s, float(remaining))
            if not healthy:
                view.unhealthy_for.append(caller.instance)
    return views


def _endpoints(body: str | None) -> list[dict[str, object]]:
    """Every endpoint entry of a sidecar's report; anything malformed is no entry."""
    if body is None:
        return []
    try:
        report = json.loads(body)
    except ValueError:
        return []
    if not isinstance(report, dict):
        return []
    return [ep for eps in report.values() if isinstance(eps, list) for ep in eps if isinstance(ep, dict)]
