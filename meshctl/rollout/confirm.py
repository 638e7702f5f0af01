"""Confirming that sidecars run a revision: asked, not assumed (each one's admin /config)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from meshctl.runtime.observe import running_revision
from meshctl.runtime.plan import SidecarRecord

POLL_S = 0.05


def wait_for_revision(
    records: list[SidecarRecord], revision: str, timeout: float
) -> dict[str, str | None]:
    """Poll every sidecar until each reports `revision`; return those that did not (with what
    they run), empty when all confirmed within `timeout` seconds."""
    pending = {r.instance: r for r in records}
    seen: dict[str, str | None] = {}
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=min(32, max(len(records), 1))) as pool:
        while pending:
            items = list(pending.values())
            revs = list(pool.map(lambda r: running_revision(r, timeout=1.0), items))
            for record, rev in zip(items, revs, strict=True):
                seen[record.instance] = rev
                if rev == revision:
                    del pending[record.instance]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
    return {name: seen.get(name) for name in pending}
