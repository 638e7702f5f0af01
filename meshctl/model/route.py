"""Kind Route: how clients reach one service, as ordered rules."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from meshctl.model.documents import Envelope
from meshctl.model.edge import Cors
from meshctl.model.values import (
    Duration,
    ExactlyOne,
    HeaderName,
    HeaderValue,
    Name,
    NoTimeout,
    PathMatch,
    Percent,
    Spec,
    StringMatch,
)

SafePath = Annotated[str, Field(pattern=r"^/[^\x00-\x20\x7f]*$", max_length=4096)]
SafeHost = Annotated[str, Field(pattern=r"^[^\x00-\x20\x7f/]+$", max_length=253)]

HTTP_METHOD = Annotated[str, Field(pattern=r"^[A-Z]+$")]
_NAME = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
# A calling service, one version of it (<service>/<version>, as Istio's sourceLabels), or
# gateway/<name>.
SOURCE_PATTERN = rf"^(gateway/{_NAME}|{_NAME}(/{_NAME})?)$"
RETRY_ON_PATTERN = (
    r"^(5xx|gateway-error|connect-failure|reset|refused-stream|retriable-4xx|[1-5][0-9][0-9]"
    # gRPC status conditions, as Istio's retryOn
    r"|cancelled|deadline-exceeded|internal|resource-exhausted|unavailable)$"
)


class Match(Spec):
    """All fields present must hold."""

    path: PathMatch | None = None
    method: list[HTTP_METHOD] | None = None
    headers: dict[HeaderName, StringMatch] | None = None
    query: dict[str, StringMatch] | None = None
    from_: list[Annotated[str, Field(pattern=SOURCE_PATTERN)]] | None = Field(default=None, alias="from")
    # Claims of the end-user JWT a gateway verified (dotted names reach nested claims).
    claims: dict[Annotated[str, Field(min_length=1)], StringMatch] | None = None


class HeaderOps(Spec):
    set: dict[HeaderName, HeaderValue] | None = None
    add: dict[HeaderName, HeaderValue] | None = None
    remove: list[HeaderName] | None = None


class HeaderRules(Spec):
    request: HeaderOps | None = None
    response: HeaderOps | None = None


class Backend(Spec):
    """A version of the route's service, or {service: other[, version]}.

    `headers` apply only to requests sent to this backend (Gateway API backendRef filters),
    after the rule's own header operations.
    """

    service: Name | None = None
    version: Name | None = None
    weight: Annotated[int, Field(ge=0, le=100)] | None = None
    headers: HeaderRules | None = None


class StickyCookie(Spec):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    ttl: Duration


class Sticky(ExactlyOne):
    header: HeaderName | None = None
    cookie: StickyCookie | None = None


class Backoff(Spec):
    base: Duration = 25
    max: Duration = 250


class Retries(Spec):
    attempts: Annotated[int, Field(ge=0, le=10)] = 2
    per_try_timeout: Duration | None = None
    on: list[Annotated[str, Field(pattern=RETRY_ON_PATTERN)]] | None = None
    backoff: Backoff | None = None
    non_idempotent: bool = False


class Delay(Spec):
    fixed: Duration
    percent: Percent = 100


GRPC_STATUS = Literal[
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
]


class Abort(Spec):
    """`status` (HTTP) or `grpcStatus` (a gRPC status name, as Istio's), or both.

    gRPC callers get `grpcStatus` (else the gRPC equivalent of `status`); HTTP callers get
    `status` (else the HTTP equivalent of `grpcStatus`, as Envoy maps them)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["status"]}, {"required": ["grpcStatus"]}]})

    status: Annotated[int, Field(ge=200, le=599)] | None = None
    grpc_status: GRPC_STATUS | None = None
    percent: Percent = 100

    @model_validator(mode="after")
    def _status_given(self) -> Self:
        if self.status is None and self.grpc_status is None:
            raise ValueError("set status, grpcStatus or both")
        return self


class Fault(Spec):
    delay: Delay | None = None
    abort: Abort | None = None


class Mirror(Spec):
    service: Name | None = None
    version: Name | None = None
    percent: Percent = 100


class RegexRewrite(Spec):
    """Istio's uriRegexRewrite: every match of `pattern` in the path becomes `substitution`
    (`\\1` refers to a group)."""

    pattern: Annotated[str, Field(min_length=1)]
    substitution: Annotated[str, Field(pattern=r"^[^\x00-\x20\x7f]*$", max_length=4096)]


class Rewrite(Spec):
    """At most one of pathPrefix | fullPath | regex (checked as MESH029), and/or host.

    `pathPrefix` replaces the matched prefix (the whole path after an exact match);
    `fullPath` replaces the whole path (Gateway API ReplaceFullPath).
    """

    path_prefix: SafePath | None = None
    full_path: SafePath | None = None
    regex: RegexRewrite | None = None
    host: SafeHost | None = None


class Redirect(Spec):
    path: SafePath | None = None
    host: SafeHost | None = None
    scheme: Literal["http", "https"] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    status: Literal[301, 302, 303, 307, 308] = 301


class DirectResponse(Spec):
    status: Annotated[int, Field(ge=200, le=599)]
    body: Annotated[str, Field(max_length=1 << 20)] = ""
    headers: dict[HeaderName, HeaderValue] | None = None


class RouteRule(Spec):
    name: Name
    match: list[Match] | None = None
    backends: Annotated[list[Backend], Field(min_length=1)] | None = None
    redirect: Redirect | None = None
    respond: DirectResponse | None = None
    sticky: Sticky | None = None
    timeout: Duration | NoTimeout | None = None
    retries: Retries | None = None
    fault: Fault | None = None
    mirror: Mirror | None = None
    rewrite: Rewrite | None = None
    headers: HeaderRules | None = None
    cors: Cors | None = None  # applied where the request enters through a gateway


class RouteSpec(Spec):
    service: Name
    rules: Annotated[list[RouteRule], Field(min_length=1)]


class Route(Envelope):
    kind: Literal["Route"]
    spec: RouteSpec
