"""The compiler: deterministic output, golden configs, no field dropped, invalid input refused."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from meshctl import contract
from meshctl.compile.compiler import Compilation
from meshctl.pipeline import build
from meshctl.sources import PolicyFile
from meshctl.sources.worktree import read_worktree
from meshctl.yamlio import load_documents
from tests.conftest import REPO, run_meshctl

CASES = REPO / "tests" / "cases" / "compile"
UPDATE = os.environ.get("MESHCTL_UPDATE_GOLDEN") == "1"


def compile_dir(policy_dir: Path) -> Compilation:
    result = build(read_worktree(policy_dir))
    assert result.compiled is not None, result.diagnostics
    return result.compiled


def reshuffled(files: list[PolicyFile], seed: int) -> list[PolicyFile]:
    """The same documents, split into files with other names, in another order."""
    docs: list[str] = []
    for file in files:
        loaded = load_documents(file.path, file.text)
        assert not isinstance(loaded, Exception) and isinstance(loaded, list)
        for chunk in file.text.split("\n---\n"):
            if chunk.strip() and "apiVersion" in chunk:
                docs.append(chunk.strip() + "\n")
    rng = random.Random(seed)
    rng.shuffle(docs)
    out: list[PolicyFile] = []
    for i in range(0, len(docs), 2):
        name = f"zz-{rng.randrange(10**6)}/{seed}-{i}.yml"
        out.append(PolicyFile(name, "---\n".join(docs[i:i + 2])))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("case", ["full", "minimal"])
def test_file_order_and_names_do_not_change_the_output(case: str) -> None:
    files = read_worktree(CASES / case / "mesh.d")
    reference = build(files).compiled
    assert reference is not None
    for seed in (1, 2, 3):
        other = build(reshuffled(files, seed)).compiled
        assert other is not None
        assert other.rendered() == reference.rendered()
        assert other.revision == reference.revision


@pytest.mark.parametrize("case", ["full", "minimal"])
def test_golden_output(case: str, tmp_path: Path) -> None:
    """`meshctl compile` writes exactly the committed golden files (byte for byte)."""
    work = tmp_path / "repo"
    shutil.copytree(CASES / case / "mesh.d", work / "mesh.d")
    proc = run_meshctl("compile", "--out", "out", cwd=work)
    assert proc.returncode == 0, proc.stderr
    golden = CASES / case / "golden"
    produced = {p.relative_to(work / "out").as_posix(): p.read_text() for p in (work / "out").rglob("*.json")}
    if UPDATE:
        shutil.rmtree(golden, ignore_errors=True)
        for rel, text in produced.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_text(text)
    expected = {p.relative_to(golden).as_posix(): p.read_text() for p in golden.rglob("*.json")}
    assert produced == expected, "compiled output changed: review, then MESHCTL_UPDATE_GOLDEN=1 pytest"


def test_compiled_configs_validate_against_the_committed_sidecar_schema() -> None:
    import jsonschema

    schema = json.loads((REPO / "schemas" / "sidecar-config.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for cfg in compile_dir(CASES / "full" / "mesh.d").configs.values():
        errors = list(validator.iter_errors(json.loads(contract.dump_json(cfg))))
        assert errors == []


# Fields that do not belong in a sidecar config: the runtime or `apply` consumes them, or the
# compiler applies them (match.from decides which callers' configs keep a rule).
NOT_FOR_SIDECARS = {
    ("Mesh", "metadata", "labels"), ("Mesh", "metadata", "annotations"), ("Mesh", "spec", "rollout"),
    ("Service", "metadata", "labels"), ("Service", "spec", "port"),
    ("Service", "spec", "versions", "replicas"), ("Service", "spec", "versions", "labels"),
    ("Service", "spec", "versions", "run"), ("Service", "spec", "versions", "env"),
    ("Service", "spec", "versions", "endpoints"),
    ("Route", "spec", "rules", "match", "from"),
}


def _leaves(value: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            out.append((path + ("<key>",), key))
            out.extend(_leaves(item, path + (key,)))
        return out
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item, path)]
    return [(path, value)]


def _compiled_scalars(compiled: Compilation) -> tuple[set[Any], str]:
    values: set[Any] = set()
    text = ""
    for cfg in compiled.configs.values():
        data = json.loads(contract.dump_json(cfg))
        for _, leaf in _leaves(data, ()):
            values.add(leaf)
        text += json.dumps(data)
    return values, text.lower()


def test_every_policy_field_reaches_a_sidecar_config() -> None:
    """Walk every field set in the `full` fixture; each value must appear in some compiled config."""
    policy_dir = CASES / "full" / "mesh.d"
    compiled = compile_dir(policy_dir)
    scalars, text = _compiled_scalars(compiled)
    policy = compiled.policy
    documents = [*policy.meshes, *policy.services, *policy.routes, *policy.access_policies, *policy.gateways]
    checked = 0
    for loc in documents:
        kind = loc.obj.kind  # type: ignore[attr-defined]
        data = loc.obj.model_dump(by_alias=True, exclude_unset=True, mode="python")  # type: ignore[attr-defined]
        for path, value in _leaves(data, (kind,)):
            if path[-1] == "<key>" or path[1] in ("apiVersion", "kind"):
                continue
            if any(path[: len(skip)] == skip for skip in NOT_FOR_SIDECARS):
                continue
            if path[1:3] == ("metadata", "name") and kind in ("Mesh", "Service", "Gateway"):
                pass  # names appear as identities/keys; checked like any string below
            checked += 1
            if isinstance(value, bool):
                assert value in scalars, path
            elif isinstance(value, (int, float)):
                assert value in scalars or float(value) in scalars, f"{path} = {value} not compiled"
            else:
                assert str(value).lower() in text, f"{path} = {value!r} not compiled"
    assert checked > 100


def test_match_from_keeps_a_rule_only_for_the_named_callers() -> None:
    compiled = compile_dir(CASES / "full" / "mesh.d")
    seen_by_productpage = [r.name for r in compiled.configs["productpage"].destinations["reviews"].rules]
    seen_by_gateway = [r.name for r in compiled.configs["gateway/public"].destinations["reviews"].rules]
    assert seen_by_productpage[0] == "beta-testers"
    # The rule's second match entry has no `from`, so other callers keep the rule with that entry only.
    gateway_rule = compiled.configs["gateway/public"].destinations["reviews"].rules[0]
    assert seen_by_gateway[0] == "beta-testers" and len(gateway_rule.matches) == 1
    assert gateway_rule.matches[0].path == contract.CompiledStringMatch(regex="/r/[0-9]+")


def test_access_pruning_refuses_callers_at_the_source() -> None:
    compiled = compile_dir(CASES / "full" / "mesh.d")
    # productpage admits only the gateway: services are refused at the source.
    assert "productpage" in compiled.configs["reviews"].denied
    assert "productpage" in compiled.configs["gateway/public"].destinations
    # ratings admits only reviews; reviews' split also sends to ratings, so callers of reviews keep it.
    assert "ratings" in compiled.configs["reviews"].destinations
    assert "ratings" in compiled.configs["productpage"].destinations
    # ratings-open admits only reviews, but ratings may call reviews (`from: ["*"]` on /healthz),
    # whose split sends to ratings: the table keeps it (the destination still enforces access).
    assert compiled.configs["ratings"].denied == ("productpage",)
    assert "ratings" in compiled.configs["ratings"].destinations


def test_unknown_schema_version_is_refused_with_a_clear_message() -> None:
    compiled = compile_dir(CASES / "minimal" / "mesh.d")
    raw = json.loads(contract.dump_json(compiled.configs["hello"]))
    raw["schema_version"] = "meshctl.dev/sidecar/v9"
    with pytest.raises(contract.ContractError, match="unknown schema_version 'meshctl.dev/sidecar/v9'"):
        contract.parse_sidecar_config(json.dumps(raw))
    with pytest.raises(contract.ContractError, match="not valid JSON"):
        contract.parse_sidecar_config(contract.dump_json(compiled.configs["hello"])[:40])
    assert contract.parse_sidecar_config(contract.dump_json(compiled.configs["hello"])) == compiled.configs["hello"]


def test_invalid_policy_is_not_compiled_and_reports_like_validate(tmp_path: Path) -> None:
    shutil.copytree(REPO / "tests" / "cases" / "validate" / "many-problems-one-file", tmp_path / "mesh.d")
    compiled = run_meshctl("compile", "--out", "out", cwd=tmp_path)
    validated = run_meshctl("validate", cwd=tmp_path)
    assert compiled.returncode == 1 and validated.returncode == 1
    assert not (tmp_path / "out").exists()
    problem_lines = [line for line in validated.stdout.splitlines() if "MESH" in line]
    assert len(problem_lines) == 4
    for line in problem_lines:
        assert line in compiled.stderr


def test_compile_replaces_output_whole_and_refuses_foreign_directories(tmp_path: Path) -> None:
    shutil.copytree(CASES / "minimal" / "mesh.d", tmp_path / "mesh.d")
    assert run_meshctl("compile", "--out", "out", cwd=tmp_path).returncode == 0
    (tmp_path / "out" / "stale.json").write_text("{}")
    assert run_meshctl("compile", "--out", "out", cwd=tmp_path).returncode == 0
    assert not (tmp_path / "out" / "stale.json").exists()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["schema_version"] == contract.SCHEMA_VERSION
    assert manifest["revision"].endswith("-dirty") and manifest["source_digest"].startswith("sha256:")
    assert set(manifest["sidecars"]) == {"hello"}
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = run_meshctl("compile", "--out", "docs", cwd=tmp_path)
    assert refused.returncode == 2 and (foreign / "notes.txt").read_text() == "mine"


def test_unwritable_output_is_an_environment_error_not_a_traceback(tmp_path: Path) -> None:
    shutil.copytree(CASES / "minimal" / "mesh.d", tmp_path / "mesh.d")
    (tmp_path / "plain-file").write_text("not a directory")
    for command in (("compile", "--out", "plain-file/out"), ("render", "kubernetes", "--out", "plain-file/k8s")):
        proc = run_meshctl(*command, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "plain-file" in proc.stderr
