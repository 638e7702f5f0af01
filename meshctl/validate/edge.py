"""Checks of the edge: gateway listeners and hosts, JWT providers, and external endpoints.

The certificate, key, CA and JWKS files named in the policy live on the machine that runs the
gateway (never in git); `validate` reads them where it runs, so a path that does not exist
there, or a JWKS that is not a key set, is reported before a sidecar would refuse it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator

from meshctl.model import Gateway, Located, MeshPolicy
from meshctl.validate.diagnostics import Diagnostic, at
from meshctl.yamlio import Document, Path

MAX_JWKS_BYTES = 1024 * 1024


def check_edge(policy: MeshPolicy) -> Iterator[Diagnostic]:
    for loc in policy.gateways:
        yield from _check_gateway(loc)
    yield from _check_endpoints(policy)


def _check_gateway(loc: Located[Gateway]) -> Iterator[Diagnostic]:
    spec, doc = loc.obj.spec, loc.doc
    if (spec.port is None) == (spec.listeners is None):
        yield at(doc, ("spec",), "MESH060",
                 "a Gateway needs exactly one of 'port' (one plain-HTTP listener for any host) "
                 "or 'listeners'")
    names: set[str] = set()
    claimed: dict[tuple[int, str], str] = {}
    protocols: dict[int, tuple[str, str]] = {}
    for i, listener in enumerate(spec.listeners or ()):
        where: Path = ("spec", "listeners", i)
        if listener.name in names:
            yield at(doc, (*where, "name"), "MESH010", f"duplicate listener name '{listener.name}'")
        names.add(listener.name)
        first = protocols.setdefault(listener.port, (listener.protocol, listener.name))
        if first[0] != listener.protocol:
            yield at(doc, (*where, "port"), "MESH020",
                     f"port {listener.port} is {first[0]} on listener '{first[1]}': one port has "
                     "one protocol")
        for j, host in enumerate(listener.hosts or ("*",)):
            key = (listener.port, host)
            if key in claimed:
                what = "any host" if host == "*" else f"host '{host}'"
                path: Path = (*where, "hosts", j) if listener.hosts else (*where, "name")
                yield at(doc, path, "MESH061",
                         f"{what} on port {listener.port} is already claimed by listener "
                         f"'{claimed[key]}': a request could go to either")
            else:
                claimed[key] = listener.name
        if listener.protocol == "https" and listener.tls is None:
            yield at(doc, where, "MESH065",
                     f"https listener '{listener.name}' needs tls.certificates (certFile, keyFile)")
        elif listener.protocol == "http" and listener.tls is not None:
            yield at(doc, (*where, "tls"), "MESH065",
                     f"listener '{listener.name}' is http: tls applies to https listeners only")
        for k, cert in enumerate(listener.tls.certificates if listener.tls else ()):
            base = (*where, "tls", "certificates", k)
            yield from _readable(doc, (*base, "certFile"), cert.cert_file, "certificate")
            yield from _readable(doc, (*base, "keyFile"), cert.key_file, "key")
    for i, rule in enumerate(spec.rules):
        for j, name in enumerate(rule.listeners or ()):
            if spec.listeners is not None and name not in names:
                known = ", ".join(sorted(names))
                yield at(doc, ("spec", "rules", i, "listeners", j), "MESH066",
                         f"unknown listener '{name}' (known: {known})")
            elif spec.listeners is None:
                yield at(doc, ("spec", "rules", i, "listeners", j), "MESH066",
                         f"listener '{name}': this Gateway has no 'listeners' (only 'port')")
    yield from _check_authentication(loc)


def _check_authentication(loc: Located[Gateway]) -> Iterator[Diagnostic]:
    spec, doc = loc.obj.spec, loc.doc
    providers = spec.authentication.jwt if spec.authentication else []
    issuers: dict[str, int] = defaultdict(int)
    for i, provider in enumerate(providers):
        where: Path = ("spec", "authentication", "jwt", i)
        issuers[provider.issuer] += 1
        if issuers[provider.issuer] == 2:
            yield at(doc, (*where, "issuer"), "MESH010",
                     f"issuer '{provider.issuer}' is listed twice; one provider per issuer")
        if (provider.jwks_file is None) == (provider.jwks_uri is None):
            yield at(doc, where, "MESH067",
                     f"JWT provider '{provider.issuer}' needs exactly one of jwksFile or jwksUri")
        if provider.jwks_file is not None:
            yield from _jwks(doc, (*where, "jwksFile"), provider.jwks_file)
    needs_token = [i for i, rule in enumerate(spec.rules) if rule.require_token]
    by_claim = spec.rate_limit is not None and spec.rate_limit.key is not None \
        and spec.rate_limit.key.claim is not None
    if not providers:
        for i in needs_token:
            yield at(doc, ("spec", "rules", i, "requireToken"), "MESH068",
                     "requireToken needs spec.authentication.jwt: no token could ever be verified")
        if by_claim:
            yield at(doc, ("spec", "rateLimit", "key", "claim"), "MESH068",
                     "a rate limit by claim needs spec.authentication.jwt")


def _readable(doc: Document, path: Path, file: str, what: str) -> Iterator[Diagnostic]:
    if not os.path.isfile(file):
        yield at(doc, path, "MESH062", f"{what} file {file} does not exist (on this machine)")
    elif not os.access(file, os.R_OK):
        yield at(doc, path, "MESH062", f"{what} file {file} is not readable")


def _jwks(doc: Document, path: Path, file: str) -> Iterator[Diagnostic]:
    problems = list(_readable(doc, path, file, "JWKS"))
    if problems:
        yield from problems
        return
    try:
        with open(file, "rb") as handle:
            data = json.loads(handle.read(MAX_JWKS_BYTES + 1)[:MAX_JWKS_BYTES])
    except (OSError, ValueError) as exc:
        yield at(doc, path, "MESH063", f"JWKS file {file} is not valid JSON: {exc}")
        return
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        yield at(doc, path, "MESH063",
                 f'JWKS file {file} is not a key set: expected {{"keys": [{{...}}, ...]}}')


def _check_endpoints(policy: MeshPolicy) -> Iterator[Diagnostic]:
    for loc in policy.services:
        for i, version in enumerate(loc.obj.spec.versions):
            where: Path = ("spec", "versions", i)
            for j, endpoint in enumerate(version.endpoints or ()):
                if ":" not in endpoint:
                    port = 443 if version.tls is not None else 80
                    yield at(loc.doc, (*where, "endpoints", j), "MESH064",
                             f"endpoint '{endpoint}' has no port; write '{endpoint}:{port}'")
            if version.tls is not None:
                if version.run is not None:
                    yield at(loc.doc, (*where, "tls"), "MESH065",
                             f"version '{version.name}' runs with a sidecar, which mesh mTLS "
                             "already protects: tls is for static (external) endpoints")
                if version.tls.ca_file is not None:
                    yield from _readable(loc.doc, (*where, "tls", "caFile"), version.tls.ca_file,
                                         "CA")
