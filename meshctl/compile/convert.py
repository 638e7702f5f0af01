"""Policy model pieces -> contract pieces: the small, pure conversions of the compiler."""

from __future__ import annotations

from meshctl.contract import (
    AbortFault,
    CompiledCors,
    CompiledDirectResponse,
    CompiledFault,
    CompiledHeaderOps,
    CompiledRedirect,
    CompiledRegexRewrite,
    CompiledRewrite,
    CompiledSticky,
    CompiledStickyCookie,
    CompiledStringMatch,
    DelayFault,
    RequestMatch,
)
from meshctl.model.edge import Cors
from meshctl.model.route import Abort, DirectResponse, Fault, HeaderOps, Match, Redirect, Rewrite, Sticky


def string_match(m: object) -> CompiledStringMatch:
    return CompiledStringMatch(**{k: v for k, v in m.model_dump().items() if v is not None})  # type: ignore[attr-defined]


def request_match(m: Match) -> RequestMatch:
    return RequestMatch(
        path=string_match(m.path) if m.path else None,
        methods=tuple(m.method or ()),
        headers={k.lower(): string_match(v) for k, v in sorted((m.headers or {}).items())},
        query={k: string_match(v) for k, v in sorted((m.query or {}).items())},
        claims={k: string_match(v) for k, v in sorted((m.claims or {}).items())},
    )


def cors(policy: Cors | None) -> CompiledCors | None:
    if policy is None:
        return None
    return CompiledCors(
        allow_origins=tuple(string_match(o) for o in policy.allow_origins),
        allow_methods=tuple(policy.allow_methods or ()),
        allow_headers=tuple(h.lower() for h in policy.allow_headers or ()),
        expose_headers=tuple(h.lower() for h in policy.expose_headers or ()),
        allow_credentials=policy.allow_credentials,
        max_age_s=policy.max_age // 1000 if policy.max_age is not None else None,
    )


def source_versions(caller: str, sources: list[str] | None) -> tuple[str, ...] | None:
    """For `match.from`: () when every sidecar of `caller` is named, the versions named
    (`caller/v2`), or None when `caller` is not named at all."""
    if sources is None or caller in sources:
        return ()
    versions = tuple(sorted({s.split("/", 1)[1] for s in sources if s.startswith(caller + "/")}))
    return versions or None


def matches_for(caller: str, matches: list[Match] | None) -> tuple[RequestMatch, ...] | None:
    """The match entries that can hold for `caller`; None when none can (the rule is dropped).

    An entry naming versions of `caller` keeps them as `source_versions`: the sidecar knows its
    own version, the compiled config (one per service) does not.
    """
    if not matches:
        return ()
    kept = []
    for m in matches:
        versions = source_versions(caller, m.from_)
        if versions is not None:
            kept.append(request_match(m).model_copy(update={"source_versions": versions}))
    return tuple(kept) if kept else None


def rewrite(rewrite: Rewrite | None) -> CompiledRewrite | None:
    if rewrite is None:
        return None
    regex = rewrite.regex
    return CompiledRewrite(
        path_prefix=rewrite.path_prefix,
        full_path=rewrite.full_path,
        regex=CompiledRegexRewrite(pattern=regex.pattern, substitution=regex.substitution) if regex else None,
        host=rewrite.host,
    )


def header_ops(ops: HeaderOps | None) -> CompiledHeaderOps:
    if ops is None:
        return CompiledHeaderOps()
    return CompiledHeaderOps(
        set={k.lower(): v for k, v in sorted((ops.set or {}).items())},
        add={k.lower(): v for k, v in sorted((ops.add or {}).items())},
        remove=tuple(h.lower() for h in ops.remove or ()),
    )


def redirect(redirect: Redirect | None) -> CompiledRedirect | None:
    if redirect is None:
        return None
    return CompiledRedirect(path=redirect.path, host=redirect.host, scheme=redirect.scheme,
                            port=redirect.port, status=redirect.status)


def respond(respond: DirectResponse | None) -> CompiledDirectResponse | None:
    if respond is None:
        return None
    headers = {k.lower(): v for k, v in sorted((respond.headers or {}).items())}
    return CompiledDirectResponse(status=respond.status, body=respond.body, headers=headers)


def fault(fault: Fault | None) -> CompiledFault | None:
    if fault is None or (fault.delay is None and fault.abort is None):
        return None
    return CompiledFault(
        delay=DelayFault(fixed_ms=fault.delay.fixed, percent=fault.delay.percent) if fault.delay else None,
        abort=abort(fault.abort) if fault.abort else None,
    )


# gRPC status -> HTTP status for an HTTP caller of a grpcStatus-only abort (Envoy's mapping).
GRPC_TO_HTTP = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}
GRPC_CODES = {name: code for code, name in enumerate(GRPC_TO_HTTP)}


def abort(abort: Abort) -> AbortFault:
    grpc = abort.grpc_status
    status = abort.status if abort.status is not None else GRPC_TO_HTTP[grpc or "UNKNOWN"]
    return AbortFault(status=status, percent=abort.percent,
                      grpc_status=GRPC_CODES[grpc] if grpc is not None else None)


def sticky(sticky: Sticky | None) -> CompiledSticky | None:
    if sticky is None:
        return None
    cookie = CompiledStickyCookie(name=sticky.cookie.name, ttl_ms=sticky.cookie.ttl) if sticky.cookie else None
    return CompiledSticky(header=sticky.header.lower() if sticky.header else None, cookie=cookie)
