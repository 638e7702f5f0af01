"""Host names at a gateway: `*.suffix` matching, and which listener takes a request.

Pure functions. A gateway's listeners are bound to ports (the runtime may move them:
`RuntimeBindings.listeners.gateway`, or `listeners.outbound` for the first port, which is how
the single-port form has always been moved); several listeners may share a port and are told
apart by host: the SNI on https, the Host header on http. An exact host wins over a wildcard,
a longer wildcard over a shorter one, and a listener without hosts takes what is left.
"""

from __future__ import annotations

from collections import defaultdict

from meshctl.contract import CompiledGateway, GatewayListener, RuntimeBindings


def host_of(authority: str) -> str:
    """'Shop.Example.com:8443' -> 'shop.example.com'; '[::1]:80' -> '::1'."""
    text = authority.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


def host_matches(pattern: str, host: str) -> bool:
    """Exact, or `*.suffix`: one or more labels before the suffix (never the suffix itself)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _score(hosts: tuple[str, ...], host: str) -> int:
    """How specifically `hosts` claim `host`: 0 not at all, 1 any host, more is more specific."""
    if not hosts:
        return 1
    best = 0
    for pattern in hosts:
        if pattern == host:
            return 10_000
        if host_matches(pattern, host):
            best = max(best, 1 + len(pattern))
    return best


def pick_listener(listeners: tuple[GatewayListener, ...], host: str) -> GatewayListener | None:
    best: GatewayListener | None = None
    best_score = 0
    for listener in listeners:
        score = _score(listener.hosts, host)
        if score > best_score:
            best, best_score = listener, score
    return best


def serves(listener: GatewayListener, host: str) -> bool:
    return _score(listener.hosts, host) > 0


def bound_port(gateway: CompiledGateway, bindings: RuntimeBindings, listener: GatewayListener) -> int:
    moved = bindings.listeners.gateway.get(listener.name)
    if moved is not None:
        return moved
    if bindings.listeners.outbound is not None and listener.port == gateway.port:
        return bindings.listeners.outbound
    return listener.port


def listener_ports(
    gateway: CompiledGateway, bindings: RuntimeBindings
) -> dict[int, tuple[GatewayListener, ...]]:
    """Bound port -> the listeners on it. A config without listeners is the single-port form."""
    listeners = gateway.listeners or (GatewayListener(name="http", port=gateway.port),)
    ports: dict[int, list[GatewayListener]] = defaultdict(list)
    for listener in listeners:
        ports[bound_port(gateway, bindings, listener)].append(listener)
    return {port: tuple(found) for port, found in sorted(ports.items())}
