"""Kind AccessPolicy: who may call a service."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from meshctl.model.documents import Envelope
from meshctl.model.route import HTTP_METHOD
from meshctl.model.values import Name, Spec

ACCESS_SOURCE = Annotated[str, Field(pattern=r"^(\*|(gateway/)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")]
ACCESS_PATH = Annotated[str, Field(pattern=r"^(\*|/.*|\*.+)$")]


class AccessRule(Spec):
    from_: Annotated[list[ACCESS_SOURCE], Field(min_length=1)] | None = Field(default=None, alias="from")
    methods: list[HTTP_METHOD] | None = None
    paths: list[ACCESS_PATH] | None = None
    # "<issuer>/<subject>" of a JWT a gateway verified, "*" any verified token (Istio's form).
    request_principals: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None = None


class AccessPolicySpec(Spec):
    service: Name
    action: Literal["allow", "deny"] = "allow"
    rules: Annotated[list[AccessRule], Field(min_length=1)]


class AccessPolicy(Envelope):
    kind: Literal["AccessPolicy"]
    spec: AccessPolicySpec
