"""Host names at a gateway: `*.suffix` matching, and which listener takes a request.

Pure functions (the sidecar and `explain` share them). A gateway's listeners are bound to
ports (the runtime may move them: `RuntimeBindings.listeners.gateway`, or `listeners.outbound`
for the first port, which is how the single-port form has always been moved); several
listeners may share a port and are told apart by host: the SNI on https, the Host header on
http. An exact host wins over a wildcard, a longer wildcard over a shorter one, and a
listener without hosts takes what is left.
"""

from __future__ import annotations

from collections import defaultdict

from meshctl.contract import CompiledGateway, CompiledGatewayRule, GatewayListener, RuntimeBindings


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


def rule_applies(rule: CompiledGatewayRule, listener: str | None, host: str | None) -> bool:
    """A gateway rule takes part when it names no listener or this one, and no host or this one.
    `listener`/`host` None (explain without them): only that condition is not checked."""
    if rule.listeners and listener is not None and listener not in rule.listeners:
        return False
    if rule.hosts and host is not None and not any(host_matches(p, host) for p in rule.hosts):
        return False
    return True


def choose_listener(
    listeners: tuple[GatewayListener, ...], host: str, sni: str | None, tls: bool
) -> GatewayListener | None:
    """The listener of one port that takes a request; None: 404 NR.

    Over TLS the SNI picks among the https listeners, and the Host must be one that listener
    serves too (a certificate for one name is no licence to reach another); in plain HTTP the
    Host picks among the http listeners.
    """
    if tls:
        https = tuple(lst for lst in listeners if lst.protocol == "https")
        chosen = pick_listener(https, sni.lower().rstrip(".") if sni else host)
        return chosen if chosen is not None and serves(chosen, host) else None
    return pick_listener(tuple(lst for lst in listeners if lst.protocol == "http"), host)
