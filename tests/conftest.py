"""Shared test helpers: run the CLI as a user would (a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_meshctl(*args: str, cwd: Path | None = None, timeout: float = 60, env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess[str]:
    """Run `meshctl ARGS` in a subprocess; returns the completed process (never raises on exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "meshctl", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


@pytest.fixture
def meshctl():
    return run_meshctl
