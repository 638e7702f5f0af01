"""Kind Gateway: traffic from outside the mesh, routed to a service."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from meshctl.model.documents import Envelope
from meshctl.model.route import DirectResponse, HeaderRules, Match, Redirect
from meshctl.model.service import Port
from meshctl.model.values import Name, Spec


class GatewayRule(Spec):
    name: Name
    match: list[Match] | None = None
    service: Name | None = None
    redirect: Redirect | None = None
    respond: DirectResponse | None = None
    headers: HeaderRules | None = None


class GatewaySpec(Spec):
    port: Port
    rules: Annotated[list[GatewayRule], Field(min_length=1)]


class Gateway(Envelope):
    kind: Literal["Gateway"]
    spec: GatewaySpec
