"""The whole policy repository as typed documents, each tied to where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from meshctl.model.access import AccessPolicy
from meshctl.model.gateway import Gateway
from meshctl.model.mesh import Mesh
from meshctl.model.route import Route
from meshctl.model.service import Service
from meshctl.yamlio import Document

T = TypeVar("T")


@dataclass(frozen=True)
class Located[T]:
    obj: T
    doc: Document


@dataclass
class MeshPolicy:
    """Every valid document, in a stable order (kind, name, file): never file-order dependent."""

    meshes: list[Located[Mesh]] = field(default_factory=list)
    services: list[Located[Service]] = field(default_factory=list)
    routes: list[Located[Route]] = field(default_factory=list)
    access_policies: list[Located[AccessPolicy]] = field(default_factory=list)
    gateways: list[Located[Gateway]] = field(default_factory=list)

    @property
    def mesh(self) -> Mesh | None:
        return self.meshes[0].obj if self.meshes else None

    def service(self, name: str) -> Service | None:
        for located in self.services:
            if located.obj.metadata.name == name:
                return located.obj
        return None

    def sort(self) -> None:
        for items in (self.meshes, self.services, self.routes, self.access_policies, self.gateways):
            items.sort(key=lambda loc: (loc.obj.metadata.name, loc.doc.file, loc.doc.index))  # type: ignore[attr-defined]
