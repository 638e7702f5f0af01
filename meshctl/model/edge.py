"""Edge policy pieces of a Gateway: listeners, end-user JWT authentication, CORS, client limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from meshctl.model.values import ConnectionSettings, Duration, ExactlyOne, HeaderName, Name, Spec, StringMatch

# An exact host name or a `*.suffix` wildcard (lower case, as DNS compares them).
HOST_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Host = Annotated[str, Field(pattern=HOST_PATTERN, max_length=253)]
# Files on the machine that runs the gateway, never in git: absolute, so they mean one thing.
FilePath = Annotated[str, Field(pattern=r"^/", max_length=4096)]
HTTP_METHOD = Annotated[str, Field(pattern=r"^[A-Z]+$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class Certificate(Spec):
    cert_file: FilePath
    key_file: FilePath


class ListenerTls(Spec):
    """Certificates chosen by SNI (the first whose names cover it); the first is the default."""

    certificates: Annotated[list[Certificate], Field(min_length=1)]


class Listener(Spec):
    name: Name
    port: Port
    protocol: Literal["http", "https"] = "http"
    hosts: Annotated[list[Host], Field(min_length=1)] | None = None  # absent: any host
    tls: ListenerTls | None = None
    connections: ConnectionSettings | None = None


class JwtProvider(Spec):
    """As Istio's RequestAuthentication jwtRules: one trusted issuer and where its keys are."""

    issuer: Annotated[str, Field(min_length=1)]
    audiences: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None = None
    jwks_file: FilePath | None = None
    jwks_uri: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = None
    refresh: Duration = 300_000
    subject_header: HeaderName | None = None
    forward_original_token: bool = False


class Authentication(Spec):
    jwt: Annotated[list[JwtProvider], Field(min_length=1)]


class Cors(Spec):
    allow_origins: Annotated[list[StringMatch], Field(min_length=1)]
    allow_methods: list[HTTP_METHOD] | None = None
    allow_headers: list[HeaderName] | None = None
    expose_headers: list[HeaderName] | None = None
    allow_credentials: bool = False
    max_age: Duration | None = None


class ClientKey(ExactlyOne):
    client_address: Literal[True] | None = None
    header: HeaderName | None = None
    claim: Annotated[str, Field(min_length=1)] | None = None


class ClientRateLimit(Spec):
    requests_per_second: Annotated[float, Field(gt=0, le=1_000_000)]
    burst: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    key: ClientKey | None = None  # absent: the client address
