"""Input files and directories -> source objects with positions; malformed input -> diagnostics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from meshctl.importers.report import ImportReport
from meshctl.sources.worktree import display_path
from meshctl.validate.diagnostics import at, at_position
from meshctl.yamlio import Document, Path, Position, YamlError, load_documents

# Kinds each importer reads; other Kubernetes kinds are listed as ignored.
ISTIO_KINDS = {
    "networking.istio.io": {"VirtualService", "DestinationRule", "Gateway", "ServiceEntry"},
    "security.istio.io": {"PeerAuthentication", "AuthorizationPolicy"},
}
GATEWAY_API_KINDS = {"gateway.networking.k8s.io": {"HTTPRoute", "GRPCRoute", "Gateway"}}
KUBE_KINDS = {"": {"Service", "ServiceAccount"}, "apps": {"Deployment"}}


@dataclass
class Src:
    """One Kubernetes-style object of the input."""

    doc: Document
    group: str  # "networking.istio.io", "" for core
    kind: str
    name: str
    namespace: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def where(self) -> str:
        return f"{self.doc.file}:{self.doc.start.line}"

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.doc.data.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.doc.data.get("metadata")
        return meta if isinstance(meta, dict) else {}


class Malformed(Exception):
    """A source object the importer cannot read: reported at `path`, the object skipped."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def input_files(paths: list[FsPath]) -> Iterator[FsPath]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            yield path


def read_objects(paths: list[FsPath], wanted: dict[str, set[str]], report: ImportReport) -> list[Src]:
    """Every object of a wanted kind, in file order. Missing files and unreadable YAML are errors."""
    objects: list[Src] = []
    for file in input_files(paths):
        shown = display_path(file)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            report.errors.append(at_position(shown, Position(1, 1), "IMP001", "no such file or directory"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            report.errors.append(at_position(shown, Position(1, 1), "IMP001", f"cannot read: {exc}"))
            continue
        loaded = load_documents(shown, text)
        if isinstance(loaded, YamlError):
            report.errors.append(at_position(loaded.file, loaded.position, "IMP001", loaded.message))
            continue
        for doc in loaded:
            src = _object(doc, wanted, report)
            if src is not None:
                objects.append(src)
    return objects


def _object(doc: Document, wanted: dict[str, set[str]], report: ImportReport) -> Src | None:
    data = doc.data
    if not isinstance(data, dict):
        report.errors.append(at(doc, (), "IMP002", "not a Kubernetes object (a mapping with apiVersion and kind)"))
        return None
    api, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api, str) or not isinstance(kind, str):
        missing = "apiVersion" if not isinstance(api, str) else "kind"
        report.errors.append(at(doc, (missing,) if missing in data else (), "IMP002",
                                f"not a Kubernetes object: {missing} missing or not a string"))
        return None
    group = api.rpartition("/")[0] if "/" in api else ""
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if kind == "List" and group == "":
        report.errors.append(at(doc, ("kind",), "IMP002", "a List: give its items as separate documents"))
        return None
    known = group in wanted and kind in wanted[group]
    if not known and group in KUBE_KINDS and kind in KUBE_KINDS[group]:
        known = True
    if not known:
        label = f"{kind} {name}" if isinstance(name, str) else kind
        if group in wanted or group in ISTIO_KINDS or group in GATEWAY_API_KINDS:
            report.drop(doc, label, ("kind",), f"{api} {kind} is not imported")
        else:
            report.drop(doc, label, ("kind",), f"{api} {kind} is not mesh policy", kind="ignored")
        return None
    if not isinstance(name, str) or not name:
        report.errors.append(at(doc, ("metadata",), "IMP002", f"{kind} without metadata.name"))
        return None
    namespace = meta.get("namespace", "default") if isinstance(meta, dict) else "default"
    if not isinstance(data.get("spec", {}), dict):
        report.errors.append(at(doc, ("spec",), "IMP003", f"{kind} {name}: spec must be a mapping"))
        return None
    return Src(doc, group, kind, name, str(namespace))


# --- typed reads of source fields (a wrong type is a positioned error) -------------------------


def mapping(value: Any, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(path, "must be a mapping")
    return value


def sequence(value: Any, path: Path) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(path, "must be a list")
    return value


def string(value: Any, path: Path) -> str:
    if not isinstance(value, str) or not value:
        raise Malformed(path, "must be a non-empty string")
    return value


def integer(value: Any, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(path, "must be an integer")
    return value


def number(value: Any, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed(path, "must be a number")
    return float(value)
