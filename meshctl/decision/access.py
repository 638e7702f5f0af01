"""Access policy decisions (who may call this service), a pure function of the compiled policy.

Public API (also used by `meshctl explain`):
- `decide(access, identity, method, path) -> AccessDecision`.
  Order as SPEC: a matching `deny` rule refuses; else, when the service has `allow` policies, one
  of their rules must match; else `access.default` decides. `identity` is the caller's SPIFFE
  ID from its verified certificate, or None: a request without identity matches only rules
  without sources. A source "*" matches any identity. Paths: exact, "prefix*", "*suffix", "*".
"""

from __future__ import annotations

from dataclasses import dataclass

from meshctl.contract import Access, CompiledAccessRule


@dataclass(frozen=True, slots=True)
class AccessDecision:
    allowed: bool
    policy: str | None  # the policy that decided, None when the default did
    reason: str

    @property
    def verdict(self) -> str:
        return "allow" if self.allowed else "deny"


def path_matches(pattern: str, path: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    return path == pattern


def rule_matches(
    rule: CompiledAccessRule, identity: str | None, method: str, path: str, principal: str | None = None
) -> bool:
    if rule.request_principals is not None:
        if principal is None:
            return False
        if "*" not in rule.request_principals and principal not in rule.request_principals:
            return False
    if rule.sources is not None:
        if identity is None:
            return False
        if "*" not in rule.sources and identity not in rule.sources:
            return False
    if rule.methods and method.upper() not in rule.methods:
        return False
    if rule.paths and not any(path_matches(p, path) for p in rule.paths):
        return False
    return True


def decide(
    access: Access, identity: str | None, method: str, path: str, principal: str | None = None
) -> AccessDecision:
    """`principal`: "<iss>/<sub>" of the end user a gateway verified (see decide.Request)."""
    path = path.partition("?")[0] or "/"
    for policy in access.policies:
        if policy.action == "deny" and any(
            rule_matches(r, identity, method, path, principal) for r in policy.rules
        ):
            return AccessDecision(False, policy.name, f"denied by policy {policy.name!r}")
    allow_policies = [p for p in access.policies if p.action == "allow"]
    if allow_policies:
        for policy in allow_policies:
            if any(rule_matches(r, identity, method, path, principal) for r in policy.rules):
                return AccessDecision(True, policy.name, f"allowed by policy {policy.name!r}")
        return AccessDecision(False, None, "no allow policy matches")
    allowed = access.default == "allow"
    return AccessDecision(allowed, None, f"mesh default is {access.default}")
