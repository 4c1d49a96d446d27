"""Identity: HS256 bearer JWTs with ``sub`` (user id), ``role`` and ``exp`` claims."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from server.domain.ids import check_id
from server.errors import Forbidden, Unauthorized

ROLES = ("viewer", "creator", "admin")
# Who may send gifts (over HTTP and the room socket), and who may act on a creator's things.
GIFTING_ROLES = ("viewer", "creator")
CREATOR_ROLES = ("creator", "admin")
# Who may chat in a live room (over HTTP and the room socket).
CHAT_ROLES = ("viewer", "creator")
ALGORITHM = "HS256"


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


def principal_from_header(header: str | None, secret: str) -> Principal:
    """The caller named by ``Authorization: Bearer <jwt>``, or ``Unauthorized`` saying why not."""
    if not header:
        raise Unauthorized("missing Authorization: Bearer <token> header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return principal_from_token(token.strip(), secret)


def principal_from_token(token: str, secret: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    role = claims["role"]
    sub = claims["sub"]
    if role not in ROLES:
        raise Unauthorized(f"invalid token: role must be one of {', '.join(ROLES)}")
    if not isinstance(sub, str):
        raise Unauthorized("invalid token: sub must be a string")
    try:
        check_id(sub, "the token's sub")
    except Exception:
        raise Unauthorized("invalid token: sub is not a valid user id") from None
    name = claims.get("name")
    return Principal(user_id=sub, role=role, name=name[:64] if isinstance(name, str) and name else None)
