"""The committed page bundle (meshctl/dashboard/static/) is built from the committed sources.

The fast check compares source hashes with the ones `frontend/build.mjs` recorded when it
wrote the bundle; the slow one rebuilds from a clean `npm ci` and compares every byte.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
STATIC = ROOT / "meshctl" / "dashboard" / "static"
REBUILD = "cd frontend && npm ci && npm run build"


def test_bundle_was_built_from_these_sources() -> None:
    stamp = json.loads((STATIC / "build.json").read_text())
    sources = {"package.json", "package-lock.json", "build.mjs"} | {
        f"src/{p.name}" for p in (FRONTEND / "src").iterdir()
    }
    assert set(stamp["sources"]) == sources, f"sources added or removed since the build: {REBUILD}"
    for name, digest in stamp["sources"].items():
        actual = hashlib.sha256((FRONTEND / name).read_bytes()).hexdigest()
        assert actual == digest, f"frontend/{name} changed since the bundle was built: {REBUILD}"
    for name in ("index.html", "main.js", "style.css"):
        assert (STATIC / name).stat().st_size > 0
    index = (STATIC / "index.html").read_text()
    assert "/static/main.js" in index and "/static/style.css" in index
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", index)  # nothing from a CDN at run time


def test_the_bundle_ships_in_the_package() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "static/*" in config["tool"]["setuptools"]["package-data"]["meshctl.dashboard"]


@pytest.mark.slow
def test_a_clean_build_gives_the_committed_bundle_byte_for_byte(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed (the hash check above still guards the bundle)")
    work = tmp_path / "frontend"
    shutil.copytree(FRONTEND, work, ignore=shutil.ignore_patterns("node_modules"))
    shutil.copytree(STATIC, tmp_path / "meshctl" / "dashboard" / "static")
    install = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=work,
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    check = subprocess.run(["node", "build.mjs", "--check"], cwd=work, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert "up to date" in check.stdout
