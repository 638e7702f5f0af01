"""Mutations of the real example policy (mesh.d/) for fuzzing: hypothesis strategies.

A mutation edits one file's text: insert hostile text at a position, replace a line, delete a
line, or duplicate a line. `check_policy_text(files)` runs what every command runs on a policy
(load, validate, compile, policy tests) and lets only a bug escape as an exception.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from meshctl.pipeline import build
from meshctl.policytest.cases import parse_test_file
from meshctl.policytest.runner import run_cases
from meshctl.sources import PolicyFile

REPO = Path(__file__).resolve().parents[2]
MESH = REPO / "mesh.d"
FILES = {str(p.relative_to(MESH)): p.read_text() for p in sorted(MESH.rglob("*.yaml"))}

HOSTILE = [
    "&a [*a]", "*undefined", "<<: {port: 1}", "<<: *a", "!!python/object:os.system", "\t", "\x00",
    "\x1b[2J", "\u202e", "9" * 5000, "1e999", "-.inf", ".nan", "[" * 100, "{" * 100, "? [a]\n: b",
    "'", '"', "---", "...", "%YAML 1.1", "~", "[Service]", "{a: 1}", "a{99999999999}", "(a+)+$",
    "http://[::1", "0x" + "f" * 40, "99999999999999999999999h", "1e23", "-1", "true", "null",
]
scalar_text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30))


@st.composite
def mutated_policy(draw: st.DrawFn) -> dict[str, str]:
    files = dict(FILES)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(files)))
        lines = files[name].split("\n")
        index = draw(st.integers(0, max(len(lines) - 1, 0)))
        op = draw(st.sampled_from(["insert", "replace-value", "delete", "duplicate", "replace-line"]))
        line = lines[index]
        if op == "insert":
            col = draw(st.integers(0, len(line)))
            lines[index] = line[:col] + draw(scalar_text) + line[col:]
        elif op == "replace-value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[index] = f"{key}: {draw(scalar_text)}"
        elif op == "delete":
            del lines[index]
        elif op == "duplicate":
            lines.insert(index, line)
        else:
            lines[index] = draw(scalar_text)
        files[name] = "\n".join(lines)
    return files


def check_policy_text(files: dict[str, str]) -> None:
    """Everything `validate`, `compile`, `explain` and `test` do with a policy, in process."""
    policy = [PolicyFile(name, text) for name, text in files.items() if not name.startswith("tests/")]
    result = build(policy)
    cases = []
    for name, text in files.items():
        if name.startswith("tests/"):
            parsed, _ = parse_test_file(name, text)
            cases.extend(parsed)
    if result.compiled is not None:
        run_cases(result.compiled.configs, cases)
