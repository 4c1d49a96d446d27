"""Typed values the store returns: plain frozen dataclasses, converted from engine replies."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

import orjson


@dataclass(frozen=True)
class Wallet:
    coins: int
    daily_limit: int | None
    spent_today: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "coins": self.coins,
            "daily_limit": self.daily_limit,
            "spent_today": self.spent_today,
        }


@dataclass(frozen=True)
class Debit:
    """A gift debited (or replayed): the event id, the sender's balance after it, its cost."""

    event_id: str
    coins: int
    cost: int
    replayed: bool
    # The debit's time (engine ms of its ledger entry); None for a replay.
    debit_ms: int | None = None


@dataclass(frozen=True)
class CreatorCredit:
    """What the outbox carries from the sender's slot to the creator's slot for one gift.

    ``share`` is the creator share ``diamonds`` were priced with, credited with them however
    the setting changes before delivery; None in entries written before it was recorded.
    ``debit_ms`` is the debit's time, the engine ms of the sender's ledger entry, which
    ``gift_debit.lua`` adds to the entry (None before the debit, and in older entries): what
    decides whether the gift counts in a battle.
    ``video_id`` names the video of a gift on a video (``room_id`` is then ""); "" for a gift
    in a live, and left out of the JSON then, as in entries written before videos.
    """

    event_id: str
    creator_id: str
    room_id: str
    sender_id: str
    gift_id: str
    count: int
    coins: int
    diamonds: int
    ts: int
    sender_name: str = ""
    share: Fraction | None = None
    debit_ms: int | None = None
    video_id: str = ""

    def to_json(self) -> bytes:
        body: dict[str, Any] = dict(self.__dict__)
        del body["debit_ms"]  # the debit writes its own
        if not self.video_id:
            del body["video_id"]
        if self.share is None:
            del body["share"]
        else:
            body["share"] = f"{self.share.numerator}/{self.share.denominator}"
        return orjson.dumps(body)

    @classmethod
    def from_json(cls, raw: str | bytes) -> CreatorCredit:
        body = orjson.loads(raw)
        if "share" in body:
            body["share"] = Fraction(body["share"])
        return cls(**body)


@dataclass(frozen=True)
class Room:
    room_id: str
    creator_id: str
    title: str
    state: str
    created_ms: int
    ended_ms: int | None
    epoch: str
    # The battle running in this live, if any (``room_battle.lua``).
    battle_id: str | None = None

    @property
    def live(self) -> bool:
        return self.state == "live"

    def to_dict(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "creator_id": self.creator_id,
            "title": self.title,
            "state": self.state,
            "created_ms": self.created_ms,
            "ended_ms": self.ended_ms,
            "epoch": self.epoch,
        }


@dataclass(frozen=True)
class Gifter:
    """One leaderboard row: a sender and the coins they gifted in this live."""

    user_id: str
    name: str
    coins: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.user_id, "name": self.name, "coins": self.coins}


@dataclass(frozen=True)
class RoomState:
    """What changes during a live besides its events: audience, leaderboard, goal and the
    creator's follower count."""

    state: str
    viewers: int
    goal: int | None
    coins: int
    leaderboard: tuple[Gifter, ...]
    followers: int = 0

    def goal_dict(self) -> dict[str, Any]:
        return {"target": self.goal, "progress": self.coins}

    def leaderboard_list(self) -> list[dict[str, Any]]:
        return [gifter.to_dict() for gifter in self.leaderboard]

    @classmethod
    def from_reply(cls, reply: list[str]) -> RoomState | None:
        if not reply or not reply[0]:
            return None
        rows = reply[5:]
        leaderboard = tuple(
            Gifter(rows[i], rows[i + 1], int(float(rows[i + 2]))) for i in range(0, len(rows), 3)
        )
        return cls(
            state=reply[0],
            viewers=int(reply[1]),
            goal=int(reply[2]) if reply[2] else None,
            coins=int(reply[3]),
            leaderboard=leaderboard,
            followers=int(reply[4]),
        )


@dataclass(frozen=True)
class Video:
    """A video a creator published (its media lives at ``url``), with its gifts' coins and its
    top gifters."""

    video_id: str
    creator_id: str
    creator_name: str
    title: str
    url: str
    created_ms: int
    coins: int
    top_gifters: tuple[Gifter, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.video_id,
            "creator": {"id": self.creator_id, "name": self.creator_name},
            "title": self.title,
            "url": self.url,
            "created_ms": self.created_ms,
            "coins": self.coins,
            "top_gifters": [
                {"user_id": g.user_id, "name": g.name, "coins": g.coins} for g in self.top_gifters
            ],
        }


@dataclass(frozen=True)
class Earnings:
    """A creator's diamonds by bucket, per live and per video. ``lifetime`` counts every credit."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "pending",
        "available",
        "reserved",
        "withdrawn",
        "reversed",
        "lifetime",
    )

    pending: int
    available: int
    reserved: int
    withdrawn: int
    reversed: int
    lifetime: int
    lives: dict[str, int]
    videos: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Withdrawal:
    withdrawal_id: str
    creator_id: str
    state: str
    diamonds: int
    amount_minor: int
    currency: str
    requested_ms: int
    decided_ms: int | None
    decided_by: str | None
    note: str

    @classmethod
    def from_hash(cls, creator_id: str, raw: dict[str, str]) -> Withdrawal:
        return cls(
            withdrawal_id=raw["id"],
            creator_id=creator_id,
            state=raw["state"],
            diamonds=int(raw["diamonds"]),
            amount_minor=int(raw["amount_minor"]),
            currency=raw["currency"],
            requested_ms=int(raw["requested_ms"]),
            decided_ms=int(raw["decided_ms"]) if "decided_ms" in raw else None,
            decided_by=raw.get("decided_by"),
            note=raw.get("note", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "withdrawal_id": self.withdrawal_id,
            "creator_id": self.creator_id,
            "state": self.state,
            "diamonds": self.diamonds,
            "amount": {"amount_minor": self.amount_minor, "currency": self.currency},
            "requested_ms": self.requested_ms,
            "decided_ms": self.decided_ms,
            "decided_by": self.decided_by,
            "note": self.note,
        }


def ledger_entry(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A ledger stream entry as JSON-ready data: numeric fields become ints."""
    out: dict[str, Any] = {"id": entry_id}
    for name, value in fields.items():
        out[name] = int(value) if name in _INT_FIELDS else value
    return out


_INT_FIELDS = frozenset(
    {
        "delta",
        "balance",
        "ts",
        "count",
        "coins",
        "pending",
        "available",
        "reserved",
        "withdrawn",
        "reversed",
        "amount_minor",
        "gifts",
    }
)
