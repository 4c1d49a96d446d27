"""``GET /openapi.json``: the OpenAPI 3.1 document of the HTTP API, built from one table.

``OPERATIONS`` has one entry per operation: method, path, summary, request body struct,
roles, success status and the errors it can answer with. Request bodies are described by
their ``domain.requests`` structs through ``msgspec.json.schema_components``, so the
document states the rules the routes check. ``document(routes)`` keeps the operations whose
routes the app registered, so demo-only routes appear only in demo mode; ``route(routes)``
serves it, rendered once.
The room and overlay WebSockets are not in it (OpenAPI does not describe them); see
docs/PROTOCOL.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from server.api.admin import WITHDRAWAL_STATES
from server.api.stripe import StripeEvent
from server.auth import CHAT_ROLES, CREATOR_ROLES, GIFTING_ROLES, ROLES
from server.domain.catalog import Catalog, Gift
from server.domain.chat import ChatRequest, ChatSettings, MuteRequest
from server.domain.ids import ID_PATTERN
from server.domain.limits import is_exempt
from server.domain.requests import (
    AppleNotification,
    AppleTransactionRequest,
    BattleRequest,
    CreateRoomRequest,
    DecisionRequest,
    DevTokenRequest,
    FreezeRequest,
    GiftChange,
    GiftRequest,
    GoalRequest,
    GoogleNotification,
    GooglePurchaseRequest,
    LikeRequest,
    LimitsRequest,
    NewGift,
    PublishVideoRequest,
    PurchaseRequest,
    RegionRequest,
    WebhookEvent,
    WithdrawalRequest,
)
from server.domain.webhooks import HEADER as SIGNATURE_HEADER
from server.providers.stripe import HEADER as STRIPE_SIGNATURE_HEADER
from server.store.streams import CURSOR_PATTERN

PATH = "/openapi.json"
ANYONE: tuple[str, ...] = ()
ANY_ROLE: tuple[str, ...] = ROLES
SCHEMA_REF = "#/components/schemas/{name}"

# Every error code a route answers with, by HTTP status, and what the status means.
STATUSES: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("Bad webhook or App Store signature", ("bad_signature",)),
    401: ("No, malformed, expired or wrongly signed bearer token", ("unauthorized",)),
    402: ("Not enough coins", ("insufficient_coins", "negative_balance")),
    403: ("Not allowed", ("forbidden", "account_frozen", "daily_limit_exceeded",
                          "links_not_allowed", "message_blocked",
                          "banned")),
    404: ("No such thing", ("not_found", "room_not_found", "unknown_gift", "unknown_package",
                            "withdrawal_not_found", "overlay_not_found",
                            "moderator_not_found", "creator_not_found",
                            "message_not_found", "battle_not_found")),
    409: ("Conflicts with the current state", ("idempotency_mismatch", "room_ended", "self_gift",
                                              "already_live", "not_live", "amount_mismatch", "order_flagged",
                                              "order_already_paid", "payment_reused", "order_not_paid",
                                              "payment_mismatch", "provider_mismatch",
                                              "insufficient_diamonds", "daily_payout_cap",
                                              "withdrawal_decided", "gift_exists",
                                              "too_many_pending_orders",
                                              "self_follow", "self_battle", "already_in_battle",
                                              "battle_lapsed", "battle_not_invited",
                                              "transaction_claimed", "order_not_refunded",
                                              "purchase_pending", "purchase_canceled")),
    413: ("The body is over 64 KiB", ("payload_too_large",)),
    422: ("Invalid request", ("invalid_request", "unknown_region", "below_minimum_withdrawal",
                              "wrong_app", "wrong_environment", "transaction_revoked", "unknown_product",
                              "unknown_purchase_token")),
    429: ("Too many requests; Retry-After says when to retry", ("rate_limited",
                                                                "slow_mode",
                                                                "muted")),
    502: ("The payment provider failed or could not be reached; retry", ("provider_error",)),
    503: ("The engine cannot be reached (retry), or the payment provider is not configured here",
          ("engine_unavailable", "provider_unavailable")),
}  # fmt: skip
STATUS_OF = {code: status for status, (_, codes) in STATUSES.items() for code in codes}


@dataclass(frozen=True)
class Query:
    """A query parameter the route reads."""

    name: str
    schema: dict[str, Any]
    description: str


def limit(high: int) -> Query:
    return Query("limit", {"type": "integer", "minimum": 1, "maximum": high, "default": 50}, "page size")


CURSOR = Query(
    "cursor",
    {"type": "string", "pattern": CURSOR_PATTERN},
    "the `next_cursor` of the previous page",
)


@dataclass(frozen=True)
class Operation:
    """One documented operation: who may call it, what it takes and what it answers."""

    method: str
    path: str
    summary: str
    body: type[msgspec.Struct] | None = None
    roles: tuple[str, ...] = ANYONE
    status: int = 200
    returns: tuple[str, ...] = ()  # the keys every success body has
    errors: tuple[str, ...] = ()  # error codes beyond those auth, body, ids and the engine imply
    query: tuple[Query, ...] = ()
    body_optional: bool = False
    engine: bool = True  # reads or writes the engine, so it can answer 503
    media: str = "application/json"
    headers: dict[int, tuple[str, ...]] = field(default_factory=dict)  # status → response headers

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path


WALLET = ("coins", "daily_limit", "spent_today")
ME = ("user_id", "role", "name", "region")
SUMMARY = (
    "room_id",
    "title",
    "started_ms",
    "ended_ms",
    "duration_ms",
    "coins",
    "diamonds",
    "gifts",
    "gifters",
    "top_gifters",
    "likes",
    "new_followers",
)
ROOM = ("room_id", "creator_id", "title", "state", "created_ms", "ended_ms", "epoch")
BATTLE = (
    "battle_id",
    "state",
    "inviter",
    "duration_s",
    "invited_ms",
    "started_ms",
    "ends_at",
    "ended_ms",
    "sides",
    "winner",
    "forfeit",
)
ORDER = ("order_id", "package_id", "region", "coins", "price", "state", "created_ms")
WITHDRAWAL = ("withdrawal_id", "creator_id", "state", "diamonds", "amount", "requested_ms")
PAGE = ("entries", "next_cursor")
OVERLAY = ("token", "url")
GIFT = Gift.__struct_fields__
REGIONS = sorted(Catalog.load_default().regions)
DECISION_ERRORS = ("withdrawal_not_found", "withdrawal_decided")
CHAT_SETTINGS = ChatSettings.__struct_fields__
CREATOR = ("id", "name", "followers", "following", "live_room_id")
FOLLOW = ("creator_id", "following", "followers")
VIDEO = ("id", "creator", "title", "url", "created_ms", "coins", "top_gifters")

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/healthz", "The process is up, and its pid (503 if its embedded engine died and "
              "cannot be started again: the server is about to exit)", returns=("status", "pid"),
              engine=False),
    Operation("GET", "/readyz", "The engine is reachable (503 with a status body if not)",
              returns=("status",)),
    Operation("GET", PATH, "This document", returns=("openapi", "paths"), engine=False),
    Operation("GET", "/metrics", "Prometheus metrics of this process (of every process of the node with "
              "PROMETHEUS_MULTIPROC_DIR); absent with GIFTING_METRICS=0", engine=False, media="text/plain"),
    Operation("POST", "/v1/dev/token", "Mint a token for any user (demo mode)", DevTokenRequest,
              returns=("token", "user_id", "role")),
    Operation("GET", "/v1/me", "The caller, with the region they saved (null if none)", roles=ANY_ROLE,
              returns=ME),
    Operation("PUT", "/v1/me/region", "Save the caller's region (null forgets it); answers GET /v1/me",
              RegionRequest, roles=ANY_ROLE, returns=ME, errors=("unknown_region",)),
    Operation("GET", "/v1/catalog/gifts", "Gifts on sale, each with its tier (1, 2, 3 by its coins), the "
              "tier thresholds and the price from which a gift asks to confirm",
              returns=("gifts", "tiers", "confirm_coins"), engine=False),
    Operation("GET", "/v1/catalog/packages", "Coin packages of a region", returns=("region", "packages"),
              errors=("unknown_region",), engine=False,
              query=(Query("region", {"type": "string", "enum": REGIONS, "default": "US"}, "the region"),)),
    Operation("GET", "/v1/wallet", "The caller's coins and daily budget", roles=ANY_ROLE, returns=WALLET),
    Operation("PUT", "/v1/wallet/limits", "Set the caller's daily spending budget", LimitsRequest,
              roles=ANY_ROLE, returns=WALLET),
    Operation("GET", "/v1/wallet/ledger", "The caller's coin movements, newest first", roles=ANY_ROLE,
              returns=PAGE, query=(CURSOR, limit(200))),
    Operation("POST", "/v1/purchases", "A pending order for a coin package", PurchaseRequest, roles=ANY_ROLE,
              status=201, returns=ORDER,
              errors=("unknown_package", "unknown_region", "too_many_pending_orders", "provider_unavailable",
                      "provider_error")),
    Operation("GET", "/v1/purchases/{order_id}", "One of the caller's orders", roles=ANY_ROLE,
              returns=ORDER, errors=("not_found",)),
    Operation("POST", "/v1/purchases/apple", "Credit an App Store consumable the caller bought in the app "
              "(StoreKit's signed transaction), once; its order (apple_<transactionId>) with credited, false "
              "when submitted again", AppleTransactionRequest, roles=ANY_ROLE,
              returns=(*ORDER, "transaction_id", "credited"),
              errors=("provider_unavailable", "bad_signature", "wrong_app", "wrong_environment",
                      "transaction_revoked", "unknown_product", "transaction_claimed", "order_already_paid",
                      "payment_reused")),
    Operation("POST", "/v1/payments/apple/notifications", "An App Store Server Notification V2, signed by "
              "Apple (no bearer token): REFUND claws the purchase back, REFUND_REVERSED restores it, once "
              "per notificationUUID", AppleNotification, returns=("received", "handled"),
              errors=("provider_unavailable", "bad_signature", "wrong_app", "wrong_environment",
                      "order_not_paid", "order_not_refunded", "payment_mismatch")),
    Operation("POST", "/v1/purchases/google", "Credit a Google Play one-time product the caller bought in "
              "the app (its purchase token, checked with Google's API), once, and consume it; its order "
              "(google_<hash of the token>) with credited, false when submitted again, and consumed",
              GooglePurchaseRequest, roles=ANY_ROLE,
              returns=(*ORDER, "google_order_id", "credited", "consumed"),
              errors=("provider_unavailable", "provider_error", "unknown_product", "unknown_purchase_token",
                      "purchase_pending", "purchase_canceled", "transaction_revoked", "transaction_claimed",
                      "order_already_paid", "payment_reused")),
    Operation("POST", "/v1/payments/google/notifications", "A Google Play real-time developer notification "
              "pushed by Pub/Sub, authenticated by the push's Google-signed OIDC token (Authorization: "
              "Bearer): a voided (refunded) one-time purchase is clawed back, once per messageId",
              GoogleNotification, returns=("received", "handled"),
              errors=("provider_unavailable", "provider_error", "bad_signature", "order_not_paid",
                      "payment_mismatch")),
    Operation("POST", "/v1/sandbox/orders/{order_id}/pay", "Pay an order through the sandbox (demo mode)",
              roles=ANY_ROLE, returns=("payment_id", "order_id"),
              errors=("not_found", "order_already_paid", "order_flagged", "amount_mismatch")),
    Operation("POST", "/v1/payments/webhook", "The payment provider's signed event", WebhookEvent,
              returns=("received", "handled"),
              errors=("bad_signature", "not_found", "payment_reused", "order_already_paid", "amount_mismatch",
                      "order_flagged", "order_not_paid", "payment_mismatch", "provider_mismatch",
                      "provider_unavailable")),
    Operation("GET", "/v1/payments/providers", "The payment providers this server takes, the one a web page "
              "pays with (web: stripe when configured, else sandbox) and what its page needs (stripe: "
              "publishable_key, js_url)", returns=("web", "providers"), engine=False),
    Operation("POST", "/v1/payments/stripe/webhook", "Stripe's signed event (payment_intent.succeeded, "
              "charge.refunded, charge.dispute.created; any other is acknowledged, handled false)",
              StripeEvent, returns=("received", "handled"),
              errors=("bad_signature", "order_not_paid", "provider_error", "provider_unavailable")),
    Operation("GET", "/v1/rooms", "Live rooms, newest first", returns=("rooms",), query=(limit(200),)),
    Operation("POST", "/v1/rooms", "Go live", CreateRoomRequest, roles=("creator",), status=201, returns=ROOM,
              errors=("already_live",), body_optional=True),
    Operation("GET", "/v1/rooms/{room_id}", "A room with its offset and snapshot",
              returns=(*ROOM, "offset", "snapshot", "battle"), errors=("room_not_found",)),
    Operation("POST", "/v1/rooms/{room_id}/end", "End the live; the room with the live's summary",
              roles=CREATOR_ROLES, returns=(*ROOM, "summary"), errors=("room_not_found",)),
    Operation("GET", "/v1/rooms/{room_id}/summary", "The live's summary, live or ended (its creator or an "
              "admin)", roles=CREATOR_ROLES, returns=SUMMARY, errors=("room_not_found",)),
    Operation("PUT", "/v1/rooms/{room_id}/goal", "Set the goal bar", GoalRequest, roles=CREATOR_ROLES,
              returns=("room_id", "goal"), errors=("room_not_found", "room_ended")),
    Operation("POST", "/v1/rooms/{room_id}/gifts", "Send a gift", GiftRequest, roles=GIFTING_ROLES,
              returns=("gift_event_id", "coins", "cost"),
              errors=("insufficient_coins", "negative_balance", "account_frozen", "daily_limit_exceeded",
                      "room_not_found", "unknown_gift", "idempotency_mismatch", "room_ended", "self_gift",
                      "rate_limited",  # rate_limited: also the per-user gift rate
                      "banned"),
              headers={200: ("Idempotent-Replayed",)}),
    Operation("POST", "/v1/videos", "Publish a video record (its title and the http(s) URL of its media)",
              PublishVideoRequest, roles=("creator",), status=201, returns=VIDEO),
    Operation("GET", "/v1/videos/{video_id}", "A video with its coins and top gifters", returns=VIDEO,
              errors=("not_found",)),
    Operation("GET", "/v1/creators/{creator_id}/videos", "A creator's videos, newest first",
              returns=("videos",), query=(limit(200),)),
    Operation("POST", "/v1/videos/{video_id}/gifts", "Send a gift on a video (the same debit, answers and "
              "errors as a gift in a live)", GiftRequest, roles=GIFTING_ROLES,
              returns=("gift_event_id", "coins", "cost"),
              errors=("insufficient_coins", "negative_balance", "account_frozen", "daily_limit_exceeded",
                      "not_found", "unknown_gift", "idempotency_mismatch", "self_gift", "rate_limited",
                      "banned"),
              headers={200: ("Idempotent-Replayed",)}),
    Operation("POST", "/v1/rooms/{room_id}/chat", "Post a chat message (a resend with its client_id: 200)",
              ChatRequest, roles=CHAT_ROLES, status=201, returns=("client_id", "event_id"),
              errors=("room_not_found", "room_ended", "idempotency_mismatch", "links_not_allowed",
                      "message_blocked", "slow_mode", "rate_limited",  # rate_limited: also the chat rate
                      "muted", "banned"),
              headers={200: ("Idempotent-Replayed",)}),
    Operation("GET", "/v1/creator/moderators", "The creator's moderators", roles=("creator",),
              returns=("moderators",)),
    Operation("PUT", "/v1/creator/moderators/{user_id}", "Appoint a moderator (204 if one already)",
              roles=("creator",), status=204),
    Operation("DELETE", "/v1/creator/moderators/{user_id}", "Remove a moderator, at once",
              roles=("creator",), status=204, errors=("moderator_not_found",)),
    Operation("GET", "/v1/creator/chat-settings", "The creator's chat settings", roles=("creator",),
              returns=CHAT_SETTINGS),
    Operation("PUT", "/v1/creator/chat-settings", "Replace the creator's chat settings (for all their lives)",
              ChatSettings, roles=("creator",), returns=CHAT_SETTINGS),
    Operation("DELETE", "/v1/rooms/{room_id}/chat/{event_id}", "Delete a chat message (the room's creator "
              "or a moderator; again: 204)", roles=CHAT_ROLES, status=204,
              errors=("room_not_found", "message_not_found")),
    Operation("PUT", "/v1/rooms/{room_id}/mutes/{user_id}", "Mute a user's chat in this live (the room's "
              "creator or a moderator)", MuteRequest, roles=CHAT_ROLES, status=204,
              errors=("room_not_found",)),
    Operation("DELETE", "/v1/rooms/{room_id}/mutes/{user_id}", "Unmute a user in this live (not muted: 204)",
              roles=CHAT_ROLES, status=204, errors=("room_not_found",)),
    Operation("PUT", "/v1/rooms/{room_id}/bans/{user_id}", "Ban a user from all of the creator's lives: "
              "their sockets close 4403 (banned already: 204)", roles=CHAT_ROLES, status=204,
              errors=("room_not_found",)),
    Operation("DELETE", "/v1/rooms/{room_id}/bans/{user_id}", "Unban a user (not banned: 204)",
              roles=CHAT_ROLES, status=204, errors=("room_not_found",)),
    Operation("GET", "/v1/creator/bans", "The users the creator banned from their lives", roles=("creator",),
              returns=("bans",)),
    Operation("GET", "/v1/creator/moderation-log", "Every moderation action on the creator's lives, newest "
              "first", roles=("creator",), returns=PAGE, query=(CURSOR, limit(100))),
    Operation("POST", "/v1/rooms/{room_id}/likes", "Like a live room (taps batched by the client); "
              "likes over the caller's rate are dropped, not refused: the answer says how many were "
              "accepted", LikeRequest, roles=GIFTING_ROLES, status=202,
              returns=("room_id", "accepted", "dropped"), errors=("room_not_found", "room_ended")),
    Operation("GET", "/v1/creators/{creator_id}", "A creator's public profile: followers, whether the caller "
              "follows them (false without a token), the live room", returns=CREATOR,
              errors=("creator_not_found", "unauthorized")),
    Operation("PUT", "/v1/creators/{creator_id}/follow", "Follow a creator (again: no change)",
              roles=GIFTING_ROLES, returns=FOLLOW, errors=("creator_not_found", "self_follow")),
    Operation("DELETE", "/v1/creators/{creator_id}/follow", "Stop following a creator (not following: no "
              "change)", roles=GIFTING_ROLES, returns=FOLLOW, errors=("creator_not_found", "self_follow")),
    Operation("GET", "/v1/me/following", "The creators the caller follows, by id", roles=ANY_ROLE,
              returns=("creators", "next_cursor"),
              query=(Query("cursor", {"type": "string", "pattern": ID_PATTERN}, "the `next_cursor` of the "
                           "previous page"), limit(200))),
    Operation("POST", "/v1/rooms/{room_id}/share", "Share a live room: announced once per user per live "
              "(counted false after that)", roles=GIFTING_ROLES, returns=("room_id", "counted"),
              errors=("room_not_found", "room_ended")),
    Operation("POST", "/v1/battles", "Invite a live creator to a battle (both live, neither in a battle)",
              BattleRequest, roles=CREATOR_ROLES, status=201, returns=BATTLE,
              errors=("not_live", "self_battle", "already_in_battle")),
    Operation("GET", "/v1/battles/{battle_id}", "A battle: its state, sides, scores and supporters",
              roles=ANY_ROLE, returns=BATTLE, errors=("battle_not_found",)),
    Operation("POST", "/v1/battles/{battle_id}/accept", "Accept an invitation (the invited creator): the "
              "battle runs from now", roles=CREATOR_ROLES, returns=BATTLE,
              errors=("battle_not_found", "battle_lapsed", "battle_not_invited", "not_live")),
    Operation("POST", "/v1/battles/{battle_id}/decline", "Decline an invitation (the invited creator), or "
              "withdraw it (the inviter)", roles=CREATOR_ROLES, returns=BATTLE,
              errors=("battle_not_found", "battle_lapsed", "battle_not_invited")),
    Operation("GET", "/v1/me/battle", "The caller's battle while it is invited or running (null if none)",
              roles=ANY_ROLE, returns=("battle",)),
    Operation("GET", "/v1/creator/overlay", "The overlay token and URL", roles=("creator",), returns=OVERLAY),
    Operation("POST", "/v1/creator/overlay/regenerate", "Replace the overlay token: the overlays open "
              "with the old one close at once (overlay_revoked, 4401)", roles=("creator",),
              returns=OVERLAY),
    Operation("POST", "/v1/creator/test-alert", "A fake alert on the creator's overlays", roles=("creator",),
              status=202, returns=("sent", "room_id"), errors=("not_live",)),
    Operation("GET", "/v1/overlay/{token}", "Whose overlay a token is, and the live room",
              returns=("creator", "room_id"), errors=("overlay_not_found",)),
    Operation("GET", "/v1/creator/earnings", "The creator's diamonds", roles=CREATOR_ROLES,
              returns=("pending", "available", "reserved", "withdrawn", "reversed", "lifetime",
                       "diamond_value_minor", "pending_value_minor", "currency", "lives", "videos",
                       "terms")),
    Operation("GET", "/v1/creator/earnings/ledger", "The creator's diamond movements, newest first; a "
              "gift's entry names the gift, its sender and what became of its diamonds (state)",
              roles=CREATOR_ROLES, returns=PAGE, query=(CURSOR, limit(200))),
    Operation("POST", "/v1/creator/withdrawals", "Reserve available diamonds for a payout (a retry: 200)",
              WithdrawalRequest, roles=("creator",), status=201, returns=WITHDRAWAL,
              errors=("account_frozen", "idempotency_mismatch", "insufficient_diamonds", "daily_payout_cap",
                      "below_minimum_withdrawal"),
              headers={200: ("Idempotent-Replayed",)}),
    Operation("GET", "/v1/creator/withdrawals", "The creator's withdrawals, newest first",
              roles=CREATOR_ROLES, returns=("withdrawals",), query=(limit(200),)),
    Operation("GET", "/v1/admin/withdrawals", "Withdrawals to act on", roles=("admin",),
              returns=("withdrawals",),
              query=(Query("state", {"type": "string", "enum": list(WITHDRAWAL_STATES)}, "only these"),
                     Query("creator_id", {"type": "string", "pattern": ID_PATTERN}, "only this creator's"),
                     limit(500))),
    Operation("POST", "/v1/admin/withdrawals/{withdrawal_id}/paid", "Mark a requested withdrawal paid",
              DecisionRequest, roles=("admin",), returns=WITHDRAWAL, errors=DECISION_ERRORS,
              body_optional=True),
    Operation("POST", "/v1/admin/withdrawals/{withdrawal_id}/reject", "Reject a requested withdrawal",
              DecisionRequest, roles=("admin",), returns=WITHDRAWAL, errors=DECISION_ERRORS,
              body_optional=True),
    Operation("PUT", "/v1/admin/users/{user_id}/frozen", "Freeze or unfreeze a user", FreezeRequest,
              roles=("admin",), returns=("user_id", "frozen")),
    Operation("POST", "/v1/admin/catalog/gifts", "Add a gift", NewGift, roles=("admin",), status=201,
              returns=GIFT, errors=("gift_exists",)),
    Operation("PATCH", "/v1/admin/catalog/gifts/{gift_id}", "Change or retire a gift", GiftChange,
              roles=("admin",), returns=GIFT, errors=("unknown_gift",)),
    Operation("GET", "/v1/admin/log", "Every admin action, newest first", roles=("admin",), returns=PAGE,
              query=(CURSOR, limit(200))),
    Operation("GET", "/v1/admin/audit", "Replay every ledger and check the books", roles=("admin",),
              returns=("ok", "checks", "totals", "violations")),
    Operation("GET", "/", "The viewer page", engine=False, media="text/html"),
    Operation("GET", "/creator", "The creator dashboard", engine=False, media="text/html"),
    Operation("GET", "/overlay/{token}", "The OBS overlay page", engine=False, media="text/html"),
    Operation("GET", "/v/{video_id}", "The page of a video, with its gift tray (an id that cannot be one: "
              "422)", engine=False, media="text/html"),
    Operation("GET", "/static/{path}", "The browser clients' files", errors=("not_found",), engine=False,
              media="*/*"),
)  # fmt: skip

# Path parameters: the ids the routes check (anything else is 422), and the free-form ones.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "order_id": {"type": "string", "pattern": ID_PATTERN},
    "room_id": {"type": "string", "pattern": ID_PATTERN},
    "video_id": {"type": "string", "pattern": ID_PATTERN},
    "withdrawal_id": {"type": "string", "pattern": ID_PATTERN},
    "user_id": {"type": "string", "pattern": ID_PATTERN},
    "gift_id": {"type": "string", "pattern": ID_PATTERN},
    "creator_id": {"type": "string", "pattern": ID_PATTERN},
    "event_id": {"type": "string", "pattern": ID_PATTERN},
    "battle_id": {"type": "string", "pattern": ID_PATTERN},
    "token": {"type": "string"},
    "path": {"type": "string"},
}
_PARAMETER = re.compile(r"{(\w+)}")


def route_keys(routes: Iterable[BaseRoute]) -> set[tuple[str, str]]:
    """(method, path) of every HTTP operation of ``routes``, as the document names them
    (HEAD, which Starlette adds to every GET, is left out; a mount serves ``{path}`` below it)."""
    keys: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Route):
            keys |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
        elif isinstance(route, Mount):
            keys.add(("GET", f"{route.path}/{{path}}"))
    return keys


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the operations among ``routes``."""
    present = route_keys(routes)
    operations = [op for op in OPERATIONS if op.key in present]
    structs = sorted({op.body for op in operations if op.body is not None}, key=lambda s: s.__name__)
    _, components = msgspec.json.schema_components(structs, ref_template=SCHEMA_REF)
    components["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = operation_object(op)
    result: dict[str, Any] = json_schema_patterns(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "gifting-server",
                "version": "1",
                "description": "Coins, gifts to live rooms and creator earnings. Errors are "
                '`{"error": {"code", "message"}}`, some with the numbers behind them beside '
                "(a refused gift's cost and the sender's balance or budget, a withdrawal's "
                "minimum, a wait); a rejected request changes nothing. Integers are written "
                "without a fraction or exponent (2, not 2.0).",
            },
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": (
                            "HS256: claims sub (user id), role (viewer, creator, admin), exp; or, with "
                            "GIFTING_OIDC_ISSUER set, the OIDC provider's RS256/ES256 access tokens "
                            "(iss, aud, exp and the configured claims)"
                        ),
                    }
                },
            },
        }
    )
    return result


