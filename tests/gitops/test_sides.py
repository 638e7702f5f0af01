"""The two builds of a diff run side by side: results come back, failures surface cleanly."""

from __future__ import annotations

import time

import pytest

from meshctl.diff.sides import SideBuild, both
from meshctl.errors import UsageError
from tests.support.configs import sidecar

# These tests fork on purpose, with trivial work in the child; a test runner's threads are idle.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


def test_both_returns_each_result_in_order() -> None:
    base, target = both(lambda: SideBuild("a", {"s": sidecar("s")}), lambda: SideBuild("b", {}), fork=True)
    assert (base.revision, target.revision) == ("a", "b")
    assert base.configs == {"s": sidecar("s")}


def test_a_failing_child_is_reported_with_its_traceback() -> None:
    def broken() -> SideBuild:
        raise ValueError("boom")

    with pytest.raises(RuntimeError, match="ValueError: boom"):
        both(broken, lambda: SideBuild("b", {}), fork=True)


def test_a_failing_parent_side_stops_the_child_at_once() -> None:
    def slow() -> SideBuild:
        time.sleep(30)
        return SideBuild("a", {})

    def mistake() -> SideBuild:
        raise UsageError("bad input")

    start = time.monotonic()
    with pytest.raises(UsageError, match="bad input"):
        both(slow, mistake, fork=True)
    assert time.monotonic() - start < 10
