"""The hub: every live room with connections in this process, fed from the rooms' streams.

One task per process runs the tick loop:

1. one ``XREAD`` for all local rooms collects new room events, whichever process published
   them (on a cluster: the rooms woken since the last read, ``store.wakeups``);
2. one pipelined ``room_state.lua`` call per room that needs it refreshes the leaderboard,
   goal and viewer count, and reports this process's viewers (expiring presence); a room
   whose last batch needed it (a busy room) has it read in the same round trip as the
   ``XREAD``, after it (``Rooms.read_with_states``), and so has every running battle of
   the local rooms (``battle_state.lua``), for the rooms' ``battle`` events;
3. every room with something new gets one ``batch`` frame, encoded once per subprotocol
   and written to all its connections (``LocalRoom.broadcast``);
4. combos whose sender stopped are closed (``combo_expire.lua``, exactly once overall);
5. before the read, one pipelined ``room_likes.lua`` call per room with likes or joins
   accepted here since the last tick writes them (``hub.likes``); every hub turns the
   ``tally`` entries it reads into the room's ``likes`` event, and holds the joins for the
   room's next presence update: the viewer count and the joins go out at most once per
   ``GIFTING_PRESENCE_INTERVAL_MS`` (``LocalRoom.presence_events``);
6. the connection slots of the per-user connection limit are kept alive with the presence
   heartbeat, and those of closed connections freed (``hub.slots``).
7. a ``ban`` marker in a room's log closes the banned user's connections in the room, on
   every process that reads it (close 4403, ``store.moderation``); an ``overlay_revoked``
   marker closes the overlays opened with the replaced token (close 4401,
   ``store.overlays``).

Between ticks the hub reads the quiet rooms, those that have sent nothing for half a tick
and had nothing new since, and sends a quiet room's first event at once, in a batch of its
own (``_between_ticks``): a gift to a quiet room is not held for the next tick, and batching
takes over as the rate rises. What follows such a batch within half a tick goes half a tick
after it, unless the tick comes first (in a room in a battle, with the tick and its scores).

While sockets are waiting to join (``joining``), a tick that overran its period is followed by
a pause four times as long, so that the ticks take at most a fifth of the event loop
(``JOINING_SHARE``); the pause ends early once no socket is joining. When a restarted process's
viewers come back, the ticks to those already back would otherwise take nearly all of it, and
the rest would join at a trickle.

So the engine sees a constant number of calls per tick and room, whatever the number of
viewers, and a viewer receives at most two batches in a tick (one a tick under load),
whatever the gift rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any

from server import metrics
from server.domain.catalog import Catalog
from server.domain.combos import ComboWatch
from server.domain.events import RoomEvent, parse_entry, parse_offset
from server.errors import Conflict, EngineUnavailable, InvalidRequest
from server.hub.likes import LikeTallies
from server.hub.protocol import Close, error_frame
from server.hub.room import LocalRoom, Viewer, catch_up_frames, state_changes
from server.hub.slots import ConnectionSlots
from server.settings import Settings
from server.store import ENGINE_ERRORS, Store
from server.store.battles import Battle
from server.store.moderation import banned_error
from server.store.overlays import overlay_revoked_error
from server.store.records import RoomState
from server.store.rooms import StreamWindow
from server.store.topology import StreamEntry

log = logging.getLogger(__name__)

READ_COUNT = 1_000
SNAPSHOT_ENTRIES = 200
# Stream entries read at a time for a resuming connection.
CATCH_UP_PAGE = 500
# Catch-up pages kept for the connections resuming from the same offsets.
CATCH_UP_PAGES_KEPT = 64
# How long a resuming client waits for this process to catch up with the offset it brings.
CATCH_UP_S = 2.0
# Room events after which the room's state is read again at once (a follow's count with it;
# an unfollow's shows at the next presence heartbeat).
STATE_CUES = ("gift", "goal_set", "follow")
# A room whose last frame is this share of a tick old, and that has had nothing new since,
# is quiet: its next event is sent at once rather than at the next tick.
QUIET_TICKS = 0.5
# The share of the event loop the ticks may take while sockets are waiting to join.
JOINING_SHARE = 1 / 5
# How often a cluster, whose stream reads do not block, looks for a quiet room's wake-up.
QUIET_POLL_S = 0.005
# The WebSocket close code for an unexpected server error.
SERVER_ERROR = 1011


@dataclass
class CatchUpPage:
    """One page of a room's log for resuming connections: its events, the stream's window
    just after the read, where the next page starts, and its frames by (overlay, encoding,
    frame size), each encoded once. A page short of ``CATCH_UP_PAGE`` events ended at the
    room's cursor of its read, and its ``next_after`` is that cursor."""

    events: list[RoomEvent]
    window: StreamWindow
    next_after: str
    battle: bool
    frames: dict[tuple[bool, str, int], list[bytes]] = field(default_factory=dict)

    def outgrown(self, until: str) -> bool:
        """Whether a read up to ``until`` now would hold more: the page is short, and the
        room's cursor has moved past where it ended."""
        return len(self.events) < CATCH_UP_PAGE and parse_offset(self.next_after) < parse_offset(until)

    def frames_for(self, overlay: bool, encoding: str, most_bytes: int) -> list[bytes]:
        key = (overlay, encoding, most_bytes)
        frames = self.frames.get(key)
        if frames is None:
            frames = self.frames[key] = catch_up_frames(self.events, overlay, encoding, most_bytes)
        return frames


