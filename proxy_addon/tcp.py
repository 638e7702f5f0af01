"""`protocol: tcp` services: bytes pass through, no L7 policy (SPEC).

Outbound, an app reaches a TCP service through the outbound listener with
`CONNECT <service>:<port>`; the tunnel goes to one endpoint of the service (round-robin over
available endpoints) and carries raw TCP. Inbound, a TCP service's listener is a
`reverse:tcp://` relay to the app (see server.listener_roles). No telemetry per request.
"""

from __future__ import annotations

import time

from mitmproxy import connection, http
from mitmproxy.proxy import layer, layers

from proxy_addon.responses import flag_response
from proxy_addon.state import PolicyState


class TcpTunnels:
    """Placed before mitmproxy's NextLayer addon, which leaves a layer set here alone."""

    def __init__(self, state: PolicyState) -> None:
        self.state = state
        self._tunnels: set[str] = set()  # client connection ids whose CONNECT went to tcp

    def open(self, flow: http.HTTPFlow) -> bool:
        """Route a CONNECT to a tcp destination; False when it is not one."""
        snap = self.state.snapshot
        assert snap is not None
        dest = snap.destination(flow.request.host.lower())
        if dest is None or dest.protocol != "tcp":
            return False
        state = self.state.dest_state(dest.service)
        ep = state.endpoints.pick(
            snap.endpoints_for(dest.service, None), dest.traffic_policy.load_balancer,
            time.monotonic(), set(),
        )
        if ep is None:
            flow.response = flag_response(503, ["UH"])
            return True
        host, _, port = ep.address.rpartition(":")
        flow.request.host, flow.request.port = host, int(port)
        self._tunnels.add(flow.client_conn.id)
        return True

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        context = nextlayer.context
        if nextlayer.layer is None and context.client.id in self._tunnels and context.server.address:
            nextlayer.layer = layers.TCPLayer(context, ignore=True)

    def client_disconnected(self, client: connection.Client) -> None:
        self._tunnels.discard(client.id)
