"""Typed model of the policy repository: one pydantic class per kind (the input side)."""

from __future__ import annotations

from meshctl.model.access import AccessPolicy
from meshctl.model.documents import API_VERSION
from meshctl.model.gateway import Gateway
from meshctl.model.mesh import Mesh
from meshctl.model.policy import Located, MeshPolicy
from meshctl.model.route import Route
from meshctl.model.service import Service

KINDS: dict[str, type[Mesh | Service | Route | AccessPolicy | Gateway]] = {
    "Mesh": Mesh,
    "Service": Service,
    "Route": Route,
    "AccessPolicy": AccessPolicy,
    "Gateway": Gateway,
}

__all__ = [
    "API_VERSION",
    "KINDS",
    "AccessPolicy",
    "Gateway",
    "Located",
    "Mesh",
    "MeshPolicy",
    "Route",
    "Service",
]
