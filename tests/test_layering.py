"""The layering is checked, not hoped for: meshctl's layers hold, a sidecar loads only what it needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN_IN_SIDECAR = ("typer", "jinja2", "ruamel", "jsonschema", "meshctl.cli", "meshctl.model",
                        "meshctl.validate", "meshctl.compile", "meshctl.identity", "yaml")


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    lint = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "2 kept, 0 broken" in lint.stdout


def _copy_of_the_code(root: Path) -> Path:
    for package in ("meshctl", "proxy_addon"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "line", "contract", "chain"),
    [
        ("meshctl/compile/compiler.py", "from meshctl.validate import semantic", "meshctl is layered",
         "meshctl.compile.compiler -> meshctl.validate.semantic"),
        ("meshctl/model/route.py", "import meshctl.pipeline", "meshctl is layered",
         "meshctl.model.route -> meshctl.pipeline"),
        ("proxy_addon/outbound.py", "import meshctl.explain", "The sidecar addon",
         "proxy_addon.outbound -> meshctl.explain"),
    ],
)
def test_the_contracts_fail_on_a_forbidden_import(
    tmp_path: Path, module: str, line: str, contract: str, chain: str
) -> None:
    """The contracts can fail: a copy of the code with one forbidden import breaks exactly one."""
    root = _copy_of_the_code(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    lint_imports = Path(sys.executable).parent / "lint-imports"
    lint = subprocess.run([str(lint_imports), "--no-cache"], cwd=root, capture_output=True, text=True)
    assert lint.returncode == 1, lint.stdout + lint.stderr
    assert "1 kept, 1 broken" in lint.stdout, lint.stdout
    broken = lint.stdout[lint.stdout.index("Broken contracts"):]
    assert contract in broken and chain in broken, broken


GUARD = """
import sys
FORBIDDEN = %r
violations = []

class Guard:
    # Records forbidden imports made by our own modules (mitmproxy may load some for itself).
    def find_spec(self, name, path, target=None):
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
            frame = sys._getframe(1)
            while frame and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen")):
                frame = frame.f_back
            importer = frame.f_globals.get("__name__", "") if frame else ""
            if importer.startswith(("proxy_addon", "meshctl")):
                violations.append(f"{importer} -> {name}")
        return None

sys.meta_path.insert(0, Guard())
import proxy_addon, proxy_addon.addon, meshctl.decision.routing, meshctl.decision.access, proxy_addon.__main__
print(";".join(violations))
"""


def test_loading_the_addon_imports_no_cli_yaml_or_templating() -> None:
    probe = GUARD % (FORBIDDEN_IN_SIDECAR,)
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"the sidecar imported: {proc.stdout.strip()}"


def test_the_guard_itself_catches_a_forbidden_import(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The probe above must be able to fail: show it flags our own module importing jsonschema."""
    probe = (GUARD % (FORBIDDEN_IN_SIDECAR,)).replace(
        "import proxy_addon, proxy_addon.addon", "import meshctl.validate.schema_check\nimport proxy_addon")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert "meshctl.validate.schema_check -> jsonschema" in proc.stdout
