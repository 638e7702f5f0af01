"""Istio's TCP metrics for `protocol: tcp` services, on the inbound relay.

mitmproxy's `reverse:tcp://` listener reports each connection (`tcp_start`, `tcp_message`,
`tcp_end`/`tcp_error`); the label tuple is built once per connection. Messages are counted and
dropped from the flow, which would otherwise keep every byte for the connection's life.
Outbound CONNECT tunnels are relayed without message hooks (raw, for speed): not counted yet.
"""

from __future__ import annotations

from mitmproxy import tcp

from proxy_addon.runtime import SidecarRuntime
from proxy_addon.tls import peer_identity

KEY = "meshctl-tcp"


class TcpMetrics:
    def __init__(self, rt: SidecarRuntime, roles: dict[str, str]) -> None:
        self.rt = rt
        self.roles = roles

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        if self.roles.get(flow.client_conn.proxy_mode.full_spec) != "inbound":
            return
        lab = self.rt.labels
        identity = peer_identity(flow.client_conn)
        mtls = identity is not None
        labels = ("destination", *lab.peer(None, identity),
                  *(lab.inbound_mtls if mtls else lab.inbound_plain),
                  "tcp", "-", "mutual_tls" if mtls else "none")
        m = self.rt.metrics
        children = (m.tcp_received.labels(*labels), m.tcp_sent.labels(*labels),
                    m.tcp_closed.labels(*labels))
        m.tcp_opened.labels(*labels).inc()
        flow.metadata[KEY] = children

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        children = flow.metadata.get(KEY)
        if children is None or not flow.messages:
            return
        for message in flow.messages:
            (children[0] if message.from_client else children[1]).inc(len(message.content))
        flow.messages.clear()

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        children = flow.metadata.pop(KEY, None)
        if children is not None:
            children[2].inc()

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self.tcp_end(flow)