def json_schema_patterns(value: Any) -> Any:
    """``value`` with each ``pattern`` in JSON Schema's regex dialect: the server's patterns
    end in Python's ``\\Z``, which JSON Schema (ECMA-262) writes ``$``."""
    if isinstance(value, dict):
        return {
            key: re.sub(r"\\Z$", "$", item)
            if key == "pattern" and isinstance(item, str)
            else json_schema_patterns(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [json_schema_patterns(item) for item in value]
    return value


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                **{
                    name: {"type": "integer", "description": description}
                    for name, description in (
                        (
                            "cost",
                            "insufficient_coins, negative_balance, daily_limit_exceeded: the gift's coins",
                        ),
                        ("balance", "insufficient_coins, negative_balance: the sender's coins"),
                        ("daily_limit", "daily_limit_exceeded: the sender's daily budget"),
                        ("spent_today", "daily_limit_exceeded: coins spent today"),
                        ("budget_left", "daily_limit_exceeded: daily_limit - spent_today, at least 0"),
                        ("minimum_diamonds", "below_minimum_withdrawal: the least a withdrawal may be"),
                        ("retry_after_ms", "rate_limited, slow_mode, muted: when to retry"),
                    )
                },
            },
        }
    },
}


def operation_object(op: Operation) -> dict[str, Any]:
    result: dict[str, Any] = {
        "operationId": operation_id(op),
        "summary": op.summary,
        "responses": responses(op),
    }
    parameters = [path_parameter(name) for name in _PARAMETER.findall(op.path)]
    parameters += [
        {"name": q.name, "in": "query", "required": False, "schema": q.schema, "description": q.description}
        for q in op.query
    ]
    if op.path == "/v1/payments/webhook":
        parameters.append(
            {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>",
            }
        )
    if op.path == "/v1/payments/stripe/webhook":
        parameters.append(
            {
                "name": STRIPE_SIGNATURE_HEADER,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "Stripe's signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'> "
                "with the endpoint's signing secret (whsec_...)",
            }
        )
    if parameters:
        result["parameters"] = parameters
    if op.body is not None:
        result["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(name=op.body.__name__)}}},
        }
    if op.roles:
        result["security"] = [{"bearer": []}]
        if set(op.roles) != set(ANY_ROLE):
            result["description"] = f"Roles: {', '.join(op.roles)}."
    return result


