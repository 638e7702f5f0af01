"""The hostile-YAML corpus through validate, compile, diff, explain and test: each case a
positioned diagnostic, within 5 s of CPU and 200 MB, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshctl.yamlio import YamlError, load_documents
from tests.reliability.hostile_yaml import CASES, SERVICE, VALID
from tests.reliability.limits import CPU_S, MEMORY_BYTES, run_bounded
from tests.support.git import commit_all, init_repo


def _repo(tmp_path: Path) -> Path:
    mesh = tmp_path / "mesh.d"
    (mesh / "tests").mkdir(parents=True)
    (mesh / "shop.yaml").write_text(SERVICE % "shop")
    commit_all(init_repo(tmp_path), "base")
    return tmp_path


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_command_survives_the_case_within_budget(name: str, tmp_path: Path) -> None:
    path, make = CASES[name]
    repo = _repo(tmp_path)
    target = repo / "mesh.d" / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(make(), encoding="utf-8", errors="surrogatepass")
    outcome = run_bounded(["-m", "tests.reliability.run_commands", "mesh.d", str(tmp_path / "out")], repo)
    assert "Traceback" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.returncode == 0, f"killed or crashed ({outcome.returncode}): {outcome.stderr[-2000:]}"
    report = json.loads(outcome.stdout.splitlines()[-1])
    assert all(code in (0, 1, 2) for code in report["codes"].values()), report
    assert report["cpu_s"] < CPU_S and report["max_rss_bytes"] < MEMORY_BYTES, report
    if name in VALID:  # RE2 accepts these, and matches them in linear time
        assert report["codes"]["validate"] == 0, report
    elif not path.startswith("tests/"):
        assert report["codes"]["validate"] == 1, report
        assert f"{path}:" in outcome.stdout + outcome.stderr  # named, with its position
    else:
        assert report["codes"]["test"] in (1, 2), report
        assert f"{path}" in outcome.stdout + outcome.stderr


def test_limits_are_positioned_where_they_are_reached() -> None:
    got = load_documents("bomb.yaml", CASES["billion-laughs"][1]())
    assert isinstance(got, YamlError) and got.position.line == 1 and "nodes" in got.message
    got = load_documents("a.yaml", "x: 1\ny: &a [*a]\n")
    assert isinstance(got, YamlError) and got.position.line == 2 and "cycle" in got.message
    got = load_documents("d.yaml", "---\n" * 1_500)
    assert isinstance(got, YamlError) and got.position.line in (1_001, 1_002) and "documents" in got.message
    got = load_documents("i.yaml", "a:\n  b: " + "1" * 4_400 + "\n")
    assert isinstance(got, YamlError) and got.position == (2, 6) and "integer" in got.message


def test_own_key_after_a_merge_wins_without_a_duplicate_error() -> None:
    docs = load_documents("m.yaml", "spec:\n  <<: {port: 1, a: 2}\n  port: 3\n")
    assert not isinstance(docs, YamlError)
    assert docs[0].data == {"spec": {"port": 3, "a": 2}}
    assert docs[0].duplicate_keys == []
    assert docs[0].position(("spec", "port")) == (3, 9)
