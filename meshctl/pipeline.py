"""The one-way flow: policy files -> documents -> diagnostics + typed policy -> compiled configs.

`load_policy` never raises for a user mistake: every problem of every file becomes a Diagnostic.
`build` compiles only a policy without errors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meshctl.model import Located, MeshPolicy
from meshctl.sources import PolicyFile
from meshctl.validate.diagnostics import Diagnostic, at_position
from meshctl.validate.schema_check import check_document
from meshctl.validate.semantic import check_policy
from meshctl.yamlio import Position, YamlError, load_documents

if TYPE_CHECKING:
    from meshctl.compile.compiler import CompiledMesh

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
class BuildResult:
    load: LoadResult
    compiled: CompiledMesh | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.compiled is not None


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


def build(files: list[PolicyFile], revision: str | None = None) -> BuildResult:
    """Validate, then compile. `revision` None means "the content digest, marked -dirty"."""
    load = load_policy(files)
    result = BuildResult(load=load, diagnostics=load.diagnostics)
    if load.ok:
        from meshctl.compile.compiler import compile_policy  # only when there is something to compile

        rev = revision or f"{load.source_digest.removeprefix('sha256:')[:12]}-dirty"
        result.compiled = compile_policy(load.policy, revision=rev, source_digest=load.source_digest)
    return result
