"""`meshctl render kubernetes --compiled OUT`: a directory compiled elsewhere (CI) renders to the
same manifests as the policy it came from, hash-checked like `up`/`apply --compiled`, without
loading the policy model or a YAML parser."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_meshctl
from tests.support.meshdir import compiled


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compiled(REPO / "mesh.d", tmp_path_factory.mktemp("ci") / "build")


def files(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}


def test_compiled_renders_the_same_manifests_as_the_policy(built: Path, tmp_path: Path) -> None:
    from_policy = run_meshctl("render", "kubernetes", str(REPO / "mesh.d"), "--out", str(tmp_path / "a"))
    from_build = run_meshctl("render", "kubernetes", "--compiled", str(built), "--out", str(tmp_path / "b"))
    assert from_policy.returncode == 0 and from_build.returncode == 0, from_build.stderr
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert len(files(tmp_path / "b")) > 3
    same_ns = run_meshctl("render", "kubernetes", "--compiled", str(built), "--out", str(tmp_path / "c"),
                          "--namespace", json.loads((built / "manifest.json").read_text())["namespace"])
    assert same_ns.returncode == 0 and files(tmp_path / "c") == files(tmp_path / "b")


def test_a_changed_config_is_refused_and_nothing_is_written(built: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "build"
    shutil.copytree(built, tampered)
    config = tampered / "services" / "reviews.json"
    config.write_text(config.read_text().replace('"timeout_ms":', '"timeout_ms": ', 1))
    proc = run_meshctl("render", "kubernetes", "--compiled", str(tampered), "--out", str(tmp_path / "k8s"))
    assert proc.returncode == 2, proc.stderr
    assert "services/reviews.json" in proc.stderr and "manifest" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "k8s").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--rev", "HEAD"), "give no DIR, --dir or --rev"),
        (("mesh.d",), "give no DIR, --dir or --rev"),
        (("--namespace", "elsewhere"), "was compiled for namespace"),
    ],
)
def test_usage_errors(built: Path, tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    proc = run_meshctl("render", "kubernetes", "--compiled", str(built), "--out", str(tmp_path / "k8s"), *extra)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_a_directory_that_is_no_compile_output_is_exit_2(tmp_path: Path) -> None:
    proc = run_meshctl("render", "kubernetes", "--compiled", str(tmp_path), "--out", str(tmp_path / "k8s"))
    assert proc.returncode == 2 and "manifest.json is missing" in proc.stderr


def test_render_compiled_loads_neither_the_model_nor_a_yaml_parser(built: Path, tmp_path: Path) -> None:
    argv = ["render", "kubernetes", "--compiled", str(built), "--out", str(tmp_path / "k8s")]
    code = (
        "import sys\n"
        "from meshctl.cli.main import main\n"
        f"assert main({argv!r}) == 0\n"
        "policy = ('yaml', 'ruamel', 'meshctl.model', 'meshctl.compile', 'meshctl.validate', 'meshctl.pipeline')\n"
        "print(sorted(m for m in sys.modules if any(m == p or m.startswith(p + '.') for p in policy)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[]"
