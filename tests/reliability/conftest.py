"""Fixtures shared by the reliability tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.procs import App, Sidecar


@pytest.fixture
def procs() -> Iterator[list[App | Sidecar]]:
    """Processes a test started, to stop after it: sidecars are killed (no graceful drain to
    wait for), apps stopped."""
    started: list[App | Sidecar] = []
    yield started
    for proc in started:
        proc.proc.kill() if isinstance(proc, Sidecar) else proc.stop()
