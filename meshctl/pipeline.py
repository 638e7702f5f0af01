"""The one way from a policy source to a compilation or diagnostics, as values.

policy files -> documents -> diagnostics + typed policy -> a `Compilation` (the sidecar configs;
`compile.output.compiled_mesh()` turns it into the `CompiledMesh` that downstream reads).
`load_policy` never raises for a user mistake: every problem of every file becomes a Diagnostic.
`build` compiles only a policy without errors. `build_source(directory, rev)` reads the work tree
(or a git revision) first; every command that compiles policy goes through it. What to do with
diagnostics is the caller's: `BuildOutcome.compiled_or_raise` raises `PolicyInvalid` carrying them
(the CLI's error boundary reports them), and warnings stay values in `BuildOutcome.warnings`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meshctl.errors import PolicyInvalid
from meshctl.model import Located, MeshPolicy
from meshctl.revisions import read_policy
from meshctl.sources import PolicyFile
from meshctl.validate.diagnostics import Diagnostic, at_position
from meshctl.validate.schema_check import check_document
from meshctl.validate.semantic import check_policy
from meshctl.yamlio import Position, YamlError, load_documents

if TYPE_CHECKING:
    from meshctl.compile.compiler import Compilation

_POLICY_LISTS = {
    "Mesh": "meshes",
    "Service": "services",
    "Route": "routes",
    "AccessPolicy": "access_policies",
    "Gateway": "gateways",
}


@dataclass
class LoadResult:
    policy: MeshPolicy
    diagnostics: list[Diagnostic]
    source_digest: str

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


@dataclass
class BuildOutcome:
    """How a build went: a compilation, or (compiled None) the diagnostics that stopped it;
    warnings either way. Not a compiled mesh itself."""

    compiled: Compilation | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.compiled is not None

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity != "error"]

    def compiled_or_raise(self, consequence: str, *, where: str = "") -> Compilation:
        """The compilation; PolicyInvalid (with every diagnostic) when the policy has errors."""
        if self.compiled is None:
            raise PolicyInvalid(consequence, self.diagnostics, where=where)
        return self.compiled


def load_policy(files: list[PolicyFile]) -> LoadResult:
    policy = MeshPolicy()
    diagnostics: list[Diagnostic] = []
    canonical: list[str] = []
    count = 0
    for file in sorted(files):
        if file.error:
            diagnostics.append(at_position(file.path, Position(1, 1), "MESH001", file.error))
            continue
        loaded = load_documents(file.path, file.text)
        if isinstance(loaded, YamlError):
            diagnostics.append(at_position(loaded.file, loaded.position, "MESH001", loaded.message))
            continue
        for doc in loaded:
            if doc.data is None:  # an empty document (e.g. a trailing '---') is no document
                continue
            count += 1
            problems, obj = check_document(doc)
            diagnostics.extend(problems)
            if obj is not None:
                getattr(policy, _POLICY_LISTS[doc.data["kind"]]).append(Located(obj, doc))
                canonical.append(json.dumps(doc.data, sort_keys=True, separators=(",", ":")))
    if count == 0 and not diagnostics:
        diagnostics.append(
            at_position(files[0].path if files else ".", Position(1, 1), "MESH027",
                        "no policy documents found", severity="warning")
        )
    policy.sort()
    diagnostics.extend(check_policy(policy))
    digest = hashlib.sha256("\n".join(sorted(canonical)).encode()).hexdigest()
    return LoadResult(policy, sorted(set(diagnostics)), f"sha256:{digest}")


def build(files: list[PolicyFile], revision: str | None = None) -> BuildOutcome:
    """Validate, then compile. `revision` None means "the content digest, marked -dirty"."""
    load = load_policy(files)
    result = BuildOutcome(diagnostics=load.diagnostics)
    if load.ok:
        from meshctl.compile.compiler import compile_policy  # only when there is something to compile

        rev = revision or f"{load.source_digest.removeprefix('sha256:')[:12]}-dirty"
        result.compiled = compile_policy(load.policy, revision=rev, source_digest=load.source_digest)
    return result


def build_source(directory: Path, rev: str | None = None) -> BuildOutcome:
    """Validate and compile the work tree of `directory`, or its git revision `rev`.

    A policy problem is a diagnostic in the result; only the environment raises (UsageError: no
    such directory, no git, an unknown revision or one without the policy directory).
    """
    files, revision = read_policy(directory, rev)
    return build(files, revision)
