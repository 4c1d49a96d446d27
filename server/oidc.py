"""Sign-in through the platform's OpenID Connect provider: its signing keys, cached by ``kid``.

A ``KeySet`` fetches the provider's JWKS (from ``GIFTING_JWKS_URL``, or the ``jwks_uri`` of
``<GIFTING_OIDC_ISSUER>/.well-known/openid-configuration``) with a non-blocking client at
start-up, every ``REFRESH_EVERY_S`` and when a token names a key it does not hold (at most once
per ``GIFTING_JWKS_MIN_REFRESH_S``). Verification itself (``server.auth.Verifier``)
is synchronous against the cached keys; ``prepare`` is the await that runs before it, through
``Verifier.prepare`` (for a token it has not kept), called by ``KeyRefresh`` for HTTP requests
and by the room socket for its handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import httpx
import jwt
from starlette.types import ASGIApp, Receive, Scope, Send

from server.auth import OIDC_ALGORITHMS, Verifier
from server.settings import Settings

log = logging.getLogger(__name__)

# How often the key set is fetched again even when every token names a known key, so that a
# key the provider withdrew stops being accepted.
REFRESH_EVERY_S = 600.0
FETCH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Claims:
    """Which claims carry the user id, display name and role, and what a token must say."""

    issuer: str
    audience: str
    user: str = "sub"
    name: str = "name"
    role: str = "role"


class KeySet:
    """The provider's public keys by ``kid``, and the claims its tokens are checked against."""

    def __init__(
        self,
        claims: Claims,
        jwks_url: str | None,
        min_refresh_s: float,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.claims = claims
        self.jwks_url = jwks_url
        self.min_refresh_s = min_refresh_s
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._lock = asyncio.Lock()
        self._last_on_demand = -float("inf")

    @classmethod
    def from_settings(cls, settings: Settings) -> KeySet | None:
        if not settings.oidc_issuer:
            return None
        claims = Claims(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            user=settings.oidc_user_claim,
            name=settings.oidc_name_claim,
            role=settings.oidc_role_claim,
        )
        return cls(claims, settings.jwks_url or None, settings.jwks_min_refresh_s)

    def key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    async def prepare(self, token: str) -> None:
        """Before ``token`` is verified: fetch the keys again if it is an OIDC token naming a
        ``kid`` not held, unless that was done less than ``min_refresh_s`` ago."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return  # verification says why
        kid = header.get("kid")
        if header.get("alg") not in OIDC_ALGORITHMS or not isinstance(kid, str) or kid in self._keys:
            return
        async with self._lock:
            if kid in self._keys or time.monotonic() - self._last_on_demand < self.min_refresh_s:
                return
            self._last_on_demand = time.monotonic()
            await self._refresh_locked(f"a token names the unknown key id {kid[:64]!r}")

    async def refresh(self, why: str) -> bool:
        async with self._lock:
            return await self._refresh_locked(why)

    async def _refresh_locked(self, why: str) -> bool:
        try:
            keys = await self._fetch()
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, jwt.PyJWKError) as exc:
            log.warning("OIDC: fetching the provider's keys failed (%s): %s", why, exc)
            return False
        if keys.keys() != self._keys.keys():
            log.info("OIDC: signing keys now %s (%s)", ", ".join(sorted(keys)) or "none", why)
        self._keys = keys
        return True

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S)
        url = self.jwks_url
        if url is None:
            discovery = self.claims.issuer.rstrip("/") + "/.well-known/openid-configuration"
            answer = await client.get(discovery)
            answer.raise_for_status()
            document = answer.json()
            url = document.get("jwks_uri") if isinstance(document, dict) else None
            if not isinstance(url, str) or not url:
                raise ValueError(f"{discovery} names no jwks_uri")
        answer = await client.get(url)
        answer.raise_for_status()
        document = answer.json()
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"{url} is not a JWK set (no 'keys' list)")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str):
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, KeyError, TypeError, ValueError):
                continue  # a key type or curve this server does not verify with
            if key.algorithm_name in OIDC_ALGORITHMS:
                keys[kid] = key
        return keys

    async def run(self) -> None:
        """Fetch the keys every ``REFRESH_EVERY_S``; the lifespan fetches them first, then runs this."""
        while True:
            await asyncio.sleep(REFRESH_EVERY_S)
            await self.refresh("periodic refresh")

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()


class KeyRefresh:
    """ASGI middleware: gives ``Verifier.prepare`` each HTTP request's bearer token first, so
    that a token signed with a newly rotated key is accepted on its first use."""

    def __init__(self, app: ASGIApp, tokens: Verifier) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scheme, _, token = value.decode("latin-1").partition(" ")
                    if scheme.lower() == "bearer" and token.strip():
                        await self.tokens.prepare(token.strip())
                    break
        await self.app(scope, receive, send)
