"""Money rules: what a gift costs, what the creator earns, and which day a budget counts."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from server.domain.catalog import Gift

MIN_COUNT = 1
MAX_COUNT = 999
MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class GiftPrice:
    """What one gift request costs the sender and earns the creator, at ``share``."""

    coins: int
    diamonds: int
    share: Fraction


def price_gift(gift: Gift, count: int, creator_share: Fraction) -> GiftPrice:
    """Coins are ``gift.coins * count``; the creator gets ``floor(coins * share)`` diamonds."""
    if not MIN_COUNT <= count <= MAX_COUNT:
        raise ValueError(f"count must be between {MIN_COUNT} and {MAX_COUNT}")
    coins = gift.coins * count
    return GiftPrice(coins=coins, diamonds=diamonds_for(coins, creator_share), share=creator_share)


def diamonds_for(coins: int, creator_share: Fraction) -> int:
    """The creator's share of ``coins``, rounded down in exact arithmetic (never a float)."""
    return coins * creator_share.numerator // creator_share.denominator


def utc_day(now_ms: int) -> int:
    """The UTC day number (days since 1970-01-01) a daily budget counts against."""
    return now_ms // MS_PER_DAY


def gift_fingerprint(room_id: str, gift_id: str, count: int) -> str:
    """What an idempotency key is bound to: the same key must always mean the same gift."""
    return f"{room_id}|{gift_id}|{count}"


def diamonds_value_minor(diamonds: int, millicents_per_diamond: int) -> int:
    """The cash value of ``diamonds`` in minor units (cents), rounded down.

    A diamond is worth ``millicents_per_diamond`` thousandths of a cent (500: half a cent).
    """
    return diamonds * millicents_per_diamond // 1000
