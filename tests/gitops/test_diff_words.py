"""Diff wording on real compiler output: the example shop, edited the way reviewers see it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from meshctl.contract import SidecarConfig
from meshctl.diff import REPORTERS, diff_meshes
from meshctl.pipeline import build
from meshctl.sources.worktree import read_worktree

ROOT = Path(__file__).resolve().parents[2]


def compile_dir(policy: Path) -> dict[str, SidecarConfig]:
    result = build(read_worktree(policy), "r")
    assert result.compiled is not None, result.diagnostics
    return result.compiled.configs


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    target = tmp_path / "mesh.d"
    shutil.copytree(ROOT / "mesh.d", target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_reviewer_words_for_common_edits(shop: Path) -> None:
    before = compile_dir(shop)
    edit(
        shop / "routes" / "ratings.yaml",
        "      timeout: 1s\n",
        "      timeout: 1s\n      fault: {abort: {status: 503, percent: 5}}\n",
    )
    edit(
        shop / "routes" / "reviews.yaml",
        "        - {version: v2, weight: 100}\n",
        "        - {version: v2, weight: 100}\n      mirror: {version: v1, percent: 10}\n",
    )
    edit(shop / "services" / "catalog.yaml", "loadBalancer: least-request", "loadBalancer: random")
    edit(shop / "services" / "catalog.yaml", "requestsPerSecond: 500, burst: 1000", "requestsPerSecond: 50, burst: 100")
    edit(
        shop / "access" / "shop.yaml",
        "    - from: [reviews]\n      methods: [GET]\n",
        "    - from: [reviews, frontend]\n      methods: [GET]\n",
    )
    edit(shop / "mesh.yaml", "mtls: strict", "mtls: permissive")
    lines = REPORTERS["text"]("a", "b", diff_meshes(before, compile_dir(shop))).splitlines()
    assert "~ 6 sidecars (catalog, frontend, gateway/public and 3 more): mTLS strict -> permissive" in lines
    assert "~ catalog: rate limit 500/s burst 1000 -> 50/s burst 100" in lines
    assert "~ catalog: traffic policy loadBalancer policy least-request -> random" in lines
    assert '~ ratings: rule "default" fault none -> abort 503 for 5%' in lines
    assert '~ reviews: rule "beta-testers" mirror none -> v1 at 10%' in lines
    [access] = [line for line in lines if line.startswith('~ ratings: access policy "ratings"')]
    assert access.startswith('~ ratings: access policy "ratings" rules from reviews GET on /ratings/*')
    assert "-> from reviews, frontend GET on /ratings/*" in access
    assert "~ ratings: may now be called by frontend" in lines
