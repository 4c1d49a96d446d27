"""Request bodies as typed structs, and the one function that validates a decoded body.

Bodies are decoded by ``orjson`` (HTTP) or ``msgpack`` and then checked here, so HTTP and
WebSocket clients get the same rules and the same messages.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from server.domain.catalog import Gift
from server.domain.ids import ID_PATTERN, IDEMPOTENCY_KEY_PATTERN
from server.domain.likes import MAX_LIKES_PER_FRAME
from server.domain.money import MAX_COUNT, MIN_COUNT
from server.errors import InvalidRequest

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
IdempotencyKey = Annotated[str, msgspec.Meta(pattern=IDEMPOTENCY_KEY_PATTERN)]
Count = Annotated[int, msgspec.Meta(ge=MIN_COUNT, le=MAX_COUNT)]
Region = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}\Z")]
Role = Annotated[str, msgspec.Meta(pattern=r"^(viewer|creator|admin)\Z")]
DailyLimit = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
VIDEO_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\x00-\x1f\x7f/?#@]+(?:[/?#][^\s\x00-\x1f\x7f]*)?\Z"


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Client request bodies: unknown fields are refused, so a typo is an error."""


class DevTokenRequest(Strict, frozen=True):
    user_id: Id
    role: Role = "viewer"
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class PurchaseRequest(Strict, frozen=True):
    package_id: Id
    region: Region = "US"
    # A web provider this server is configured for (server/purchases.py); the App Store's
    # purchases arrive signed by Apple instead (POST /v1/purchases/apple).
    provider: Literal["sandbox", "stripe"] | None = None


# A JWS of the App Store: three base64url parts (the header carries three certificates).
SignedData = Annotated[str, msgspec.Meta(min_length=1, max_length=32_768)]


class AppleTransactionRequest(Strict, frozen=True):
    """A transaction the app got from StoreKit, as Apple signed it (``jwsRepresentation``)."""

    signed_transaction: SignedData


class AppleNotification(msgspec.Struct, frozen=True):
    """An App Store Server Notification V2; Apple may add fields, which are ignored."""

    signedPayload: SignedData


# A Google Play product id (lowercase letters, digits, '_' and '.'), and a purchase token.
GoogleProductId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.]{0,148}\Z")]
PurchaseToken = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,4096}\Z")]


class GooglePurchaseRequest(Strict, frozen=True):
    """A one-time product the app bought through Google Play Billing, by its purchase token."""

    product_id: GoogleProductId
    purchase_token: PurchaseToken


class PubSubMessage(msgspec.Struct, frozen=True):
    """A Pub/Sub message as a push subscription delivers it; other fields are ignored."""

    data: Annotated[str, msgspec.Meta(min_length=1, max_length=32_768)]
    messageId: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}\Z")]


class GoogleNotification(msgspec.Struct, frozen=True):
    """A Pub/Sub push of a Google Play real-time developer notification."""

    message: PubSubMessage
    subscription: str = ""


class RegionRequest(Strict, frozen=True):
    region: Region | None


class GiftRequest(Strict, frozen=True):
    gift_id: Id
    count: Count
    idempotency_key: IdempotencyKey


class LikeRequest(Strict, frozen=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIKES_PER_FRAME)]


class LimitsRequest(Strict, frozen=True):
    daily_limit: DailyLimit | None


class CreateRoomRequest(Strict, frozen=True):
    title: Title | None = None


class BattleRequest(Strict, frozen=True):
    opponent_id: Id
    duration_s: Annotated[int, msgspec.Meta(ge=60, le=600)] = 300


class PublishVideoRequest(Strict, frozen=True):
    """A video record: its title (some visible text) and where its media is, an http(s) URL
    with a host and no spaces or control characters."""

    title: Annotated[Title, msgspec.Meta(pattern=r"^\s*\S[\s\S]*\Z")]
    url: Annotated[str, msgspec.Meta(max_length=2048, pattern=VIDEO_URL_PATTERN)]


class GoalRequest(Strict, frozen=True):
    coins: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000_000)]


class WithdrawalRequest(Strict, frozen=True):
    diamonds: Annotated[int, msgspec.Meta(ge=1, le=10**12)]
    idempotency_key: IdempotencyKey


class FreezeRequest(Strict, frozen=True):
    frozen: bool


class DecisionRequest(Strict, frozen=True):
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


def _gift_body(name: str, doc: str, fields: list[tuple[str, Any, Any]]) -> type[msgspec.Struct]:
    return msgspec.defstruct(
        name, fields, bases=(Strict,), frozen=True, namespace={"__doc__": doc}, module=__name__
    )


# The admin's bodies are the gift's own fields (``Gift``), so they cannot drift from it.
NewGift = _gift_body(
    "NewGift",
    "A gift to add: the gift's fields but ``retired``.",
    [
        (f.name, f.type, msgspec.field() if f.required else f.default)
        for f in msgspec.structs.fields(Gift)
        if f.name != "retired"
    ],
)
GiftChange = _gift_body(
    "GiftChange",
    "An admin's change to a gift: any of the fields; ``retired`` hides it from sale.",
    [(f.name, f.type | None, None) for f in msgspec.structs.fields(Gift) if f.name != "id"],
)


class PaymentData(msgspec.Struct, frozen=True):
    order_id: Id
    payment_id: Id
    amount_minor: Annotated[int, msgspec.Meta(ge=0)]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")]


class WebhookEvent(msgspec.Struct, frozen=True):
    """A provider event; extra fields are ignored since providers add them freely."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    data: dict[str, Any]


T = TypeVar("T")


def parse(body: object, kind: type[T]) -> T:
    """Validate a decoded body into ``kind`` or raise ``InvalidRequest`` saying what is wrong."""
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc)) from None
