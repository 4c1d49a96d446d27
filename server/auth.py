"""Identity: bearer JWTs. HS256 ones signed with ``GIFTING_JWT_SECRET`` (``sub``, ``role``, ``exp``),
and RS256/ES256 ones from the platform's OpenID Connect provider, checked against its cached keys
(``server.oidc.KeySet``) with the claim mapping of the settings. ``Verifier`` is the one way a
request or a room socket has its token checked: it keeps what it found for each token until the
token expires."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from cachetools import TLRUCache

from server.domain.ids import check_id
from server.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from server.oidc import KeySet

ROLES = ("viewer", "creator", "admin")
# Who may send gifts (over HTTP and the room socket), and who may act on a creator's things.
GIFTING_ROLES = ("viewer", "creator")
CREATOR_ROLES = ("creator", "admin")
# Who may chat in a live room (over HTTP and the room socket).
CHAT_ROLES = ("viewer", "creator")
ALGORITHM = "HS256"
# The only algorithms an OIDC provider's token may name (server.oidc keeps only keys for them).
OIDC_ALGORITHMS = ("RS256", "ES256")
# The role of an OIDC token that has no role claim: the platform's users are viewers unless
# their provider says otherwise.
DEFAULT_OIDC_ROLE = "viewer"
# How many checked tokens a process keeps (a few hundred bytes each): one per viewer of a full
# server, so that a viewer's reconnects to the process and every HTTP call of a client are a
# lookup. A restarted process starts with none.
VERIFIED_TOKENS = 32_768


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    name: str | None = None

    def require(self, *roles: str) -> Principal:
        if self.role not in roles:
            raise Forbidden(f"this needs the {' or '.join(roles)} role; the token has {self.role!r}")
        return self


def issue_token(secret: str, user_id: str, role: str, ttl_s: int = 86_400, name: str | None = None) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "role": role, "iat": now, "exp": now + ttl_s}
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


@dataclass(frozen=True)
class Verified:
    """A checked token's principal, until when it holds, and the OIDC key that signed it."""

    principal: Principal
    expires: float
    kid: str | None = None


class Verifier:
    """Checks bearer tokens: by its header's ``alg``, an HS256 token with the secret, an
    RS256/ES256 one against the OIDC provider's keys (refused when none are set).

    A token that passed is kept until its ``exp``, so the same token again costs a lookup, not a
    signature and three JSON parses: a viewer presents the same token on every reconnect and a
    client on every call. An OIDC token is checked again once its key is no longer among the
    provider's, and so refused. A refused token is never kept.
    """

    def __init__(
        self, secret: str, keys: KeySet | None = None, size: int = VERIFIED_TOKENS, hs256: bool = True
    ) -> None:
        self.secret = secret
        self.keys = keys
        self.hs256 = hs256  # False: HS256 tokens are refused (GIFTING_HS256_TOKENS=0)
        self._checked: TLRUCache[str, Verified] = TLRUCache(
            size, ttu=lambda _token, verified, _now: verified.expires, timer=time.time
        )

    def header(self, header: str | None) -> Principal:
        """The caller named by ``Authorization: Bearer <jwt>``, or ``Unauthorized`` saying why not."""
        if not header:
            raise Unauthorized("missing Authorization: Bearer <token> header")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        return self.token(token.strip())

    async def prepare(self, token: str) -> None:
        """Before ``token`` is checked: a token not kept that names an OIDC key not held yet has
        the keys fetched first (``KeySet.prepare``), so a newly rotated key signs in at once."""
        if self.keys is not None and self._kept(token) is None:
            await self.keys.prepare(token)

    def token(self, token: str) -> Principal:
        """The caller ``token`` names, or ``Unauthorized`` saying why not."""
        principal = self._kept(token)
        if principal is not None:
            return principal
        verified = self._verify(token)
        self._checked[token] = verified
        return verified.principal

    def _kept(self, token: str) -> Principal | None:
        """The principal of ``token`` if it passed before, has not expired, and its key (an
        OIDC token's) is still held."""
        verified = self._checked.get(token)
        if verified is None:
            return None
        if verified.kid is not None and (self.keys is None or self.keys.key(verified.kid) is None):
            return None
        return verified.principal

    def _verify(self, token: str) -> Verified:
        if self.hs256:
            # The server's own tokens are checked in one parse, their header with the rest (a
            # parse is a third of the check); a token of another algorithm is routed by its
            # header below.
            try:
                return _verified_by_secret(token, self.secret)
            except _OtherAlgorithm:
                pass
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        alg = header.get("alg")
        keys = self.keys
        if alg in OIDC_ALGORITHMS:
            if keys is None:
                raise Unauthorized(
                    f"invalid token: {alg} tokens need the OIDC provider, which is not configured"
                )
            return _verified_by_provider(token, alg, header.get("kid"), keys)
        accepted = ", ".join(
            ((ALGORITHM,) if self.hs256 else ()) + (OIDC_ALGORITHMS if keys is not None else ())
        )
        raise Unauthorized(
            f"invalid token: the algorithm {str(alg)[:16]!r} is not accepted (only {accepted})"
        )


class _OtherAlgorithm(Exception):
    """The token's header names an algorithm other than HS256."""


def _verified_by_secret(token: str, secret: str) -> Verified:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.InvalidAlgorithmError:
        raise _OtherAlgorithm from None
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    principal = _principal(claims["sub"], claims["role"], claims.get("name"), "sub")
    return Verified(principal, float(claims["exp"]))


def _verified_by_provider(token: str, alg: str, kid: Any, keys: KeySet) -> Verified:
    if not isinstance(kid, str):
        raise Unauthorized("invalid token: an OIDC token must name its key (kid)")
    key = keys.key(kid)
    if key is None:
        raise Unauthorized(f"invalid token: the key id {kid[:64]!r} is not among the OIDC provider's keys")
    if key.algorithm_name != alg:
        raise Unauthorized(f"invalid token: the key {kid[:64]!r} signs {key.algorithm_name}, not {alg}")
    mapping = keys.claims
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=mapping.audience,
            issuer=mapping.issuer,
            options={"require": ["exp", "iss", "aud", mapping.user]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized(f"invalid token: its audience (aud) is not {mapping.audience!r}") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized(f"invalid token: its issuer (iss) is not {mapping.issuer!r}") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    role = claims.get(mapping.role, DEFAULT_OIDC_ROLE)
    principal = _principal(claims[mapping.user], role, claims.get(mapping.name), mapping.user)
    return Verified(principal, float(claims["exp"]), kid)


def _principal(sub: Any, role: Any, name: Any, user_claim: str) -> Principal:
    if role not in ROLES:
        raise Unauthorized(f"invalid token: role must be one of {', '.join(ROLES)}")
    if not isinstance(sub, str):
        raise Unauthorized(f"invalid token: {user_claim} must be a string")
    try:
        check_id(sub, "the token's user id")
    except Exception:
        raise Unauthorized(f"invalid token: {user_claim} is not a valid user id") from None
    return Principal(user_id=sub, role=role, name=name[:64] if isinstance(name, str) and name else None)
