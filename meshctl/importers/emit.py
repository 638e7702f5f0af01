"""The imported policy as mesh.d documents: built up by the converters, checked, then written
one file per service (Service, Route, AccessPolicy), one per gateway, and `mesh.yaml`.

Every document starts with a comment naming the source objects (kind, name, file:line) it came
from, and every rule with the source rule it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from meshctl.fsio import write_atomic
from meshctl.importers.kube import Kube
from meshctl.importers.report import ImportReport
from meshctl.model.documents import API_VERSION
from meshctl.sources import PolicyFile
from meshctl.validate.diagnostics import at_position
from meshctl.yamlio import Position


@dataclass
class OutDoc:
    kind: str
    name: str
    spec: dict[str, Any]
    origins: list[str] = field(default_factory=list)  # "VirtualService reviews (vs.yaml:1)"
    rule_origins: dict[str, str] = field(default_factory=dict)  # rule name -> origin


@dataclass
class Output:
    mesh: OutDoc | None = None
    services: dict[str, OutDoc] = field(default_factory=dict)
    routes: dict[str, OutDoc] = field(default_factory=dict)
    access: dict[str, list[OutDoc]] = field(default_factory=dict)  # by service
    gateways: dict[str, OutDoc] = field(default_factory=dict)

    def service(self, name: str, kube: Kube, origin: str | None = None) -> OutDoc:
        """The Service document for `name`, made from the Kubernetes objects on first use."""
        doc = self.services.get(name)
        if doc is None:
            doc = OutDoc("Service", name, {})
            for w in kube.versions(name):
                _add_version(doc, w.version, w.replicas, w.labels, kube.port(name) or w.port)
                doc.origins.append(f"{w.src.label} ({w.src.where})")
            ks = kube.services.get(name)
            if ks is not None:
                doc.origins.append(f"{ks.src.label} ({ks.src.where})")
                if ks.grpc:
                    doc.spec["protocol"] = "grpc"
            self.services[name] = doc
        if origin and origin not in doc.origins:
            doc.origins.append(origin)
        return doc

    def version(self, service: str, version: str, kube: Kube, labels: dict[str, str] | None = None) -> None:
        doc = self.service(service, kube)
        _add_version(doc, version, 1, labels or {}, kube.port(service))


def _add_version(doc: OutDoc, version: str, replicas: int, labels: dict[str, str], port: int | None) -> None:
    versions = doc.spec.setdefault("versions", [])
    if any(v["name"] == version for v in versions):
        return
    entry: dict[str, Any] = {"name": version}
    if replicas != 1:
        entry["replicas"] = max(0, min(replicas, 100))
    entry["endpoints"] = [f"{doc.name}-{version}:{port or 80}"]
    versions.append(entry)


def _document(doc: OutDoc) -> str:
    body = {"apiVersion": API_VERSION, "kind": doc.kind, "metadata": {"name": doc.name}, "spec": doc.spec}
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    header = "".join(f"# imported from {o}\n" for o in doc.origins) or "# imported\n"
    return header + _rule_comments(text, doc.rule_origins)


def _rule_comments(text: str, origins: dict[str, str]) -> str:
    if not origins:
        return text
    out: list[str] = []
    in_rules = False
    for line in text.splitlines(keepends=True):
        if re.match(r"^\s*rules:\s*$", line):
            in_rules = True
        m = re.match(r"^(\s*)- name: (\S+)\s*$", line)
        if in_rules and m and m.group(2) in origins:
            out.append(f"{m.group(1)}# from {origins.pop(m.group(2))}\n")
        out.append(line)
    return "".join(out)


def render(output: Output) -> dict[str, str]:
    """File name -> text, sorted: `<service>.yaml`, `gateway-<name>.yaml`, `mesh.yaml`."""
    files: dict[str, str] = {}
    for name, svc in sorted(output.services.items()):
        docs = [svc]
        if name in output.routes:
            docs.append(output.routes[name])
        docs += output.access.get(name, [])
        files[f"{name}.yaml"] = "---\n".join(_document(d) for d in docs)
    for name, gw in sorted(output.gateways.items()):
        files[f"gateway-{name}.yaml"] = _document(gw)
    if output.mesh is not None:
        files["mesh.yaml"] = _document(output.mesh)
    return files


def check(files: dict[str, str], report: ImportReport) -> None:
    """The written policy must validate: a problem here is a converter bug, said plainly."""
    from meshctl.pipeline import load_policy  # the validator: only when there is output

    result = load_policy([PolicyFile(name, text) for name, text in files.items()])
    for d in result.diagnostics:
        if d.severity == "error":
            report.errors.append(at_position(
                d.file, Position(d.line, d.column), "IMP900",
                f"the imported policy does not validate ({d.rule}: {d.message}); please report this"))


def write(files: dict[str, str], out_dir: FsPath, report: ImportReport) -> None:
    for name, text in files.items():
        write_atomic(out_dir / name, text)
        report.written.append(str(out_dir / name))
