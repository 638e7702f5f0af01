"""How the `meshctl` process ends: its exit code, with the heap frozen before the interpreter's
final collection (which cost 0.1-0.25 s per command) and every atexit handler still run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ENTRY = (
    "import atexit, gc, sys\n"
    "atexit.register(lambda: print('atexit ran, frozen', gc.get_freeze_count() > 0))\n"
    "from meshctl.cli.main import run\n"
    "sys.argv = ['meshctl', *sys.argv[1:]]\n"
    "run()\n"
)


@pytest.mark.parametrize(("args", "code"), [
    (["--help"], 0),
    (["validate", "/nonexistent/mesh.d"], 2),
])
def test_the_cli_exits_with_its_code_after_its_atexit_handlers_on_a_frozen_heap(
        args: list[str], code: int) -> None:
    proc = subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1] == "atexit ran, frozen True"
    assert "Traceback" not in proc.stderr
