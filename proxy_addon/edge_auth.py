"""End-user JWT authentication at a gateway, as Istio's RequestAuthentication (with PyJWT).

A request without a token passes unauthenticated (a rule with `require_token` then refuses
it); a request with a token that fails any check is refused with 401 whatever the rule says,
so a bad token is never quietly treated as none. Checks: the token is three parts, its `alg`
is RS256 or ES256 (never `none`, never HMAC with a public key), its issuer is configured, the
key named by `kid` (or, without `kid`, one of the issuer's keys of that type) verifies the
signature, `exp`/`nbf` hold (60 s of clock skew, as Istio), and `aud` names an allowed audience.

Verified tokens are cached (at most 60 s, never past `exp`, dropped when the key set changes),
so a client's next request skips the signature check. Keys: a JWKS file is re-read when it
changes (looked at once a second at most); a JWKS URL is fetched on first use, cached,
refreshed every `refresh_ms`, and fetched again (at most every few seconds) when a token names
a `kid` the cached set lacks, so a key rotation is picked up at once. A fetch that fails keeps
the last good set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

from meshctl.contract import CompiledJwtProvider

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}
CLOCK_SKEW_S = 60
FILE_CHECK_INTERVAL_S = 1.0
REFETCH_UNKNOWN_KID_S = 5.0
FETCH_TIMEOUT_S = 5.0
MAX_JWKS_BYTES = 1024 * 1024
MAX_TOKEN_BYTES = 16 * 1024
VERIFIED_TTL_S = 60.0
MAX_VERIFIED = 4096


class AuthError(Exception):
    """A token that must be refused: 401 with this message (Envoy's jwt_authn wording)."""


@dataclass(frozen=True, slots=True)
class Principal:
    issuer: str
    subject: str
    claims: Mapping[str, Any]
    provider: CompiledJwtProvider

    @property
    def request_principal(self) -> str:
        """Istio's spelling: "<iss>/<sub>"."""
        return f"{self.issuer}/{self.subject}"


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of `Authorization: Bearer <token>`; None when there is none."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def parse_key_set(data: bytes | str) -> list[jwt.PyJWK]:
    """The usable signing keys of a JWKS document (keys of other types are skipped)."""
    raw = json.loads(data)
    keys = raw.get("keys") if isinstance(raw, dict) else None
    if not isinstance(keys, list):
        raise ValueError('not a JWKS: expected {"keys": [...]}')
    usable = []
    for entry in keys:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            usable.append(jwt.PyJWK(entry))
        except jwt.PyJWTError:
            continue  # an algorithm or key type PyJWT cannot use: not one of ours
    return usable


@dataclass
class KeySet:
    """The keys of one provider, from its file or URL, kept fresh."""

    provider: CompiledJwtProvider
    keys: list[jwt.PyJWK] = field(default_factory=list)
    loaded: bool = False
    generation: int = 0  # counts key set changes: verified tokens of an older one are checked anew
    _stamp: tuple[int, int, int] | None = None
    _checked: float = -1e9
    _fetched: float = -1e9
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _load_file(self, path: str, now: float) -> None:
        if now - self._checked < FILE_CHECK_INTERVAL_S and self.loaded:
            return
        self._checked = now
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            with open(path, "rb") as handle:
                self.keys = parse_key_set(handle.read(MAX_JWKS_BYTES))
            self._stamp, self.loaded = stamp, True
            self.generation += 1
        except (OSError, ValueError) as exc:
            log.warning("keeping the last JWKS of %s: %s", self.provider.issuer, exc)

    async def _fetch(self, url: str, session: aiohttp.ClientSession) -> None:
        async with self._lock:
            self._fetched = time.monotonic()
            try:
                async with asyncio.timeout(FETCH_TIMEOUT_S):
                    async with session.get(url, allow_redirects=False) as resp:
                        if resp.status != 200:
                            raise ValueError(f"HTTP {resp.status}")
                        body = await resp.content.read(MAX_JWKS_BYTES)
                self.keys, self.loaded = parse_key_set(body), True
                self.generation += 1
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("JWKS %s not fetched, keeping the last set: %s", url, exc)

    async def current(self, session: aiohttp.ClientSession, kid: str | None) -> list[jwt.PyJWK]:
        now = time.monotonic()
        if self.provider.jwks_file is not None:
            self._load_file(self.provider.jwks_file, now)
        elif self.provider.jwks_uri is not None:
            stale = now - self._fetched >= self.provider.refresh_ms / 1000.0
            unknown = kid is not None and all(k.key_id != kid for k in self.keys)
            if stale or (unknown and now - self._fetched >= REFETCH_UNKNOWN_KID_S):
                await self._fetch(self.provider.jwks_uri, session)
        return self.keys


class Authenticator:
    """Verifies tokens against the gateway's providers; one per sidecar, kept across reloads
    while the providers are the same."""

    def __init__(self, providers: tuple[CompiledJwtProvider, ...]) -> None:
        self.providers = providers
        self._sets = {p.issuer: KeySet(p) for p in providers}
        self._session: aiohttp.ClientSession | None = None
        # Verified tokens, so a client's next request skips the signature check (as Envoy's
        # jwt_cache): kept until `exp` and at most VERIFIED_TTL_S, dropped when keys change.
        self._verified: OrderedDict[str, tuple[Principal, float, tuple[int, ...]]] = OrderedDict()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        """The verified end user, None without a token; AuthError for a token to refuse."""
        token = bearer_token(headers)
        if token is None:
            return None
        cached = self._verified.get(token)
        if cached is not None:
            principal, until, generation = cached
            await self._sets[principal.issuer].current(self._http(), None)  # keys still current?
            if time.time() < until and generation == self._generation():
                return principal
            del self._verified[token]
        if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            raise AuthError("Jwt is not in the form of Header.Payload.Signature")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("Jwt header is an invalid JSON") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthError(f"Jwt algorithm {alg!r} is not allowed (only {', '.join(ALGORITHMS)})")
        issuer = unverified.get("iss")
        keyset = self._sets.get(issuer) if isinstance(issuer, str) else None
        if keyset is None:
            raise AuthError("Jwt issuer is not configured")
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        keys = await keyset.current(self._http(), kid)
        candidates = [
            k for k in keys
            if (kid is None or k.key_id == kid) and k.key_type == _KEY_TYPES[alg]
            and (k.algorithm_name in (alg, None) or not k.algorithm_name)
        ]
        if not candidates:
            raise AuthError("Jwks doesn't have key to match kid or alg from Jwt")
        principal = self._verify(token, alg, keyset.provider, candidates)
        exp = principal.claims.get("exp")
        until = time.time() + VERIFIED_TTL_S
        if isinstance(exp, (int, float)):
            until = min(until, float(exp))
        self._verified[token] = (principal, until, self._generation())
        if len(self._verified) > MAX_VERIFIED:
            self._verified.popitem(last=False)
        return principal

    def _generation(self) -> tuple[int, ...]:
        return tuple(k.generation for k in self._sets.values())

    def _verify(
        self, token: str, alg: str, provider: CompiledJwtProvider, keys: list[jwt.PyJWK]
    ) -> Principal:
        audiences = list(provider.audiences) or None
        options: dict[str, Any] = {"verify_aud": audiences is not None}
        failure = "Jwt verification fails"
        for key in keys:
            try:
                claims = jwt.decode(
                    token, key.key, algorithms=[alg], audience=audiences,
                    issuer=provider.issuer, leeway=CLOCK_SKEW_S, options=options,  # type: ignore[arg-type]
                )
            except jwt.InvalidSignatureError:
                continue  # another key of the issuer may have signed it
            except jwt.ExpiredSignatureError:
                raise AuthError("Jwt is expired") from None
            except jwt.ImmatureSignatureError:
                raise AuthError("Jwt not yet valid") from None
            except jwt.InvalidAudienceError:
                raise AuthError("Audiences in Jwt are not allowed") from None
            except jwt.MissingRequiredClaimError as exc:
                if exc.claim == "aud":
                    raise AuthError("Audiences in Jwt are not allowed") from None
                raise AuthError(failure) from None
            except jwt.PyJWTError:
                raise AuthError(failure) from None
            subject = claims.get("sub")
            return Principal(provider.issuer, subject if isinstance(subject, str) else "",
                             claims, provider)
        raise AuthError(failure)


def authenticator_for(
    current: Authenticator | None, providers: tuple[CompiledJwtProvider, ...]
) -> Authenticator | None:
    """Keep the authenticator (and its cached keys) while the providers do not change."""
    if not providers:
        return None
    if current is not None and current.providers == providers:
        return current
    return Authenticator(providers)
