"""The one builder of hand-made policy directories for tests.

`policy_root(root, {"mesh.yaml": TEXT, ...})` writes a `mesh.d/` below `root` from file texts
(the policy a test exercises stays readable YAML in the test), with the example shop's apps
beside it when the mesh is run (`apps=True`), and makes it a git repository with one commit
when the test needs revisions (`commit="message"`). `compiled(policy, out)` is `meshctl compile`
of it, as CI would run it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from tests.support.git import commit_all, init_repo

REPO = Path(__file__).resolve().parents[2]
POLICY_DIR = "mesh.d"


def add_shop_apps(root: Path) -> None:
    """The example shop's apps (`python -m shop.catalog`, ...), which policies `run`."""
    shutil.copytree(REPO / "shop", root / "shop", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)


def write_policy(root: Path, files: Mapping[str, str]) -> Path:
    """Write each file (path relative to mesh.d/ -> text); returns the policy directory."""
    policy = root / POLICY_DIR
    policy.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = policy / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return policy


def policy_root(
    root: Path,
    files: Mapping[str, str],
    *,
    apps: bool = False,
    commit: str | None = None,
    ignore_state: bool = False,
) -> Path:
    """`root` holding mesh.d/ (and the shop apps, a git commit, a .gitignore of the state
    directory, as asked); returns `root`."""
    write_policy(root, files)
    if apps:
        add_shop_apps(root)
    if ignore_state:
        (root / ".gitignore").write_text(".meshctl/\n")
    if commit is not None:
        init_repo(root)
        commit_all(root, commit)
    return root


def compiled(policy: Path, out: Path) -> Path:
    """`meshctl compile POLICY --out OUT`, which must succeed; returns `out`."""
    from tests.conftest import run_meshctl

    proc = run_meshctl("compile", str(policy), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out
