"""Purchase orders and their exactly-once credit when the payment provider confirms them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from server.domain.catalog import Package
from server.domain.ids import new_id
from server.errors import Conflict, NotFound
from server.keys import KeySchema, UserKeys
from server.store.scripts import (
    CLAW_BACK,
    CREATE_ORDER,
    CREDIT_PURCHASE,
    RESTORE_PURCHASE,
    Arguments,
    Refusals,
    ScriptRunner,
    outcome,
)

# A payment id claim is kept for as long as a provider may redeliver a webhook (30 days).
PAYMENT_CLAIM_TTL_S = 30 * 86_400
# An order recorded for a payment the provider already took is paid at once: no cap on the
# buyer's pending web orders may refuse it.
NO_PENDING_CAP = 2**31


@dataclass(frozen=True)
class PaymentOutcome:
    """What a verified ``payment.succeeded`` webhook did: ``credited`` is False on redelivery."""

    order_id: str
    user_id: str
    credited: bool
    balance: int | None
    coins: int = 0  # the coins credited now (0 on redelivery)


@dataclass(frozen=True)
class ClawbackOutcome:
    """What a verified refund or dispute did: ``applied`` is False on redelivery."""

    order_id: str
    user_id: str
    applied: bool
    balance: int | None
    coins_spent: int
    gifts_queued: int


@dataclass(frozen=True)
class RestoreOutcome:
    """What a verified refund reversal did: ``restored`` is False if the order was paid already."""

    order_id: str
    user_id: str
    restored: bool
    balance: int | None
    coins: int = 0


class Payments:
    def __init__(self, redis: Redis, keys: KeySchema, runner: ScriptRunner) -> None:
        self._redis = redis
        self._keys = keys
        self._runner = runner

    async def create_order(
        self,
        user_id: str,
        order_id: str,
        package: Package,
        now_ms: int,
        *,
        ttl_s: int,
        max_pending: int,
        provider: str = "sandbox",
    ) -> dict[str, Any]:
        """A pending order, unless the user already holds ``max_pending`` of them (``Conflict``
        ``too_many_pending_orders``, nothing written). Both its keys expire after ``ttl_s``
        unless it is paid, so unpaid orders cannot pile up; a verified payment keeps them
        (``credit_payment``)."""
        order = new_order(user_id, order_id, package, now_ms, provider)
        reply = await self._runner.call(
            CREATE_ORDER,
            *create_order_arguments(self._keys.user(user_id), order, now_ms, ttl_s, max_pending),
        )
        # ``order_id`` is new, so an order of that id was written by this very call, sent
        # again by the engine client after its first reply was lost: it is this order.
        outcome(
            CREATE_ORDER,
            reply,
            ("ok", "exists"),
            {
                "too_many": lambda reply: Conflict(
                    f"{reply[1]} orders are already waiting for payment, the most one user may "
                    "hold: pay one, or wait for one to expire",
                    code="too_many_pending_orders",
                )
            },
        )
        # The owner pointer, in another slot, is written once the order exists, and expires at
        # the order's expiry by this clock: at or before the hash, which the script wrote after
        # ``now_ms``. Until then a webhook cannot reach the order, whose id nobody knows yet.
        await self._redis.set(self._keys.order_owner(order_id), user_id, pxat=int(reply[1]))
        return _order_view(order)

    async def claim_order(
        self, user_id: str, order_id: str, package: Package, now_ms: int, *, ttl_s: int, provider: str
    ) -> str:
        """The order ``order_id`` (derived from a provider's transaction) for ``user_id``,
        written once by whoever names it first; the id of its owner, another user's if someone
        claimed it before. A second claim by the owner writes nothing: the order, paid or
        not, stays as it is. Until it is paid, it and its owner pointer expire after ``ttl_s``."""
        owner_key = self._keys.order_owner(order_id)
        await self._redis.set(owner_key, user_id, nx=True, ex=ttl_s)
        owner: str | None = await self._redis.get(owner_key)
        if owner is None:  # expired unpaid between the two steps: name it again
            await self._redis.set(owner_key, user_id, nx=True, ex=ttl_s)
            owner = await self._redis.get(owner_key)
        if owner != user_id:
            return owner or ""
        order = new_order(user_id, order_id, package, now_ms, provider)
        reply = await self._runner.call(
            CREATE_ORDER,
            *create_order_arguments(self._keys.user(user_id), order, now_ms, ttl_s, NO_PENDING_CAP),
        )
        outcome(CREATE_ORDER, reply, ("ok", "exists"), {})
        return user_id

    async def get_order(self, user_id: str, order_id: str) -> dict[str, Any]:
        """The order as its owner sees it; ``NotFound`` for anyone else, exactly as for an
        order that does not exist, so an order id tells a stranger nothing."""
        owner = await self._redis.get(self._keys.order_owner(order_id))
        if owner is None or owner != user_id:
            raise NotFound(f"no order {order_id!r}")
        raw = await self._redis.hgetall(self._keys.user(owner).order(order_id))
        if not raw:
            raise NotFound(f"no order {order_id!r}")
        return _order_view(raw)

    async def order_owner(self, order_id: str) -> str | None:
        owner: str | None = await self._redis.get(self._keys.order_owner(order_id))
        return owner

    async def owner_of(self, order_id: str) -> str:
        """The owner of ``order_id``; ``NotFound`` if there is no such order."""
        owner = await self.order_owner(order_id)
        if owner is None:
            raise NotFound(f"no order {order_id!r}")
        return owner

    async def order_for_payment(self, payment_id: str) -> str | None:
        """The order a provider's payment id was claimed for (``credit_payment``), None if no
        payment webhook for it has been processed (or its claim outlived, 30 days)."""
        order_id: str | None = await self._redis.get(self._keys.payment_claim(payment_id))
        return order_id

    async def order_state(self, order_id: str) -> str | None:
        """The state of ``order_id`` (pending, paid, flagged, refunded, charged_back), None if
        it does not exist (never created, or expired unpaid)."""
        owner = await self.order_owner(order_id)
        if owner is None:
            return None
        state: str | None = await self._redis.hget(self._keys.user(owner).order(order_id), "state")
        return state

    async def credit_payment(
        self, provider: str, order_id: str, payment_id: str, amount_minor: int, currency: str, now_ms: int
    ) -> PaymentOutcome:
        """Credit ``order_id``'s coins once, for ``payment_id`` taken by ``provider``."""
        owner = await self.owner_of(order_id)
        # A verified payment makes the order part of the books: its owner pointer must outlive
        # the order's lifetime, for refunds and disputes (credit_purchase.lua keeps the order).
        await self._redis.persist(self._keys.order_owner(order_id))
        # A provider payment id pays one order only; the claim routes redeliveries to the same one.
        claim = self._keys.payment_claim(payment_id)
        # Whether this call makes the claim is read before it: its ``SET NX``, sent again after
        # a lost reply, would answer as if another call had made it. A redelivery finds it made.
        claimed_for = await self._redis.get(claim)
        claimed_now = claimed_for is None
        if claimed_now:
            # ``GET``: the claim a concurrent call made first, or None if this one made it.
            taken = await self._redis.set(claim, order_id, nx=True, ex=PAYMENT_CLAIM_TTL_S, get=True)
            claimed_for = taken or order_id
        if claimed_for != order_id:
            raise Conflict(
                f"payment {payment_id!r} already paid order {claimed_for!r}", code="payment_reused"
            )
        reply = await self._runner.call(
            CREDIT_PURCHASE,
            *credit_purchase_arguments(
                self._keys.user(owner), order_id, payment_id, amount_minor, currency, now_ms, provider
            ),
        )
        if reply[0] == "wrong_provider":
            # Nothing of this payment stays: the order keeps its lifetime, the payment id is free.
            ttl_ms = int(reply[2])
            if ttl_ms > 0:
                await self._redis.pexpire(self._keys.order_owner(order_id), ttl_ms)
            if claimed_now:
                await self._redis.delete(claim)
            raise Conflict(
                f"order {order_id!r} is paid through {reply[1]}, not {provider}; nothing credited",
                code="provider_mismatch",
            )
        refusals: Refusals = {
            "mismatch": lambda _: Conflict(
                f"payment of {amount_minor} {currency} does not match order {order_id!r}; "
                "the order is flagged for review and no coins were credited",
                code="amount_mismatch",
            ),
            "flagged": lambda reply: Conflict(
                f"order {order_id!r} is flagged ({reply[1]}); no coins credited",
                code="order_flagged",
            ),
            "unknown": lambda _: NotFound(f"no order {order_id!r}"),
        }
        if outcome(CREDIT_PURCHASE, reply, ("ok", "already"), refusals)[0] == "ok":
            return PaymentOutcome(order_id, owner, credited=True, balance=int(reply[1]), coins=int(reply[2]))
        if reply[1] != payment_id:
            raise Conflict(
                f"order {order_id!r} was already paid by payment {reply[1]!r}",
                code="order_already_paid",
            )
        return PaymentOutcome(order_id, owner, credited=False, balance=None)

    async def claw_back(
        self, order_id: str, payment_id: str, reason: str, now_ms: int, window_ms: int
    ) -> ClawbackOutcome:
        """Take a refunded or charged-back purchase's coins back, once, and queue the reversal
        of the buyer's gifts of the last ``window_ms`` that it takes (see claw_back.lua)."""
        owner = await self.owner_of(order_id)
        reply = await self._runner.call(
            CLAW_BACK,
            *claw_back_arguments(self._keys.user(owner), order_id, payment_id, reason, now_ms, window_ms),
        )
        refusals: Refusals = {
            "not_paid": lambda reply: Conflict(
                f"order {order_id!r} is {reply[1]}: there are no coins to take back", code="order_not_paid"
            ),
            **_paid_order_refusals(order_id, payment_id),
        }
        if outcome(CLAW_BACK, reply, ("ok", "already"), refusals)[0] == "ok":
            return ClawbackOutcome(order_id, owner, True, int(reply[1]), int(reply[2]), int(reply[3]))
        return ClawbackOutcome(order_id, owner, False, None, 0, 0)

    async def restore(self, order_id: str, payment_id: str, now_ms: int) -> RestoreOutcome:
        """Put back the coins of ``order_id``, refunded, once the provider reversed the refund."""
        owner = await self.owner_of(order_id)
        reply = await self._runner.call(
            RESTORE_PURCHASE,
            *restore_purchase_arguments(self._keys.user(owner), order_id, payment_id, now_ms),
        )
        refusals: Refusals = {
            "not_refunded": lambda reply: Conflict(
                f"order {order_id!r} is {reply[1]}: there is no refund to reverse", code="order_not_refunded"
            ),
            **_paid_order_refusals(order_id, payment_id),
        }
        if outcome(RESTORE_PURCHASE, reply, ("ok", "already"), refusals)[0] == "ok":
            return RestoreOutcome(order_id, owner, True, int(reply[1]), int(reply[2]))
        return RestoreOutcome(order_id, owner, False, None)


def new_order(user_id: str, order_id: str, package: Package, now_ms: int, provider: str) -> dict[str, Any]:
    """The fields of a pending order for ``package``, paid through ``provider``."""
    return {
        "order_id": order_id,
        "user_id": user_id,
        "package_id": package.id,
        "region": package.region,
        "coins": package.coins,
        "amount_minor": package.amount_minor,
        "currency": package.currency,
        "state": "pending",
        "created_ms": now_ms,
        "provider": provider,
    }


def _paid_order_refusals(order_id: str, payment_id: str) -> Refusals:
    """What a script acting on a paid order's payment refuses alike (claw_back, restore)."""
    return {
        "wrong_payment": lambda reply: Conflict(
            f"order {order_id!r} was paid by payment {reply[1]!r}, not {payment_id!r}",
            code="payment_mismatch",
        ),
        "unknown": lambda _: NotFound(f"no order {order_id!r}"),
    }


def create_order_arguments(
    user: UserKeys, order: dict[str, Any], now_ms: int, ttl_s: int, max_pending: int
) -> Arguments:
    """KEYS and ARGV of ``create_order.lua``."""
    order_id = order["order_id"]
    fields = [x for item in order.items() for x in item]
    return [user.order(order_id), user.pending_orders], [order_id, now_ms, ttl_s * 1000, max_pending, *fields]


def credit_purchase_arguments(
    user: UserKeys,
    order_id: str,
    payment_id: str,
    amount_minor: int,
    currency: str,
    now_ms: int,
    provider: str = "sandbox",
) -> Arguments:
    """KEYS and ARGV of ``credit_purchase.lua``, with a new id for this call."""
    return [user.order(order_id), user.wallet, user.ledger, user.pending_orders], [
        payment_id,
        amount_minor,
        currency,
        now_ms,
        order_id,
        provider,
        new_id("credit"),
    ]


def claw_back_arguments(
    user: UserKeys, order_id: str, payment_id: str, reason: str, now_ms: int, window_ms: int
) -> Arguments:
    """KEYS and ARGV of ``claw_back.lua``, with a new id for this call."""
    return (
        [user.order(order_id), user.wallet, user.ledger, user.reversals, user.clawable],
        [reason, payment_id, now_ms, order_id, window_ms, new_id("claw")],
    )


def restore_purchase_arguments(user: UserKeys, order_id: str, payment_id: str, now_ms: int) -> Arguments:
    """KEYS and ARGV of ``restore_purchase.lua``, with a new id for this call."""
    return [user.order(order_id), user.wallet, user.ledger], [payment_id, now_ms, order_id, new_id("restore")]


def _order_view(raw: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "order_id": raw["order_id"],
        "package_id": raw["package_id"],
        "region": raw["region"],
        "coins": int(raw["coins"]),
        "price": {"amount_minor": int(raw["amount_minor"]), "currency": raw["currency"]},
        "state": raw["state"],
        "created_ms": int(raw["created_ms"]),
        "provider": raw.get("provider", "sandbox"),
    }
    if "payment_id" in raw:
        view["payment_id"] = raw["payment_id"]
    if "flag" in raw:
        view["flag"] = raw["flag"]
    if "clawed_back_ms" in raw:
        view["clawed_back_ms"] = int(raw["clawed_back_ms"])
    if "restored_ms" in raw:
        view["restored_ms"] = int(raw["restored_ms"])
    return view
