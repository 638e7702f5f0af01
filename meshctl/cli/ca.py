"""`meshctl ca`: show, create, rotate the mesh CA and issue workload certificates.

The CA lives in `<state>/ca/` (state: --state, $MESHCTL_STATE, or `.meshctl/` beside the
policy directory). Nothing here ever prints a private key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography import x509

from meshctl.cli.common import PolicyDirOption, StateOption, TextOrJson, err, out, policy_dir
from meshctl.errors import UsageError
from meshctl.identity import (
    MeshCA,
    find_cert_dirs,
    fingerprint,
    reissue_all,
    spiffe_id,
    write_sidecar_certs,
    write_trust_bundle,
)
from meshctl.runtime.state import resolve_state_dir
from meshctl.spiffe import SpiffeIdError, check_trust_domain, parse

# Sidecars look at their certificate files about once a second.
SIDECAR_POLL_SECONDS = 2.0

TrustDomainOption = Annotated[
    str | None,
    typer.Option(
        "--trust-domain",
        help="Trust domain (default: the policy's Mesh, else cluster.local).",
        show_default=False,
    ),
]
FormatOption = Annotated[TextOrJson, typer.Option("--format", help="Output format.")]


def _ca_dir(state: Path | None, directory: Path | None) -> Path:
    return resolve_state_dir(policy_dir(None, directory), state) / "ca"


def _policy_trust_domain(directory: Path | None) -> str:
    """The Mesh's trustDomain in the policy directory, else the compiler's default."""
    from meshctl.compile.identity import DEFAULT_TRUST_DOMAIN
    from meshctl.pipeline import load_policy
    from meshctl.sources.worktree import read_worktree

    pdir = policy_dir(None, directory)
    if not pdir.is_dir():
        return DEFAULT_TRUST_DOMAIN
    mesh = load_policy(read_worktree(pdir)).policy.mesh
    if mesh is not None and mesh.spec.trust_domain:
        return mesh.spec.trust_domain
    return DEFAULT_TRUST_DOMAIN


def _checked_domain(value: str) -> str:
    try:
        return check_trust_domain(value)
    except SpiffeIdError as exc:
        raise UsageError(str(exc)) from None


def _ttl(value: str, option: str) -> dt.timedelta:
    from meshctl.model.values import parse_duration_ms

    try:
        ms = parse_duration_ms(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if ms <= 0:
        raise UsageError(f"{option} must be longer than 0")
    return dt.timedelta(milliseconds=ms)


def _describe(ca: MeshCA) -> dict[str, Any]:
    def root(cert: Any) -> dict[str, Any]:
        return {
            "subject": cert.subject.rfc4514_string(),
            "fingerprint_sha256": fingerprint(cert),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
        }

    return {
        "directory": str(ca.ca_dir),
        "trust_domain": ca.trust_domain,
        "current": root(ca.cert),
        "bundle": [root(c) for c in ca.bundle],
        "rotation_in_progress": len(ca.bundle) > 1,
        "workloads": _workloads(ca),
    }


def _workloads(ca: MeshCA) -> list[dict[str, Any]]:
    """The sidecar certificates under the state directory, soonest expiry first."""
    rows = []
    for ident, directory in find_cert_dirs(ca.ca_dir.parent):
        pem = (directory / "cert.pem").read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
        rows.append({
            "identity": ident,
            "directory": str(directory),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "trusted": ca.verifies(pem),
            "issued_by_current_root": ca.issued_by_current(pem),
        })
    return sorted(rows, key=lambda r: (r["not_after"], r["identity"]))


def _print(ca: MeshCA, fmt: str) -> None:
    info = _describe(ca)
    if fmt == "json":
        out(json.dumps(info, indent=1, sort_keys=True) + "\n")
        return
    lines = [
        f"directory:     {info['directory']}",
        f"trust domain:  {info['trust_domain']}",
        f"current root:  {info['current']['fingerprint_sha256']}",
        f"  valid until: {info['current']['not_after']}",
        f"trusted roots: {len(info['bundle'])}"
        + ("  (rotation in progress: finish with `meshctl ca rotate --finish`)"
           if info["rotation_in_progress"] else ""),
    ]
    lines += [f"  {r['fingerprint_sha256']}  until {r['not_after']}" for r in info["bundle"]]
    lines.append(f"workload certificates: {len(info['workloads'])}")
    for w in info["workloads"]:
        note = "" if w["trusted"] else "  NOT TRUSTED (re-issue it)"
        if w["trusted"] and not w["issued_by_current_root"]:
            note = "  (previous root)"
        where = os.path.relpath(w["directory"], Path(info["directory"]).parent)
        lines.append(f"  {w['identity']}  until {w['not_after']}  {where}{note}")
    out("\n".join(lines) + "\n")


def init(
    directory: PolicyDirOption = None,
    state: StateOption = None,
    trust_domain: TrustDomainOption = None,
    fmt: FormatOption = "text",
) -> None:
    """Create the mesh CA if there is none yet, and show it."""
    ca_dir = _ca_dir(state, directory)
    existed = MeshCA.exists(ca_dir)
    domain = _checked_domain(trust_domain or _policy_trust_domain(directory))
    ca = MeshCA.load_or_create(ca_dir, domain)
    err(f"{'using the existing' if existed else 'created a new'} mesh CA in {ca_dir}")
    _print(ca, fmt)


def show(
    directory: PolicyDirOption = None,
    state: StateOption = None,
    fmt: FormatOption = "text",
) -> None:
    """Show the mesh CA: trust domain, current root, trusted roots (never the key)."""
    _print(MeshCA.load(_ca_dir(state, directory)), fmt)


def rotate(
    directory: PolicyDirOption = None,
    state: StateOption = None,
    trust_domain: TrustDomainOption = None,
    finish: Annotated[
        bool, typer.Option("--finish", help="End a rotation: stop trusting the previous root.")
    ] = False,
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime of re-issued certificates.")] = "24h",
    fmt: FormatOption = "text",
) -> None:
    """Rotate the mesh CA without interrupting traffic.

    Step 1 (`rotate`): a new root signs from now on; every sidecar trusts old and new roots and
    gets a new certificate. Step 2 (`rotate --finish`): the previous root is no longer trusted.
    """
    lifetime = _ttl(ttl, "--ttl")
    ca_dir = _ca_dir(state, directory)
    ca = MeshCA.load(ca_dir)
    targets = [t for t in find_cert_dirs(ca_dir.parent) if t[1] != ca_dir]
    if finish:
        if trust_domain:
            raise UsageError("--trust-domain belongs to the first step of a rotation, not --finish")
        # Re-issue before dropping the old root, so no sidecar keeps a cert nobody trusts.
        stale = [(i, d) for i, d in targets
                 if not ca.issued_by_current((d / "cert.pem").read_bytes())]
        reissue_all(ca, stale, lifetime)
        ca = ca.retire_previous()
        for _, d in targets:
            write_trust_bundle(ca, d)
        err(f"rotation finished: {len(targets)} sidecar(s) now trust only the current root")
    else:
        domain = _checked_domain(trust_domain) if trust_domain else None
        ca = ca.rotate(trust_domain=domain)
        if domain and targets:
            targets = [(_rename(ident, domain), d) for ident, d in targets]
        reissue_all(ca, targets, lifetime, settle=SIDECAR_POLL_SECONDS if targets else 0.0)
        err(f"new root in use; re-issued {len(targets)} sidecar certificate(s); "
            "run `meshctl ca rotate --finish` once every workload runs on the new certificates")
    _print(ca, fmt)


def _rename(ident: str, domain: str) -> str:
    old = parse(ident)
    return spiffe_id(domain, old.kind, old.name)


def issue(
    identity: Annotated[str, typer.Argument(
        help="SPIFFE ID, or a service name, or gateway/<name>.", show_default=False)],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for cert.pem, key.pem, ca.pem.")
    ],
    directory: PolicyDirOption = None,
    state: StateOption = None,
    ttl: Annotated[str, typer.Option("--ttl", help="Certificate lifetime (e.g. 1h, 24h).")] = "24h",
) -> None:
    """Issue a workload certificate (for a sidecar run by hand, or a test client)."""
    lifetime = _ttl(ttl, "--ttl")
    policy = policy_dir(None, directory).resolve()
    if out_dir.resolve().is_relative_to(policy):
        raise UsageError(
            f"refusing to write a private key into the policy directory {policy}: "
            "keys never go into mesh.d/ (choose another --out)"
        )
    ca = MeshCA.load(_ca_dir(state, directory))
    if identity.startswith("spiffe://"):
        ident = identity
    else:
        kind, _, name = identity.rpartition("/")
        try:
            ident = spiffe_id(ca.trust_domain, kind or "service", name)
        except SpiffeIdError as exc:
            raise UsageError(str(exc)) from None
    files = write_sidecar_certs(ca, ident, out_dir, lifetime)
    err(f"issued {ident}, valid for {ttl}")
    out(json.dumps(files.model_dump(), indent=1, sort_keys=True) + "\n")


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The mesh certificate authority (kept in the state directory).",
                        no_args_is_help=True)
    group.command("init")(init)
    group.command("show")(show)
    group.command("rotate")(rotate)
    group.command("issue")(issue)
    app.add_typer(group, name="ca")
