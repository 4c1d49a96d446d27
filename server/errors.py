"""The error tree: every failure a client can see, with a stable code and an HTTP status.

    GiftingError(message, code)           base; ``status`` is the HTTP status
    ├── BadSignature          400 bad_signature (a webhook's, or an App Store JWS that does not
    │                             verify against the configured roots, or a Google Pub/Sub push
    │                             token that does not verify)
    ├── Unauthorized          401 unauthorized, overlay_revoked
    ├── InsufficientCoins     402 insufficient_coins, negative_balance
    ├── Forbidden             403 forbidden, account_frozen
    │                             banned
    ├── DailyLimitExceeded    403 daily_limit_exceeded
    ├── NotFound              404 not_found, room_not_found, unknown_gift, unknown_package,
    │                             withdrawal_not_found
    │                             creator_not_found
    │                             message_not_found, battle_not_found
    ├── MethodNotAllowed      405 method_not_allowed
    ├── Conflict              409 idempotency_mismatch, room_ended, self_gift, already_live,
    │                             amount_mismatch, order_flagged, order_already_paid, payment_reused,
    │                             order_not_paid, payment_mismatch, provider_mismatch, insufficient_diamonds,
    │                             daily_payout_cap,
    │                             withdrawal_decided, gift_exists, too_many_pending_orders
    │                             self_follow, not_live, self_battle, already_in_battle,
    │                             battle_lapsed, battle_not_invited,
    │                             transaction_claimed, order_not_refunded,
    │                             purchase_pending, purchase_canceled (Google Play purchases)
    ├── PayloadTooLarge       413 payload_too_large
    ├── RateLimited           429 rate_limited
    │                             muted
    ├── TooManyConnections    429 too_many_connections (room sockets only)
    ├── InvalidRequest        422 invalid_request, unknown_region, below_minimum_withdrawal
    │                             wrong_app, wrong_environment, transaction_revoked,
    │                             unknown_product (App Store transactions, Google Play products),
    │                             unknown_purchase_token (Google Play)
    ├── ClientClosed          499 client_closed (the client left before its request was read
    │                             whole: answered to no one, counted and logged as such)
    ├── InternalError         500 internal_error (a bug, or an engine failure that is no outage)
    ├── ProviderError         502 provider_error (a payment provider failed or could not be reached)
    ├── EngineUnavailable     503 engine_unavailable
    └── ProviderUnavailable   503 provider_unavailable (a payment provider this server is not
                                  configured for)

Routes raise these; one handler in ``app`` turns them into ``{"error": {"code", "message"}}``,
with the error's ``details`` (the numbers behind it, such as a refused gift's ``cost`` and the
sender's ``balance``) beside ``code`` and ``message``; a socket's ``error`` frame carries the
same ``details`` (``hub.protocol.error_frame``).
Any other exception is answered as one of them by ``api.answers.client_error``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar


class GiftingError(Exception):
    """A failure with a stable machine-readable ``code`` and a human ``message``."""

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, code: str | None = None, details: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details: dict[str, int] = details or {}

    def to_dict(self) -> dict[str, dict[str, str | int]]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class Unauthorized(GiftingError):
    status = 401
    default_code = "unauthorized"


class Forbidden(GiftingError):
    status = 403
    default_code = "forbidden"


class NotFound(GiftingError):
    status = 404
    default_code = "not_found"


class MethodNotAllowed(GiftingError):
    status = 405
    default_code = "method_not_allowed"


class InvalidRequest(GiftingError):
    status = 422
    default_code = "invalid_request"


class PayloadTooLarge(GiftingError):
    status = 413
    default_code = "payload_too_large"


class BadSignature(GiftingError):
    status = 400
    default_code = "bad_signature"


class InsufficientCoins(GiftingError):
    status = 402
    default_code = "insufficient_coins"


class DailyLimitExceeded(GiftingError):
    status = 403
    default_code = "daily_limit_exceeded"


class Conflict(GiftingError):
    status = 409
    default_code = "conflict"


class RateLimited(GiftingError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, message: str, retry_after_ms: int, code: str | None = None) -> None:
        super().__init__(message, code, {"retry_after_ms": retry_after_ms})
        self.retry_after_ms = retry_after_ms


class TooManyConnections(GiftingError):
    """The user already holds the most room sockets allowed at once, on all processes."""

    status = 429
    default_code = "too_many_connections"


class EngineUnavailable(GiftingError):
    status = 503
    default_code = "engine_unavailable"


class ProviderUnavailable(GiftingError):
    """A payment provider that this server is not configured for: a setting, not an outage."""

    status = 503
    default_code = "provider_unavailable"

    @classmethod
    def not_configured(
        cls, provider: str, *, settings: Sequence[str] = (), configured: Iterable[str] | None = None
    ) -> ProviderUnavailable:
        """The refusal of a request for ``provider`` on a server not set up for it: naming the
        ``settings`` that would set it up, or the providers ``configured`` instead."""
        if configured is not None:
            hint = "configured: " + (", ".join(sorted(configured)) or "none")
        else:
            hint = "set " + ", ".join(settings)
        return cls(f"payment provider {provider!r} is not configured on this server ({hint})")


class ProviderError(GiftingError):
    """A payment provider that this server is configured for failed to answer, or answered
    with an error: an outage or a refusal on its side, never the caller's fault."""

    status = 502
    default_code = "provider_error"


class ClientClosed(GiftingError):
    """The client closed its connection before the request's body arrived whole. Nobody is
    left to answer; 499 is the status nginx logs for it."""

    status = 499
    default_code = "client_closed"


class InternalError(GiftingError):
    status = 500
    default_code = "internal_error"
