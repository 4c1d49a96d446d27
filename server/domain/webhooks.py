"""Payment webhook signatures: ``Gifting-Signature: t=<unix s>,v1=<hex HMAC-SHA256>``.

The signed payload is ``"<t>.<raw body>"`` with the webhook secret, as in Stripe's scheme:
several ``v1`` entries may be present (secret rotation), comparison is constant-time, and
a timestamp further than the tolerance from now is refused so a captured request cannot
be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac

from server.errors import BadSignature

HEADER = "Gifting-Signature"


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The header value a provider sends for ``body`` at ``timestamp``."""
    return f"t={timestamp},v1={_digest(body, secret, timestamp)}"


def verify(body: bytes, header: str | None, secret: str, now: int, tolerance_s: int) -> None:
    """Raise ``BadSignature`` unless ``header`` signs ``body`` with ``secret`` recently enough."""
    if not header:
        raise BadSignature(f"missing {HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise BadSignature(f"{HEADER} has a malformed timestamp") from None
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise BadSignature(f"{HEADER} must carry t=<unix seconds> and v1=<signature>")
    if abs(now - timestamp) > tolerance_s:
        raise BadSignature(
            f"{HEADER} timestamp is {abs(now - timestamp)} s away from now (tolerance {tolerance_s} s)"
        )
    expected = _digest(body, secret, timestamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise BadSignature(f"{HEADER} does not match the body")


def _digest(body: bytes, secret: str, timestamp: int) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
