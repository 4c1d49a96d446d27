"""One live room as a hub process sees it: its local connections and what they were last sent.

A ``LocalRoom`` collects the room's new stream events between ticks and, at each tick (or
at once, for a quiet room's first event: ``Hub._between_ticks``), turns them and any change
of state into one ``batch`` message, encoded once per subprotocol in use and written as the
same bytes to every connection. A resuming
connection is written its own ``catch_up_frames`` first, and joins those batches only once
it has been sent everything up to the room's cursor.

Presence, the viewer count and the joins, changes with every connection that opens or
closes: in a reconnect storm, every tick. So it goes out at most once per presence interval
(``GIFTING_PRESENCE_INTERVAL_MS``), in the batch that goes anyway if there is one, in a batch
of its own otherwise: what changes meanwhile is held, the joins merged into one event
(``presence_events``). Every other event goes out as it comes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from server import metrics
from server.domain.events import RoomEvent, parse_offset
from server.domain.likes import merge_joins, tick_events
from server.hub.outlet import GiftingWebSocketProtocol
from server.hub.protocol import encode
from server.store.chat import RECENT_CHAT
from server.store.records import Room, RoomState

RECENT_GIFTS = 20
# A batch's writes give the event loop a turn at least this often (seconds): a gift frame read
# meanwhile waits for one slice of a room's writes, not for the whole room.
BROADCAST_SLICE_S = 0.001
# How many connections are written between looks at the clock.
BROADCAST_CHECK_EVERY = 16
# What a batch frame adds to its events: the frame header, its type and offset fields.
BATCH_OVERHEAD = 64


@dataclass(eq=False, slots=True)
class Viewer:
    """One WebSocket connection in a room."""

    outlet: GiftingWebSocketProtocol
    user_id: str
    name: str
    encoding: str
    room_id: str
    overlay: bool = False
    # An overlay's token fingerprint (store.overlays.fingerprint): what a revocation names.
    overlay_key: str = ""

    def send(self, message: dict[str, Any]) -> bool:
        frame = encode(message, self.encoding)
        if not self.outlet.write(frame):
            return False
        metrics.frames_sent(1, len(frame))
        return True


@dataclass(eq=False)
class LocalRoom:
    room: Room
    state: RoomState
    cursor: str  # offset of the last event written to this room's connections
    read_cursor: str  # offset of the last event read from the stream (>= cursor)
    viewers: set[Viewer] = field(default_factory=set)
    by_audience: dict[tuple[str, bool], set[Viewer]] = field(default_factory=dict)
    pending: list[RoomEvent] = field(default_factory=list)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_GIFTS))
    # The live's last chat messages up to the cursor, for the welcome.
    chat: deque[RoomEvent] = field(default_factory=lambda: deque(maxlen=RECENT_CHAT))
    ended: bool = False
    likes: int = 0  # the like total as of the last tally read
    # Resuming connections still being written the events they missed: no batches yet.
    catching_up: set[Viewer] = field(default_factory=set)
    # Users a ban marker of this live named and no unban since: a connection that checked
    # the ban before it and joins after it is refused all the same.
    banned: set[str] = field(default_factory=set)
    # Overlay tokens (fingerprints) an overlay_revoked marker of this live named: an overlay
    # that checked its token before the marker and joins after it is refused all the same.
    revoked_overlays: set[str] = field(default_factory=set)
    # The room's running battle and the last ``battle`` event its connections were sent.
    battle_id: str | None = None
    battle: dict[str, Any] | None = None
    # When its last batch was written (monotonic seconds); whether that was between ticks (a
    # quiet room's); and whether a read has found nothing new since, long enough after it
    # that its next event goes out at once.
    sent_at: float = -math.inf
    sent_between_ticks: bool = False
    quiet: bool = False
    # Whether its last batch needed its state read: the next tick reads it with the streams.
    cued: bool = False
    # When presence last went out (monotonic seconds); the viewer count it showed; whether a
    # connection was shown another count on its own since (a welcome, a catch-up's end); and
    # the joins held since, as one event.
    presence_at: float = -math.inf
    viewers_shown: int = field(init=False)
    presence_stale: bool = False
    held_joins: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.viewers_shown = self.state.viewers

    def add(self, viewer: Viewer) -> None:
        self.viewers.add(viewer)
        self.by_audience.setdefault((viewer.encoding, viewer.overlay), set()).add(viewer)

    def add_catching_up(self, viewer: Viewer) -> None:
        """A resuming connection, which gets no batch until ``add`` once it has caught up."""
        self.catching_up.add(viewer)

    def caught_up(self, viewer: Viewer) -> None:
        """A resuming connection sent everything up to the cursor: batches from now on."""
        self.catching_up.discard(viewer)
        self.add(viewer)

    def remove(self, viewer: Viewer) -> bool:
        """Remove a connection; True if it was here."""
        if viewer in self.catching_up:
            self.catching_up.discard(viewer)
            return True
        if viewer not in self.viewers:
            return False
        self.viewers.discard(viewer)
        self.by_audience[(viewer.encoding, viewer.overlay)].discard(viewer)
        return True

    @property
    def vacant(self) -> bool:
        return not self.viewers and not self.catching_up

    @property
    def audience(self) -> int:
        """The viewer count this process reports: connections, overlays excepted."""
        live = sum(len(viewers) for (_, overlay), viewers in self.by_audience.items() if not overlay)
        return live + sum(1 for viewer in self.catching_up if not viewer.overlay)

    def add_events(self, events: list[RoomEvent]) -> None:
        self.pending.extend(events)
        if events:
            self.read_cursor = events[-1].offset
        for event in events:
            if event.kind == "battle" and event.public is not None:
                self.battle_id, self.battle = event.public["battle_id"], event.public
            elif (
                event.kind == "battle_end"
                and event.public is not None
                and event.public["battle_id"] == self.battle_id
            ):
                self.battle_id = self.battle = None

    def battle_events(self, frame: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The ``battle`` event for the running battle's record as read this tick (``frame``),
        if its scores or supporters changed since last sent."""
        if frame is None or frame["battle_id"] != self.battle_id:
            return []
        last = self.battle
        self.battle = frame
        if last is not None and last["sides"] == frame["sides"] and last["ends_at"] == frame["ends_at"]:
            return []
        return [frame]

    def snapshot(self) -> dict[str, Any]:
        return {
            "viewers": self.state.viewers,
            "leaderboard": self.state.leaderboard_list(),
            "goal": self.state.goal_dict(),
            "recent": list(self.recent),
            "likes": self.likes,
            "followers": self.state.followers,
        }

    def recent_chat(self, until: str | None = None) -> list[dict[str, Any]]:
        """The chat messages a welcome carries: the last ones up to the cursor, or up to
        ``until`` for a resume (those after it come in its catch-up)."""
        last = None if until is None else parse_offset(until)
        return [
            event.public
            for event in self.chat
            if event.public is not None and (last is None or parse_offset(event.offset) <= last)
        ]

    def state_events(self, new: RoomState) -> list[dict[str, Any]]:
        """The ``leaderboard``, ``goal`` and ``followers`` events for what changed since last
        sent; the viewer count is presence (``presence_events``)."""
        old, self.state = self.state, new
        return state_changes(old, new, viewers=False)

    def tally_events(self) -> list[dict[str, Any]]:
        """The ``likes`` event of the tallies read this tick (call before ``take_batch``);
        keeps the like total, and holds the ``joins`` for ``presence_events``."""
        events = tick_events([event.tally for event in self.pending if event.tally is not None])
        for event in events:
            if event["type"] == "likes":
                self.likes = event["total"]
            else:
                self.held_joins = merge_joins(self.held_joins, event)
        return [event for event in events if event["type"] == "likes"]

    def showed_viewers(self, count: int) -> None:
        """A connection was shown ``count`` viewers on its own: the next presence update
        brings it the room's count even if its batches' last one is still right."""
        if count != self.viewers_shown:
            self.presence_stale = True

    def presence_events(self, now: float, every_s: float) -> list[dict[str, Any]]:
        """The ``viewers`` and ``joins`` events held, if the last presence update is at least
        ``every_s`` old (call after ``state_events`` and ``tally_events``)."""
        if now < self.presence_at + every_s:
            return []
        events: list[dict[str, Any]] = []
        if self.state.viewers != self.viewers_shown or self.presence_stale:
            events.append({"type": "viewers", "viewers": self.state.viewers})
            self.viewers_shown, self.presence_stale = self.state.viewers, False
        if self.held_joins is not None:
            events.append(self.held_joins)
            self.held_joins = None
        if events:
            self.presence_at = now
        return events

    def take_batch(self, state_events: list[dict[str, Any]]) -> dict[bool, dict[str, Any] | None]:
        """This tick's batch for viewers and for overlays (None where there is nothing to
        send); moves the cursor. Overlays also get the events meant for them alone."""
        for event in self.pending:
            if event.kind == "gift" and event.public is not None:
                self.recent.append(event.public)
            elif event.kind == "chat":
                self.chat.append(event)
            elif event.kind == "chat_deleted" and event.public is not None:
                gone = event.public["event_id"]
                kept = [chat for chat in self.chat if chat.public is None or chat.public["event_id"] != gone]
                if len(kept) != len(self.chat):
                    self.chat = deque(kept, maxlen=RECENT_CHAT)
            elif event.kind == "ban" and event.sender_id is not None:
                self.banned.add(event.sender_id)
            elif event.kind == "unban":
                self.banned.discard(event.sender_id or "")
            elif event.kind == "overlay_revoked" and event.revoked_overlay is not None:
                self.revoked_overlays.add(event.revoked_overlay)
            elif event.kind == "room_end":
                self.ended = True
        batches = {
            overlay: self._batch(
                [e.public for e in self.pending if e.public is not None and (overlay or not e.overlay_only)],
                state_events,
                self.read_cursor,
            )
            for overlay in (False, True)
        }
        self.pending.clear()
        self.cursor = self.read_cursor
        return batches

    def _batch(
        self, events: list[dict[str, Any]], state_events: list[dict[str, Any]], offset: str
    ) -> dict[str, Any] | None:
        # State changes go before a room_end, which is always the last event of a live.
        at = len(events) - 1 if self.ended and events and events[-1]["type"] == "room_end" else len(events)
        events[at:at] = state_events
        if not events:
            return None
        return {"type": "batch", "offset": offset, "events": events}

    async def broadcast(self, batches: dict[bool, dict[str, Any] | None]) -> list[Viewer]:
        """Write each audience its batch, encoded once per subprotocol; returns the
        connections that were dropped as too slow.

        The writes give other tasks a turn every ``BROADCAST_SLICE_S``. A connection added
        meanwhile, to any audience, is not written this batch: the cursor moved before it
        (``take_batch``), so its welcome or catch-up already brought these events; so every
        audience's connections are taken before the first write. One that left meanwhile is
        skipped."""
        dropped: list[Viewer] = []
        turn_at = time.monotonic() + BROADCAST_SLICE_S
        audiences = [
            (encoding, message, viewers, list(viewers))
            for (encoding, overlay), viewers in self.by_audience.items()
            if viewers and (message := batches[overlay]) is not None
        ]
        for encoding, message, viewers, taken in audiences:
            frame = encode(message, encoding)
            written = 0
            for number, viewer in enumerate(taken):
                if number % BROADCAST_CHECK_EVERY == 0 and time.monotonic() >= turn_at:
                    await asyncio.sleep(0)
                    turn_at = time.monotonic() + BROADCAST_SLICE_S
                if viewer.outlet.write(frame):
                    written += 1
                elif viewer in viewers:
                    dropped.append(viewer)
            # Counted per audience, not per write: this loop runs for every connection.
            metrics.frames_sent(written, len(frame))
        return dropped


