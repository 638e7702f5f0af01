"""SPIFFE IDs of mesh workloads, and the DNS name each certificate carries beside its ID.

A sidecar's identity is `spiffe://<trustDomain>/service/<name>` (gateways:
`/gateway/<name>`). Every certificate also carries the DNS SAN `<name>.<kind>.<trustDomain>`,
a one-to-one spelling of the same identity: a client checks the server's identity with the
standard library's hostname verification (`server_hostname=dns_name(expected_id)`), so the
check happens inside the TLS handshake and no connection is used before it passed.

Standard library only, outside the identity package (which holds the CA): the sidecar imports
this module and nothing else of meshctl but the contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["service", "gateway"]
KINDS: tuple[Kind, ...] = ("service", "gateway")

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class SpiffeIdError(ValueError):
    """A string that is not a mesh SPIFFE ID, or a name that cannot be part of one."""


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    kind: Kind
    name: str

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/{self.kind}/{self.name}"

    @property
    def dns_name(self) -> str:
        return f"{self.name}.{self.kind}.{self.trust_domain}"


def check_trust_domain(trust_domain: str) -> str:
    if len(trust_domain) > 253 or not _DOMAIN.match(trust_domain):
        raise SpiffeIdError(
            f"trust domain {trust_domain!r} must be a lower-case DNS name (e.g. shop.local)"
        )
    return trust_domain


def spiffe_id(trust_domain: str, kind: str, name: str) -> str:
    """`spiffe://<trust_domain>/<kind>/<name>`, with every part checked."""
    return str(make(trust_domain, kind, name))


def make(trust_domain: str, kind: str, name: str) -> SpiffeId:
    check_trust_domain(trust_domain)
    if kind not in KINDS:
        raise SpiffeIdError(f"kind {kind!r} must be one of {', '.join(KINDS)}")
    if not _LABEL.match(name):
        raise SpiffeIdError(f"name {name!r} must be a DNS-1123 label")
    return SpiffeId(trust_domain, kind, name)  # type: ignore[arg-type]


def parse(value: str) -> SpiffeId:
    """Parse a mesh SPIFFE ID; raise SpiffeIdError naming what is wrong."""
    prefix = "spiffe://"
    if not value.startswith(prefix):
        raise SpiffeIdError(f"{value!r} is not a SPIFFE ID (must start with spiffe://)")
    domain, _, path = value[len(prefix) :].partition("/")
    parts = path.split("/")
    if len(parts) != 2:
        raise SpiffeIdError(f"{value!r} must look like spiffe://<trustDomain>/service/<name>")
    return make(domain, parts[0], parts[1])


def dns_name(value: str) -> str:
    """The DNS SAN that mirrors a SPIFFE ID: `<name>.<kind>.<trustDomain>`."""
    return parse(value).dns_name