def operation_id(op: Operation) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", op.path).strip("_") or "root"
    return f"{op.method.lower()}_{words}"


def path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": PATH_PARAMETERS[name]}


def error_codes(op: Operation) -> dict[int, list[str]]:
    """Status → the error codes ``op`` can answer with."""
    codes = set(op.errors)
    if op.roles:
        codes.add("unauthorized")
        if set(op.roles) != set(ANY_ROLE):
            codes.add("forbidden")
    if op.body is not None:
        codes |= {"payload_too_large", "invalid_request"}
    if op.query or any("pattern" in PATH_PARAMETERS[name] for name in _PARAMETER.findall(op.path)):
        codes.add("invalid_request")
    if op.engine:
        codes.add("engine_unavailable")
    if not is_exempt(op.path):
        codes.add("rate_limited")  # the per-address request limit (api.limits)
    by_status: dict[int, list[str]] = {}
    for code in sorted(codes, key=lambda code: (STATUS_OF[code], code)):
        by_status.setdefault(STATUS_OF[code], []).append(code)
    return by_status


def responses(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary}
    if op.status == 204:
        pass  # no content
    elif op.media == "application/json":
        schema: dict[str, Any] = {"type": "object"}
        if op.returns:
            schema["required"] = list(op.returns)
        success["content"] = {op.media: {"schema": schema}}
    else:
        success["content"] = {op.media: {}}
    result: dict[str, Any] = {str(op.status): success}
    if op.status != 200 and 200 in op.headers:
        result["200"] = {**success, "description": "A retry of the same request: the first answer"}
    for status, codes in error_codes(op).items():
        result[str(status)] = {
            "description": f"{STATUSES[status][0]}: {', '.join(codes)}",
            "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(name="Error")}}},
        }
        if status in (429, 503):
            result[str(status)]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    for status, names in op.headers.items():
        result[str(status)]["headers"] = {name: {"schema": {"type": "string"}} for name in names}
    if op.path in ("/readyz", "/healthz"):
        result["503"] = {
            "description": "The engine is unreachable"
            if op.path == "/readyz"
            else "The embedded engine died and cannot be started again",
            "content": {"application/json": {"schema": {"type": "object", "required": ["status", "engine"]}}},
        }
    return result


def route(routes: Sequence[BaseRoute]) -> Route:
    """``GET /openapi.json`` for the app made of ``routes`` and this route, rendered once."""

    async def openapi_json(request: Request) -> Response:
        return Response(body, media_type="application/json")

    endpoint = Route(PATH, openapi_json)
    body = orjson.dumps(document([*routes, endpoint]))
    return endpoint
