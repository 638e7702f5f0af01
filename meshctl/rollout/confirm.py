"""Confirming that sidecars run a revision: asked, not assumed (each one's admin /revision)."""

from __future__ import annotations

import asyncio

from meshctl.runtime.plan import SidecarRecord
from meshctl.runtime.polling import apoll
from meshctl.runtime.ports import HOST
from meshctl.runtime.probe import fetch_revision

POLL_S = 0.02


def wait_for_revision(
    records: list[SidecarRecord], revision: str, timeout: float
) -> dict[str, str | None]:
    """Poll every sidecar until each reports `revision`; return those that did not (with what
    they run), empty when all confirmed within `timeout` seconds."""
    return asyncio.run(_wait(records, revision, timeout))


async def _wait(
    records: list[SidecarRecord], revision: str, timeout: float
) -> dict[str, str | None]:
    pending = {r.instance: r for r in records}
    seen: dict[str, str | None] = {}

    async def all_confirmed() -> bool:
        items = list(pending.values())
        revs = await asyncio.gather(
            *(fetch_revision(HOST, r.admin_port, timeout=1.0) for r in items)
        )
        for record, rev in zip(items, revs, strict=True):
            seen[record.instance] = rev
            if rev == revision:
                del pending[record.instance]
        return not pending

    await apoll(all_confirmed, timeout=timeout, every=POLL_S)
    return {name: seen.get(name) for name in pending}
