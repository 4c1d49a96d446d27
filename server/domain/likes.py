"""Likes and joins apart from any I/O: the per-user like rate, one process's tally of a room's
tick, and how the tallies of every process read in one tick become the ``likes`` and
``joins`` events.

A tally is what one hub process saw of one room during one tick: the likes it accepted (by
user) and the room sockets opened. ``room_likes.lua`` writes it as one ``tally`` entry of
the room's stream; every hub reads those entries like any other and turns the ones of a
tick into at most one ``likes`` and one ``joins`` event (``tick_events``). A room holds its
``joins`` events until its next presence update, merged into one (``merge_joins``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# The most taps one like frame or request may carry.
MAX_LIKES_PER_FRAME = 15
# The likers a ``likes`` event names, and the joiners a ``joins`` event names.
TOP_LIKERS = 5
NAMED_JOINS = 10


@dataclass(slots=True)
class LikeBucket:
    """One user's likes in one room: a token bucket of ``rate`` tokens a second, holding at
    most ``rate``."""

    tokens: float
    at: float  # time.monotonic() of the last take

    def take(self, wanted: int, rate: int, now: float) -> int:
        """How many of ``wanted`` likes the rate allows now (the rest are dropped)."""
        self.tokens = min(float(rate), self.tokens + (now - self.at) * rate)
        self.at = now
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted

    def full(self, rate: int, now: float) -> bool:
        return self.tokens + (now - self.at) * rate >= rate


@dataclass(slots=True)
class Tally:
    """One process's likes and joins in one room since its last flush."""

    likes: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    joins: int = 0
    joiners: dict[str, str] = field(default_factory=dict)

    def like(self, user_id: str, name: str, count: int) -> None:
        self.likes[user_id] = self.likes.get(user_id, 0) + count
        self.names[user_id] = name

    def join(self, user_id: str, name: str) -> None:
        self.joins += 1
        if len(self.joiners) < NAMED_JOINS:
            self.joiners.setdefault(user_id, name)

    @property
    def total_likes(self) -> int:
        return sum(self.likes.values())

    def top(self) -> list[list[Any]]:
        """The biggest likers as ``[id, name, count]``, most likes first."""
        ranked = sorted(self.likes.items(), key=lambda item: (-item[1], item[0]))[:TOP_LIKERS]
        return [[user_id, self.names[user_id], count] for user_id, count in ranked]


@dataclass(frozen=True, slots=True)
class TallyEntry:
    """A ``tally`` entry of the room's stream, as written by ``room_likes.lua``."""

    likes: int
    total: int
    top: list[tuple[str, str, int]]
    joins: int
    joiners: list[tuple[str, str]]

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> TallyEntry:
        return cls(
            likes=int(fields.get("l", "0")),
            total=int(fields.get("lt", "0")),
            top=[(str(i), str(n), int(c)) for i, n, c in orjson.loads(fields.get("lp") or "[]")],
            joins=int(fields.get("j", "0")),
            joiners=[(str(i), str(n)) for i, n in orjson.loads(fields.get("jn") or "[]")],
        )


def tick_events(entries: list[TallyEntry]) -> list[dict[str, Any]]:
    """The ``likes`` and ``joins`` events for the tally entries read in one tick (from any
    number of processes): the like total after the last of them, the tick's biggest likers
    over all of them, and the joins counted and the first joiners named."""
    events: list[dict[str, Any]] = []
    liked = [entry for entry in entries if entry.likes]
    if liked:
        counts: dict[str, int] = {}
        names: dict[str, str] = {}
        for entry in liked:
            for user_id, name, count in entry.top:
                counts[user_id] = counts.get(user_id, 0) + count
                names[user_id] = name
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_LIKERS]
        events.append(
            {
                "type": "likes",
                # Stream order is the order the totals were written in: the last is the largest.
                "total": liked[-1].total,
                "top": [{"id": user_id, "name": names[user_id], "count": count} for user_id, count in ranked],
            }
        )
    joins = sum(entry.joins for entry in entries)
    if joins:
        named: dict[str, str] = {}
        for entry in entries:
            for user_id, name in entry.joiners:
                if len(named) < NAMED_JOINS:
                    named.setdefault(user_id, name)
        events.append(
            {
                "type": "joins",
                "count": joins,
                "users": [{"id": user_id, "name": name} for user_id, name in named.items()],
            }
        )
    return events


def merge_joins(held: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """One ``joins`` event for ``held`` and the ``new`` one after it: the joins counted, and
    the first of their joiners named (up to NAMED_JOINS)."""
    if held is None:
        return new
    named = {user["id"]: user for user in held["users"]}
    for user in new["users"]:
        if len(named) >= NAMED_JOINS:
            break
        named.setdefault(user["id"], user)
    return {"type": "joins", "count": held["count"] + new["count"], "users": list(named.values())}