@dataclass(frozen=True, slots=True)
class BanCheck:
    """Whether a room's creator banned a user, asked while this process served the room."""

    room: LocalRoom
    answer: asyncio.Future[bool]


def _kept(page: asyncio.Future[CatchUpPage]) -> bool:
    """Whether a page's read is done and gave the page."""
    return page.done() and not page.cancelled() and page.exception() is None


async def _no_slot() -> None:
    return None


async def _slot_taken(opened: Awaitable[int], slot: str) -> str:
    await opened
    return slot


class Hub:
    def __init__(self, store: Store, catalog: Catalog, settings: Settings) -> None:
        self.store = store
        self.catalog = catalog
        self.settings = settings
        self.node_id = f"n_{secrets.token_hex(6)}"
        self.rooms: dict[str, LocalRoom] = {}
        self.by_user: dict[str, set[Viewer]] = {}
        self.combos = ComboWatch(settings.combo_window_ms)
        self.slots = ConnectionSlots(self.node_id, settings.connection_slot_ttl_s / 3)
        self.likes = LikeTallies(store, self.node_id, settings.like_rate_per_s)
        self._slot_sync: asyncio.Task[None] | None = None
        self._opening: dict[str, asyncio.Future[LocalRoom]] = {}
        self._catching_up: dict[Viewer, asyncio.Task[None]] = {}
        self._pages: OrderedDict[tuple[str, str, str], asyncio.Future[CatchUpPage]] = OrderedDict()
        self._presence_changed: set[str] = set()
        self._vacated: set[str] = set()
        self._next_presence = 0.0
        self._progress = asyncio.Condition()
        self._wake = asyncio.Event()
        self._joining = 0  # sockets between their handshake and their join
        self._none_joining = asyncio.Event()
        self._none_joining.set()

    # -- connections -------------------------------------------------------------------

    @contextlib.contextmanager
    def joining(self) -> Iterator[None]:
        """A socket between its handshake and its join: while any is, the ticks leave most of
        the event loop to them (``run``)."""
        self._joining += 1
        self._none_joining.clear()
        try:
            yield
        finally:
            self._joining -= 1
            if not self._joining:
                self._none_joining.set()

    def claim(self, user_id: str) -> Awaitable[str | None]:
        """Take a slot of the user's connection limit, counted across processes. The engine
        call is queued at once, so that it shares one round trip with whatever else this turn
        of the event loop queues (the handshake's address limit). The awaitable gives the slot
        (None when the limit is off), or raises ``TooManyConnections`` if the user holds the
        most already. ``hold`` gives the slot to the connection, and ``leave`` frees it then;
        ``unclaim`` frees one that no connection got."""
        most = self.settings.max_connections_per_user
        if not most:
            return _no_slot()
        slot = self.slots.new_slot()
        return _slot_taken(self.store.limits.open_connection(user_id, slot, most, self._slot_ttl_ms), slot)

    def hold(self, viewer: Viewer, slot: str | None) -> None:
        """Record that ``viewer`` holds the slot ``claim`` took for it."""
        if slot is not None:
            self.slots.hold(viewer.user_id, viewer, slot)

    async def unclaim(self, user_id: str, slot: str) -> None:
        """Free at once a slot ``claim`` took for a connection then refused."""
        await self.store.limits.close_connection(user_id, slot)

    def ban_check(self, room_id: str, user_id: str) -> BanCheck | None:
        """Whether the room's creator banned the user, queued now on the group commit when
        this process serves the room (its creator known without a read), so that it goes out
        with the rest of a handshake's engine calls; None otherwise (``join`` asks then)."""
        room = self.rooms.get(room_id)
        if room is None:
            return None
        return BanCheck(room, self.store.moderation.is_banned(room.room.creator_id, user_id))

    async def join(
        self, viewer: Viewer, since: str | None, epoch: str | None, ban: BanCheck | None = None
    ) -> LocalRoom:
        """Add a connection to its room and send it ``welcome`` (after ``resync`` if it asked
        to resume from where it cannot), then the events it missed, paced to the connection
        (``_catch_up``), before any live batch.

        ``ban``: the answer ``ban_check`` got, which stands while the room it was asked in is
        still served here: a ban since then is in the room's log after its cursor, and the tick
        that reads it closes the connection (``_close_banned``) or refuses it (``room.banned``).
        In a room loaded again since, it is asked again."""
        while True:
            room = await self._local_room(viewer.room_id)
            resume_from = None
            resync_reason = None
            if since is not None:
                try:
                    resume_from = await self._resume_point(room, since, epoch)
                except InvalidRequest as exc:
                    resync_reason = exc.message
            if viewer.overlay:
                banned = False
            elif ban is not None and ban.room is room:
                banned = await ban.answer
            else:
                banned = await self.store.moderation.is_banned(room.room.creator_id, viewer.user_id)
            ban = None
            if self.rooms.get(viewer.room_id, room) is room:
                break
            # Everyone else left while this one was waiting, and the room was reloaded since.
        if room.ended:
            raise Conflict(f"room {viewer.room_id!r} has ended", code="room_ended")
        if banned or (not viewer.overlay and viewer.user_id in room.banned):
            raise banned_error()
        if viewer.overlay and viewer.overlay_key in room.revoked_overlays:
            raise overlay_revoked_error()
        # From here to the end nothing awaits: the welcome is written before any next batch.
        self.rooms[viewer.room_id] = room
        self._wake.set()
        if resume_from is None or parse_offset(resume_from) >= parse_offset(room.cursor):
            room.add(viewer)
        else:
            room.add_catching_up(viewer)
            self._catching_up[viewer] = asyncio.create_task(
                self._catch_up(viewer, room, resume_from, room.state)
            )
        if not viewer.overlay:
            self.by_user.setdefault(viewer.user_id, set()).add(viewer)
            if since is None:  # a resume is the same visit going on
                self.likes.joined(viewer.room_id, viewer.user_id, viewer.name)
        self._presence_changed.add(viewer.room_id)
        self._vacated.discard(viewer.room_id)
        room.showed_viewers(room.state.viewers)
        if resync_reason is not None:
            viewer.send({"type": "resync", "reason": resync_reason})
        viewer.send(
            {
                "type": "welcome",
                "room_id": viewer.room_id,
                "epoch": room.room.epoch,
                # Where this connection's batches go on from: a resume's own offset, so that a
                # client storing it never skips what the catch-up has yet to bring.
                "offset": room.cursor if resume_from is None else resume_from,
                "resumed": resume_from is not None,
                "overlay": viewer.overlay,
                "you": {"id": viewer.user_id, "name": viewer.name},
                "room": room.room.to_dict(),
                "snapshot": room.snapshot(),
                "recent_chat": room.recent_chat(resume_from),
                "battle": room.battle,
            }
        )
        return room

    async def _catch_up(self, viewer: Viewer, room: LocalRoom, after: str, shown: RoomState) -> None:
        """Write a resuming connection the events after ``after``, a page at a time and each
        page once the connection has taken most of the last, then hand it to the room's
        batches; ``shown`` is the state its welcome showed.

        The room goes on meanwhile: pages are read up to the room's cursor, which the tick
        moves, until there is nothing left between them. Then, with no await in between, the
        connection joins the batches, which start after that cursor. So each event reaches
        it once and in order, however long the catch-up. A connection too slow to catch up
        before the room's log is trimmed past it is closed as too slow, like a live one.
        """
        room_id = room.room.room_id
        replayed_battle = False
        try:
            while parse_offset(after) < parse_offset(room.cursor):
                page = await self._page(room_id, room.room.epoch, after, room.cursor)
                if not page.window.covers(parse_offset(after)):
                    viewer.outlet.drop_too_slow()  # trimmed past it before it read that far
                    return
                replayed_battle = replayed_battle or page.battle
                outlet = viewer.outlet
                for frame in page.frames_for(viewer.overlay, viewer.encoding, outlet.page_bytes):
                    if not await outlet.drained() or not outlet.write(frame):
                        return
                    metrics.frames_sent(1, len(frame))
                after = page.next_after
        except ENGINE_ERRORS as exc:
            metrics.engine_error(exc)
            log.warning("resume cut short: engine unavailable (%s)", exc)
            viewer.send(error_frame(EngineUnavailable("the engine is unavailable; retry shortly")))
            viewer.outlet.close(Close.ENGINE_UNAVAILABLE, EngineUnavailable.default_code)
            return
        except Exception:
            log.exception("resume failed")
            viewer.outlet.close(SERVER_ERROR, "server error")
            return
        finally:
            self._catching_up.pop(viewer, None)
        if room.ended:  # its room_end was in the last page
            viewer.outlet.finish(Close.ROOM_ENDED, "the live has ended")
            self.leave(viewer)
            return
        # The state events it missed while catching up, since they are not in the log; and
        # the running battle's scores now, after the start the catch-up replayed.
        changes = state_changes(shown, room.state)
        if replayed_battle and room.battle is not None:
            changes.append(room.battle)
        if changes and not viewer.send({"type": "batch", "offset": room.cursor, "events": changes}):
            return
        room.showed_viewers(room.state.viewers)
        room.caught_up(viewer)

    async def _page(self, room_id: str, epoch: str, after: str, until: str) -> CatchUpPage:
        """The catch-up page of the room's events after ``after`` (up to ``until``, or to where
        a connection resuming from the same offset read it in this tick), read and encoded once
        for every connection resuming from there: after a restart, a room's viewers all come
        back from the offset of its last batch.

        A page kept that ended short of ``until`` is read again, so that a connection arriving
        later takes the room's log in pages as long as it allows, not in the steps in which
        earlier ones chased the cursor (one tick's events each, and every later connection
        took them all). A failed read is not kept."""
        key = (room_id, epoch, after)
        pending = self._pages.get(key)
        if pending is None or (_kept(pending) and pending.result().outgrown(until)):
            pending = asyncio.ensure_future(self._read_page(room_id, after, until))
            self._pages[key] = pending
            self._pages.move_to_end(key)
            if len(self._pages) > CATCH_UP_PAGES_KEPT:
                self._pages.popitem(last=False)
            pending.add_done_callback(lambda done: self._forget_failed_page(key, done))
        return await asyncio.shield(pending)

    def _forget_failed_page(self, key: tuple[str, str, str], done: asyncio.Future[CatchUpPage]) -> None:
        if not _kept(done) and self._pages.get(key) is done:
            del self._pages[key]

    async def _read_page(self, room_id: str, after: str, until: str) -> CatchUpPage:
        entries, window = await self.store.rooms.page(room_id, after, until, CATCH_UP_PAGE)
        events = [parse_entry(entry_id, fields) for entry_id, fields in entries]
        next_after = entries[-1][0] if len(entries) >= CATCH_UP_PAGE else until
        return CatchUpPage(events, window, next_after, any(event.kind == "battle" for event in events))

    async def like(self, user_id: str, name: str, room_id: str, count: int) -> int:
        """Take up to ``count`` likes of the user in a live room, as many as the user's like
        rate allows (the rest are dropped); they reach the room's total at the next tick."""
        room = self.rooms.get(room_id)
        live = not room.ended if room is not None else (await self.store.rooms.get(room_id)).live
        if not live:
            raise Conflict(f"room {room_id!r} has ended", code="room_ended")
        accepted = self.likes.like(user_id, name, room_id, count)
        self._wake.set()
        return accepted

    def leave(self, viewer: Viewer) -> None:
        catching_up = self._catching_up.pop(viewer, None)
        if catching_up is not None:
            catching_up.cancel()
        if self.slots.release(viewer.user_id, viewer):
            self._wake.set()  # the tick frees the slot, even with no room left to serve
        room = self.rooms.get(viewer.room_id)
        if room is not None and room.remove(viewer):
            self._presence_changed.add(viewer.room_id)
            if room.vacant:
                del self.rooms[viewer.room_id]
                self.combos.forget_room(viewer.room_id)
                self._vacated.add(viewer.room_id)
        mine = self.by_user.get(viewer.user_id)
        if mine is not None:
            mine.discard(viewer)
            if not mine:
                del self.by_user[viewer.user_id]

    async def snapshot(self, room_id: str) -> dict[str, Any]:
        """The room as ``GET /v1/rooms/{id}`` shows it: the same snapshot a welcome carries."""
        local = self.rooms.get(room_id)
        if local is None:
            local = await self._load(room_id)
        return {
            **local.room.to_dict(),
            "offset": local.cursor,
            "snapshot": local.snapshot(),
            "battle": local.battle,
        }

    async def _local_room(self, room_id: str) -> LocalRoom:
        room = self.rooms.get(room_id)
        if room is not None:
            return room
        opening = self._opening.get(room_id)
        if opening is None:
            opening = asyncio.get_running_loop().create_future()
            self._opening[room_id] = opening
            try:
                room = await self._load(room_id)
                if room.room.live:
                    self.rooms[room_id] = room
                    self._wake.set()
                opening.set_result(room)
            except Exception as exc:
                opening.set_exception(exc)
                opening.exception()  # retrieved here, so an unawaited failure is not logged
                raise
            except BaseException:
                opening.cancel()
                raise
            finally:
                del self._opening[room_id]
        room = await asyncio.shield(opening)
        if not room.room.live:
            raise Conflict(f"room {room_id!r} has ended", code="room_ended")
        return room

    async def _load(self, room_id: str) -> LocalRoom:
        info, state, offset, entries = await self.store.rooms.snapshot(room_id, SNAPSHOT_ENTRIES)
        room = LocalRoom(room=info, state=state, cursor=offset, read_cursor=offset)
        if info.battle_id is not None:
            battle = (await self.store.battles.states([info.battle_id]))[0]
            if battle is not None and battle.state == "running":
                room.battle_id, room.battle = battle.battle_id, battle.frame()
        # Read after the stream's offset: a tally written in between is counted in the total
        # and read again, and the totals it carries are absolute.
        room.likes = await self.store.likes.total(room_id)
        events = [parse_entry(entry_id, fields) for entry_id, fields in entries]
        self._watch_combos(room_id, events)
        room.recent.extend(event.public for event in events if event.kind == "gift" and event.public)
        cursor = parse_offset(offset)
        chat = [parse_entry(entry_id, fields) for entry_id, fields in await self.store.chat.recent(room_id)]
        room.chat.extend(event for event in chat if parse_offset(event.offset) <= cursor)
        return room

    async def _resume_point(self, room: LocalRoom, since: str, epoch: str | None) -> str:
        """``since`` once this process has delivered that far, or InvalidRequest if what
        follows it cannot be answered exactly (another epoch, an offset out of the stream
        window).

        An offset this process has delivered past is checked against the window its first
        catch-up page was read with (``_page``, which the catch-up then takes as it is): the
        viewers of a restarted process, all resuming from the offsets of the last batches,
        share that read rather than each reading the window. The offset of the room's cursor
        is where its live connections are, and needs no read."""
        if epoch != room.room.epoch:
            raise InvalidRequest(f"epoch {epoch!r} is not the room's current epoch")
        wanted = parse_offset(since, "since")
        resume_from = f"{wanted[0]}-{wanted[1]}"
        cursor = parse_offset(room.cursor)
        if wanted == cursor:
            return resume_from
        if wanted < cursor:
            window = (await self._page(room.room.room_id, room.room.epoch, resume_from, room.cursor)).window
        else:
            window = await self.store.rooms.window(room.room.room_id)
        if not window.covers(wanted):
            raise InvalidRequest("the offset has fallen out of the room's event window")
        if wanted > window.last:
            raise InvalidRequest("the offset is ahead of the room's stream")
        # Another process may have delivered further than this one has read: wait for it.
        deadline = time.monotonic() + CATCH_UP_S
        async with self._progress:
            while parse_offset(room.cursor) < wanted:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise InvalidRequest("the offset is ahead of what this server has delivered")
                try:
                    await asyncio.wait_for(self._progress.wait(), timeout)
                except TimeoutError:
                    continue
        return resume_from

    # -- the tick loop -----------------------------------------------------------------

    async def run(self) -> None:
        tick = self.settings.tick_ms / 1000
        engine_down = False
        while True:
            started = time.monotonic()
            period = tick
            try:
                await self.tick()
                took = time.monotonic() - started
                if self._joining and took > tick:
                    period = took / JOINING_SHARE
                await self._between_ticks(started + tick)
            except ENGINE_ERRORS as exc:
                metrics.engine_error(exc)
                if not engine_down:
                    log.warning("hub paused: engine unavailable (%s)", exc)
                engine_down = True
                await asyncio.sleep(tick)
            except Exception:
                log.exception("hub tick failed")
                await asyncio.sleep(tick)
            else:
                if engine_down:
                    log.warning("hub resumed: engine reachable again")
                engine_down = False
            if not self.rooms and not self._vacated and not self.likes.pending:
                self._wake.clear()
                await self._wake.wait()
            pause = started + period - time.monotonic()
            if period > tick:  # left to the sockets joining, while any is
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._none_joining.wait()
            else:
                await asyncio.sleep(max(0.0, pause))

    async def tick(self) -> None:
        await self.likes.write()  # before the read, which then brings the tallies back
        cursors = {room_id: room.read_cursor for room_id, room in self.rooms.items() if not room.ended}
        # A room whose last batch needed its state read (a gift, a goal, a follow) most likely
        # needs it again: its state is read in the same round trip as the streams, after them.
        ahead = [(room_id, -1) for room_id, room in self.rooms.items() if room.cued and not room.ended]
        # So are the running battles' records: a gift in a battle is scored before it is
        # published (GiftService.deliver), so a battle read right after the rooms' logs counts
        # every gift those reads found.
        battle_ids = self._battle_ids(list(self.rooms))
        read, replies, battle_replies = await self.store.rooms.read_with_states(
            cursors,
            READ_COUNT,
            ahead,
            self.node_id,
            self._presence_ttl_ms,
            self.store.battles.state_calls(battle_ids),
        )
        known = {room_id: state for (room_id, _), state in zip(ahead, replies, strict=True) if state}
        battles = dict(
            zip(battle_ids, self.store.battles.from_states(battle_ids, battle_replies), strict=True)
        )
        for room_id, entries in read:
            self._add_events(room_id, entries)
        started = time.perf_counter()
        now = time.monotonic()
        await self._deliver(list(self.rooms), tick=True, known=known, battles=battles)
        # A room that sent nothing this tick, with its last frame at least QUIET_TICKS of a
        # tick ago, sends its next event at once (``_between_ticks``).
        quiet_s = self.settings.tick_ms / 1000 * QUIET_TICKS
        for room in self.rooms.values():
            room.quiet = not room.pending and now - room.sent_at >= quiet_s
        await self._expire_combos()
        self._sync_slots()
        metrics.HUB_TICK_SECONDS.observe(time.perf_counter() - started)

    async def _between_ticks(self, deadline: float) -> None:
        """Until ``deadline`` (the next tick), read the rooms that are quiet and send each
        one's events the moment they arrive.

        A room is quiet once a read found nothing new for it, at least QUIET_TICKS of a tick
        after its last frame. Its first event then goes out at once, in a batch of its own
        (with the room's state read for it; a battle's scores wait for the tick), and the
        room is no longer quiet. Events that reach it within QUIET_TICKS of that batch go
        QUIET_TICKS after it (two gifts tapped close together in a quiet room wait half a
        tick, not up to a whole one), unless the tick takes them first; in a room in a
        battle they wait for the tick, so that the gifts a viewer is shown are in the
        scores of the batch after them. Events that reach a room whose last batch was a
        tick's wait for the next tick's batch: under load a room sends one batch a tick,
        and never more than two in a tick. A room whose events wait is not read again
        before the tick, so a busy room costs one read more a tick, not one a gift.

        On one engine the read blocks until a quiet room has an event (at most until the
        next room turns quiet, or the tick); on a cluster, where reads do not block, the
        quiet rooms' wake-ups are polled every QUIET_POLL_S.
        """
        quiet_s = self.settings.tick_ms / 1000 * QUIET_TICKS
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            reading: dict[str, str] = {}
            until = deadline
            for room_id, room in self.rooms.items():
                if room.ended or room.pending:
                    continue
                if room.quiet or now - room.sent_at >= quiet_s:
                    reading[room_id] = room.read_cursor
                else:
                    until = min(until, room.sent_at + quiet_s)
            if not reading:
                await asyncio.sleep(until - now)
                continue
            # A room just past half a tick is read once without waiting: what it holds came
            # before it turned quiet, and goes now if its last batch went between ticks.
            blocks = self.store.rooms.reads_block and all(self.rooms[room_id].quiet for room_id in reading)
            block_ms = max(1, int((until - now) * 1000)) if blocks else None
            serving = [room_id for room_id, room in self.rooms.items() if not room.ended]
            read = await self.store.rooms.read(reading, block_ms, READ_COUNT, serving)
            at_once: list[str] = []
            for room_id, entries in read:
                found = self.rooms.get(room_id)
                if found is not None and (found.quiet or (found.sent_between_ticks and not found.battle_id)):
                    at_once.append(room_id)
                # else: they came within half a tick of a tick's batch, or of a battle room's
                # first: they wait for the next tick (which brings the battle's scores).
                self._add_events(room_id, entries)
            for room_id in reading:
                found = self.rooms.get(room_id)
                if found is not None:
                    found.quiet = not found.pending
            if at_once:
                await self._deliver(at_once, tick=False)
            elif not read and not self.store.rooms.reads_block:
                await asyncio.sleep(min(QUIET_POLL_S, max(0.0, until - time.monotonic())))

    def _add_events(self, room_id: str, entries: list[StreamEntry]) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            events = [parse_entry(entry_id, fields) for entry_id, fields in entries]
            room.add_events(events)
            self._watch_combos(room_id, events)

    async def _deliver(
        self,
        room_ids: list[str],
        tick: bool,
        known: dict[str, RoomState] | None = None,
        battles: dict[str, Battle | None] | None = None,
    ) -> None:
        """Refresh the state of the rooms that need it (but those in ``known``, read with
        the streams) and send each room its batch: every room at a tick, a quiet room's
        first events between ticks. ``battles``: the battles read with the streams."""
        states = await self._refresh_states(room_ids, tick, known or {})
        # The battles' scores only at a tick: one read serves every room of a battle, so
        # its rooms show the same ``battle`` events (a quiet room's gift shows its score
        # change at the next tick).
        frames = await self._battle_frames(room_ids, battles or {}) if tick else {}
        now = time.monotonic()
        for room_id in room_ids:
            room = self.rooms.get(room_id)
            if room is not None and await self._flush(
                room_id, room, states.get(room_id), frames.get(room.battle_id or "")
            ):
                room.sent_at, room.sent_between_ticks, room.quiet = now, not tick, False
        async with self._progress:
            self._progress.notify_all()

    async def _refresh_states(
        self, room_ids: list[str], tick: bool, known: dict[str, RoomState]
    ) -> dict[str, RoomState]:
        """Read the state of the rooms that need it and is not ``known``; at a tick, also
        report the viewers of the rooms whose count changed (or of every room, at each
        presence heartbeat) and of the rooms left vacant."""
        now = time.monotonic()
        everyone = tick and now >= self._next_presence
        if everyone:
            self._next_presence = now + self.settings.presence_ttl_s / 3
        reports: list[tuple[str, int]] = []
        for room_id in room_ids:
            room = self.rooms.get(room_id)
            if room is None:
                continue
            room.cued = any(event.kind in STATE_CUES for event in room.pending)
            if everyone or room_id in self._presence_changed:
                reports.append((room_id, room.audience))
            elif room.cued and room_id not in known:
                reports.append((room_id, -1))
        if tick:
            reports += [(room_id, 0) for room_id in self._vacated]
        if not reports:
            return known
        replies = await self.store.rooms.states(reports, self.node_id, self._presence_ttl_ms)
        if tick:
            self._presence_changed.clear()
            self._vacated.clear()
        else:
            self._presence_changed.difference_update(room_ids)
        fresh = {room_id: state for (room_id, _), state in zip(reports, replies, strict=True) if state}
        return {**known, **fresh}

    @property
    def _presence_ttl_ms(self) -> int:
        return int(self.settings.presence_ttl_s * 1000)

    def _battle_ids(self, room_ids: list[str]) -> list[str]:
        """The battles these rooms show."""
        rooms = [room for room_id in room_ids if (room := self.rooms.get(room_id)) is not None]
        return sorted({room.battle_id for room in rooms if room.battle_id and not room.ended})

    async def _battle_frames(
        self, room_ids: list[str], read: dict[str, Battle | None]
    ) -> dict[str, dict[str, Any]]:
        """The ``battle`` event of each running battle of these rooms, as its record stands
        now: one read per battle a tick, however many rooms and connections show it. The
        battles ``read`` with the streams are not read again; one that started in this
        tick's events is read now."""
        missing = [b for b in self._battle_ids(room_ids) if b not in read]
        found = dict(read)
        if missing:
            found.update(zip(missing, await self.store.battles.states(missing), strict=True))
        return {b.battle_id: b.frame() for b in found.values() if b is not None and b.state == "running"}

    @property
    def _slot_ttl_ms(self) -> int:
        return int(self.settings.connection_slot_ttl_s * 1000)

    def _sync_slots(self) -> None:
        """Free the slots of closed connections; every third of the slot TTL, keep every held
        slot alive for another slot TTL (a crashed process's slots then expire).

        With thousands of connections that is thousands of calls, so they go out beside the
        tick rather than in it: batches never wait for them.
        """
        if self._slot_sync is not None and not self._slot_sync.done():
            return  # what falls due meanwhile goes with the next tick's
        held = self.slots.take_due(time.monotonic())
        released = self.slots.take_released()
        if held or released:
            self._slot_sync = asyncio.create_task(self._send_slots(held, released))

    async def _send_slots(self, held: dict[str, list[str]], released: list[tuple[str, str]]) -> None:
        try:
            await self.store.limits.sync_connections(held, released, self._slot_ttl_ms)
        except ENGINE_ERRORS as exc:
            metrics.engine_error(exc)
            # Released slots expire by themselves; held ones are renewed at the next heartbeat.
            log.warning("connection slots not renewed: engine unavailable (%s)", exc)

    async def release_slots(self) -> None:
        """Free every slot this process holds or has yet to free: at shutdown."""
        if self._slot_sync is not None:
            await asyncio.wait([self._slot_sync])
        held = [(user_id, slot) for user_id, slots in self.slots.held().items() for slot in slots]
        await self.store.limits.sync_connections({}, self.slots.take_released() + held, 0)

    async def _flush(
        self, room_id: str, room: LocalRoom, state: RoomState | None, battle: dict[str, Any] | None
    ) -> bool:
        """Send the room its batch, and what goes with it; True if there was a batch."""
        balances = {event.sender_id: event.balance for event in room.pending if event.balance is not None}
        banned = [event.sender_id for event in room.pending if event.kind == "ban" and event.sender_id]
        revoked = {event.revoked_overlay for event in room.pending if event.revoked_overlay is not None}
        if revoked:
            # Before this tick's batch: an old overlay shows nothing more once it is revoked.
            self._close_revoked(room, revoked)
        state_events = room.state_events(state) if state is not None else []
        tally_events = room.tally_events()
        presence = room.presence_events(time.monotonic(), self.settings.presence_interval_ms / 1000)
        batches = room.take_batch([*state_events, *tally_events, *presence, *room.battle_events(battle)])
        for viewer in await room.broadcast(batches):
            self.leave(viewer)
        for user_id, coins in balances.items():
            for viewer in tuple(self.by_user.get(user_id or "", ())):
                if not viewer.send({"type": "balance", "coins": coins}):
                    self.leave(viewer)
        for user_id in banned:
            self._close_banned(room_id, user_id)
        if room.ended:
            for viewer in tuple(room.viewers):
                # A gift the connection is sending is answered before the close.
                viewer.outlet.finish(Close.ROOM_ENDED, "the live has ended")
                self.leave(viewer)
            self.rooms.pop(room_id, None)
        return any(batch is not None for batch in batches.values())

    def _close_banned(self, room_id: str, user_id: str) -> None:
        """Close the user's connections in the room: the creator banned them."""
        error = banned_error()
        for viewer in tuple(self.by_user.get(user_id, ())):
            if viewer.room_id == room_id:
                viewer.send(error_frame(error))
                viewer.outlet.close(Close.BANNED, error.code)
                self.leave(viewer)

    def _close_revoked(self, room: LocalRoom, revoked: set[str]) -> None:
        """Close the room's overlays opened with a token the creator replaced."""
        error = overlay_revoked_error()
        for viewer in (*room.viewers, *room.catching_up):
            if viewer.overlay and viewer.overlay_key in revoked:
                viewer.send(error_frame(error))
                viewer.outlet.close(Close.UNAUTHORIZED, error.code)
                self.leave(viewer)

    def _watch_combos(self, room_id: str, events: list[RoomEvent]) -> None:
        for event in events:
            if event.sender_id is None:
                continue
            if event.kind == "gift":
                gift = self.catalog.gifts.get(event.gift_id or "")
                self.combos.saw_gift(room_id, event.sender_id, event.ts, gift is not None and gift.streakable)
            elif event.kind == "combo_end":
                self.combos.saw_end(room_id, event.sender_id)

    async def _expire_combos(self) -> None:
        for room_id, sender_id, ts in self.combos.due(time.time_ns() // 1_000_000):
            outcome = await self.store.rooms.expire_combo(
                room_id, sender_id, ts, self.settings.combo_window_ms
            )
            if outcome == 0:
                self.combos.forget(room_id, sender_id, ts)
