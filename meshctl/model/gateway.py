"""Kind Gateway: traffic from outside the mesh, routed to a service."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from meshctl.contract import GatewayWorkers
from meshctl.model.documents import Envelope
from meshctl.model.edge import Authentication, ClientRateLimit, Cors, Host, Listener
from meshctl.model.route import DirectResponse, HeaderRules, Match, Redirect
from meshctl.model.service import Port
from meshctl.model.values import ConnectionSettings, Name, Spec


class GatewayRule(Spec):
    name: Name
    match: list[Match] | None = None
    service: Name | None = None
    redirect: Redirect | None = None
    respond: DirectResponse | None = None
    headers: HeaderRules | None = None
    # Only requests for these hosts (Host header, SNI on https) on these listeners.
    hosts: Annotated[list[Host], Field(min_length=1)] | None = None
    listeners: Annotated[list[Name], Field(min_length=1)] | None = None
    require_token: bool = False
    cors: Cors | None = None


class GatewaySpec(Spec):
    """`port` (one plain-HTTP listener for any host) or `listeners`, not both."""

    port: Port | None = None
    listeners: Annotated[list[Listener], Field(min_length=1)] | None = None
    authentication: Authentication | None = None
    cors: Cors | None = None
    rate_limit: ClientRateLimit | None = None
    connections: ConnectionSettings | None = None  # every listener's, unless its own says
    rules: Annotated[list[GatewayRule], Field(min_length=1)]
    # Processes serving the gateway's ports together (SO_REUSEPORT) on the local runtime;
    # "auto": one per core of the machine that runs it. Kubernetes: see docs/gateway.md.
    workers: GatewayWorkers = 1

    @property
    def primary_port(self) -> int:
        """The port of the old single-listener form, else the first listener's."""
        if self.port is not None:
            return self.port
        return self.listeners[0].port if self.listeners else 0


class Gateway(Envelope):
    kind: Literal["Gateway"]
    spec: GatewaySpec