def state_changes(old: RoomState, new: RoomState, viewers: bool = True) -> list[dict[str, Any]]:
    """The ``leaderboard``, ``goal``, ``viewers`` (unless not ``viewers``) and ``followers``
    events that bring ``old`` to ``new``."""
    events: list[dict[str, Any]] = []
    if new.leaderboard != old.leaderboard:
        events.append({"type": "leaderboard", "leaderboard": new.leaderboard_list()})
    if (new.goal, new.coins) != (old.goal, old.coins):
        events.append({"type": "goal", **new.goal_dict()})
    if viewers and new.viewers != old.viewers:
        events.append({"type": "viewers", "viewers": new.viewers})
    if new.followers != old.followers:
        events.append({"type": "followers", "followers": new.followers})
    return events


def catch_up_frames(events: list[RoomEvent], overlay: bool, encoding: str, most_bytes: int) -> list[bytes]:
    """Missed events as ``batch`` frames in order, each of about ``most_bytes`` at most (an
    event larger than that goes alone) and carrying the offset of its last event."""
    frames: list[bytes] = []
    chunk: list[dict[str, Any]] = []
    size, offset = 0, ""
    budget = most_bytes - BATCH_OVERHEAD
    for event in events:
        if event.public is None or (event.overlay_only and not overlay):
            continue
        weight = len(encode(event.public, encoding))
        if chunk and size + weight > budget:
            frames.append(encode({"type": "batch", "offset": offset, "events": chunk}, encoding))
            chunk, size = [], 0
        chunk.append(event.public)
        size += weight
        offset = event.offset
    if chunk:
        frames.append(encode({"type": "batch", "offset": offset, "events": chunk}, encoding))
    return frames
