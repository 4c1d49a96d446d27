"""Identity: bearer JWTs. HS256 ones signed with ``GIFTING_JWT_SECRET`` (``sub``, ``role``, ``exp``),
and RS256/ES256 ones from the platform's OpenID Connect provider, checked against its cached keys
(``server.oidc.KeySet``) with the claim mapping of the settings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

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


def principal_from_header(header: str | None, secret: str, keys: KeySet | None = None) -> Principal:
    """The caller named by ``Authorization: Bearer <jwt>``, or ``Unauthorized`` saying why not."""
    if not header:
        raise Unauthorized("missing Authorization: Bearer <token> header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return principal_from_token(token.strip(), secret, keys)


def principal_from_token(token: str, secret: str, keys: KeySet | None = None) -> Principal:
    """The caller a token names: by its header's ``alg``, an HS256 token is checked with the
    secret, an RS256/ES256 one against the OIDC provider's keys (refused when none are set)."""
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    if alg == ALGORITHM:
        return _principal_from_secret(token, secret)
    if alg in OIDC_ALGORITHMS:
        if keys is None:
            raise Unauthorized(f"invalid token: {alg} tokens need the OIDC provider, which is not configured")
        return _principal_from_provider(token, alg, keys)
    accepted = ", ".join((ALGORITHM, *OIDC_ALGORITHMS) if keys is not None else (ALGORITHM,))
    raise Unauthorized(f"invalid token: the algorithm {str(alg)[:16]!r} is not accepted (only {accepted})")


def _principal_from_secret(token: str, secret: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    return _principal(claims["sub"], claims["role"], claims.get("name"), "sub")


def _principal_from_provider(token: str, alg: str, keys: KeySet) -> Principal:
    kid = jwt.get_unverified_header(token).get("kid")
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
    return _principal(claims[mapping.user], role, claims.get(mapping.name), mapping.user)


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
