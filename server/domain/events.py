"""Room events: stream offsets, and how an entry of a room's stream becomes what clients see.

The stream holds ``gift``, ``combo_end``, ``chat``, ``chat_deleted``, ``follow``, ``share``,
``battle`` (a battle's start) and ``battle_end``, ``room_end``, ``test_alert`` (for overlays
only), the internal ``goal_set`` marker and the
``ban``, ``unban`` and ``overlay_revoked`` markers each hub acts on (closing a banned user's
connections, or the overlays opened with a replaced token), shown to no one. It also holds each hub
process's per-tick like and join ``tally``, which is room state rather than log: never replayed,
each hub turns the tallies of a tick into ``likes`` and ``joins`` events (``domain.likes``).
The ``leaderboard``, ``goal``, ``viewers`` and ``followers`` events are not stored: each hub
derives them from the room's state when it changes (see ``hub.room``), and the ``battle``
events of a running battle's new scores from the battle's record (``hub.hub``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from server.domain.likes import TallyEntry
from server.errors import InvalidRequest

Offset = tuple[int, int]
ZERO_OFFSET = "0-0"
# ASCII digits only, the whole string (no trailing newline), and at most 19 digits a part
# so that every offset accepted is one the engine takes (its parts are 64-bit unsigned).
_OFFSET_RE = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")


def parse_offset(raw: str, what: str = "offset") -> Offset:
    """A stream offset such as ``1732550000000-3`` as a comparable pair."""
    match = _OFFSET_RE.fullmatch(raw)
    if match is None:
        raise InvalidRequest(f"{what} must be a stream offset such as 1732550000000-0, got {raw[:40]!r}")
    return int(match[1]), int(match[2])


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """One stream entry, parsed once per hub process and shared by every connection."""

    offset: str
    kind: str
    ts: int
    public: dict[str, Any] | None
    sender_id: str | None = None
    gift_id: str | None = None
    balance: int | None = None
    overlay_only: bool = False
    tally: TallyEntry | None = None
    # An overlay_revoked marker's fingerprint of the replaced overlay token.
    revoked_overlay: str | None = None


def parse_entry(entry_id: str, fields: dict[str, str]) -> RoomEvent:
    kind = fields.get("t", "")
    ts = int(fields.get("ts", "0"))
    if kind == "gift":
        sender = fields["s"]
        balance = fields.get("b")
        return RoomEvent(
            offset=entry_id,
            kind=kind,
            ts=ts,
            public={
                "type": "gift",
                "event_id": fields["e"],
                "sender": {"id": sender, "name": fields["n"]},
                "gift_id": fields["g"],
                "count": int(fields["c"]),
                "combo": int(fields["k"]),
                "ts": ts,
            },
            sender_id=sender,
            gift_id=fields["g"],
            balance=int(balance) if balance else None,
        )
    if kind == "combo_end":
        sender = fields["s"]
        return RoomEvent(
            offset=entry_id,
            kind=kind,
            ts=ts,
            public={
                "type": "combo_end",
                "sender": {"id": sender, "name": fields["n"]},
                "gift_id": fields["g"],
                "combo": int(fields["k"]),
                "ts": ts,
            },
            sender_id=sender,
            gift_id=fields["g"],
        )
    if kind == "test_alert":
        # A creator's "test alert" button: shown on the creator's overlays, never to viewers.
        return RoomEvent(
            offset=entry_id,
            kind=kind,
            ts=ts,
            public={
                "type": "test_alert",
                "sender": {"id": "test-viewer", "name": "Test Viewer"},
                "gift_id": "rose",
                "combo": 5,
                "ts": ts,
            },
            overlay_only=True,
        )
    if kind == "chat":
        sender = fields["s"]
        badges = fields.get("bd", "")
        return RoomEvent(
            offset=entry_id,
            kind=kind,
            ts=ts,
            public={
                "type": "chat",
                "event_id": fields["e"],
                "sender": {"id": sender, "name": fields["n"], "badges": badges.split(",") if badges else []},
                "text": fields["x"],
                "ts": ts,
            },
            sender_id=sender,
        )
    if kind in ("follow", "share"):
        # Announced once per user per live (room_follow.lua, room_share.lua).
        sender = fields["s"]
        return RoomEvent(
            offset=entry_id,
            kind=kind,
            ts=ts,
            public={"type": kind, "sender": {"id": sender, "name": fields["n"]}, "ts": ts},
            sender_id=sender,
        )
    if kind in ("battle", "battle_end"):
        # A battle's start and its end in one of its rooms, written whole (room_battle.lua).
        return RoomEvent(offset=entry_id, kind=kind, ts=ts, public=orjson.loads(fields["j"]))
    if kind == "room_end":
        return RoomEvent(offset=entry_id, kind=kind, ts=ts, public={"type": "room_end", "ts": ts})
    if kind == "chat_deleted":
        # The message itself left the stream in the same step (chat_delete.lua).
        public = {"type": "chat_deleted", "event_id": fields["e"]}
        return RoomEvent(offset=entry_id, kind=kind, ts=ts, public=public)
    if kind in ("ban", "unban"):
        return RoomEvent(offset=entry_id, kind=kind, ts=ts, public=None, sender_id=fields["u"])
    if kind == "overlay_revoked":
        return RoomEvent(offset=entry_id, kind=kind, ts=ts, public=None, revoked_overlay=fields["u"])
    if kind == "tally":
        return RoomEvent(offset=entry_id, kind=kind, ts=ts, public=None, tally=TallyEntry.from_fields(fields))
    # goal_set and anything a newer server may add: a cue to refresh state, not shown as is.
    return RoomEvent(offset=entry_id, kind=kind, ts=ts, public=None)
