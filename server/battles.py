"""LIVE battles between two creators, for every transport: invite, answer, score, end.

A battle links two live rooms for ``duration_s``. Its record lives in its own slot
(``{b:<battle>}``, ``store.battles``); each creator holds a pointer to it in their own slot
(one battle at a time); each room registers it in its slot before it can start.

**Scoring** is part of a gift's delivery, never a second money path: the debit records its
own engine time (``gift_debit.lua``, the ledger entry's id), the room's publish names the
room's battle that time may fall in (``room_gift.lua``), and ``battle_score.lua`` counts the
gift once per gift event if its debit is in [started_ms, end). A delivery the sweeper repeats
after a crash counts it then; the outbox entry is cleared only after. The audit checks each
battle's score against the ledgers by the same rule.

**The order of the steps across slots**, each safe to stop after:
- invite: the engine's time; both pointers claimed (the second refused: the first released);
  both rooms register the battle under that time; then the record is written (invited).
- accept: both pointers extended to the battle's end (gone: the invitation lapsed); the end
  scheduled (``battles:due``) a little later than it can fall; the record accepts (running,
  from the engine's now); the exact end scheduled; the ``battle`` event into both rooms.
- end: at ``ends_at`` plus the settle time, one process (``{b:B}:settling``) first delivers
  every gift a crashed process left in its outbox (the sweeper's delivery, which scores
  those debited in time); the record ends (``battle_finish.lua``, once; a forfeit ends it at
  once, with the scores so far); ``battle_end`` into both rooms (once each, ``room_battle.lua``); both
  pointers released; unscheduled. Every process's battle clock (``run``) ends the battles due,
  so an end a crash interrupted is finished by the next process to look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server import metrics
from server.domain.ids import new_id
from server.errors import Conflict, Forbidden
from server.store import ENGINE_ERRORS, Store
from server.store.battles import Battle, Side

log = logging.getLogger(__name__)

# An invitation nobody answered lapses after this long.
INVITATION_MS = 30_000
# The end at ends_at is taken this long after it, so that the gifts debited just before it
# are delivered and counted before battle_end announces the scores.
SETTLE_MS = 1_000
# How long one process has to settle a battle due (sweep the outboxes, end it, announce it)
# before another may.
SETTLE_LOCK_MS = 30_000
# A creator's battle pointer outlives the latest end its battle can have by this much.
POINTER_SLACK_MS = 60_000
# How often each process's battle clock looks for battles due, and how many it ends a look.
CLOCK_INTERVAL_S = 0.25
CLOCK_BATCH = 50


@dataclass
class BattleService:
    store: Store
    # A user's display name (the gift path's cache).
    name_of: Callable[[str], Awaitable[str]]
    # Deliver every outbox entry debited before an engine time (``GiftService.sweep``).
    sweep: Callable[[int], Awaitable[int]]

    async def invite(self, creator_id: str, opponent_id: str, duration_s: int) -> Battle:
        """Invite ``opponent_id`` to battle; both must be live and in no other battle."""
        if opponent_id == creator_id:
            raise Conflict("a creator cannot battle themselves", code="self_battle")
        rooms = self.store.rooms
        mine, theirs = await asyncio.gather(rooms.live_room_of(creator_id), rooms.live_room_of(opponent_id))
        if mine is None:
            raise Conflict("you are not live: go live before inviting to a battle", code="not_live")
        if theirs is None:
            raise Conflict(f"{opponent_id!r} is not live", code="not_live")
        battles = self.store.battles
        battle_id = new_id("b")
        lifetime = INVITATION_MS + SETTLE_MS
        busy = await self._claim(creator_id, battle_id, lifetime)
        if busy is not None:
            raise Conflict(f"you are already in battle {busy!r}", code="already_in_battle")
        busy = await self._claim(opponent_id, battle_id, lifetime)
        if busy is not None:
            await battles.release(creator_id, battle_id)
            raise Conflict(f"{opponent_id!r} is already in a battle", code="already_in_battle")
        names = await asyncio.gather(self.name_of(creator_id), self.name_of(opponent_id))
        sides = (Side(creator_id, names[0], mine.room_id, 0), Side(opponent_id, names[1], theirs.room_id, 0))
        invited_ms = await self.store.engine_ms()
        # Registered in both rooms before the record exists, so before it can start.
        latest_end = invited_ms + INVITATION_MS + duration_s * 1000
        await asyncio.gather(
            *(battles.register(side.room_id, battle_id, invited_ms, latest_end) for side in sides)
        )
        await battles.open(battle_id, *sides, duration_ms=duration_s * 1000, invited_ms=invited_ms)
        metrics.BATTLES.labels("invited").inc()
        return await battles.get(battle_id)

    async def accept(self, battle_id: str, caller: str) -> Battle:
        battles = self.store.battles
        battle = await battles.get(battle_id)
        if caller != battle.opponent:
            raise Forbidden("only the invited creator can accept this battle")
        if battle.state != "invited":
            raise Conflict(
                f"battle {battle_id!r} is {battle.state}: it can't be accepted", code="battle_not_invited"
            )
        rooms = await asyncio.gather(*(self.store.rooms.get(side.room_id) for side in battle.sides))
        for side, room in zip(battle.sides, rooms, strict=True):
            if not room.live:
                raise Conflict(f"{side.creator!r} is no longer live", code="not_live")
        # The latest the end can fall: scheduled before the start, in case the process stops.
        latest_end = battle.read_ms + battle.duration_ms + SETTLE_MS
        lifetime = latest_end - battle.read_ms + INVITATION_MS + POINTER_SLACK_MS
        for side in battle.sides:
            if not await battles.extend(side.creator, battle_id, lifetime):
                raise Conflict(f"the invitation to battle {battle_id!r} lapsed", code="battle_lapsed")
        await battles.schedule(battle_id, latest_end + INVITATION_MS)
        try:
            await battles.answer(battle_id, caller, accept=True, lapse_ms=INVITATION_MS)
        except Conflict:
            battle = await battles.get(battle_id)
            # Declined or lapsed meanwhile, it is closed; started by another accept (a second
            # tap racing the first), it runs on and only this one is refused.
            if battle.state != "running":
                await self._close(battle)
            raise
        battle = await battles.get(battle_id)
        assert battle.ends_at is not None
        await battles.schedule(battle_id, battle.ends_at + SETTLE_MS)
        frame = battle.frame()
        await asyncio.gather(
            *(battles.announce(side.room_id, battle_id, frame, battle.ends_at) for side in battle.sides)
        )
        metrics.BATTLES.labels("started").inc()
        return battle

    async def decline(self, battle_id: str, caller: str) -> Battle:
        """The opponent declines, or the inviter withdraws, an invitation."""
        battles = self.store.battles
        await battles.answer(battle_id, caller, accept=False, lapse_ms=INVITATION_MS)
        battle = await battles.get(battle_id)
        await self._close(battle)
        metrics.BATTLES.labels("declined").inc()
        return battle

    async def get(self, battle_id: str) -> Battle:
        return await self.store.battles.get(battle_id)

    async def current(self, creator_id: str) -> Battle | None:
        """The creator's battle while it is invited or running: not one whose invitation
        lapsed or that ended, though its pointer may outlive it a little."""
        battle_id = await self.store.battles.current(creator_id)
        if battle_id is None:
            return None
        battle = (await self.store.battles.states([battle_id]))[0]
        if battle is None or battle.shown_state(INVITATION_MS) not in ("invited", "running"):
            return None
        return battle

    async def _claim(self, creator_id: str, battle_id: str, lifetime_ms: int) -> str | None:
        """Take the creator's one battle pointer for ``battle_id``; the battle that holds it,
        if one invited or running does. A pointer left to a battle that is over (an invitation
        that lapsed, an end whose release has not run yet) is released and taken."""
        battles = self.store.battles
        busy = await battles.claim(creator_id, battle_id, lifetime_ms)
        if busy is None:
            return None
        held = (await battles.states([busy]))[0]
        # No record yet: that invitation is being written (its pointers come first).
        if held is None or held.shown_state(INVITATION_MS) in ("invited", "running"):
            return busy
        await battles.release(creator_id, busy)
        return await battles.claim(creator_id, battle_id, lifetime_ms)

    async def forfeit(self, creator_id: str) -> None:
        """The creator ended their live: a running battle ends at once, the other side wins;
        an invitation is withdrawn."""
        battle = await self.current(creator_id)
        if battle is None:
            return
        if battle.state == "invited":
            with contextlib.suppress(Conflict):  # answered or lapsed meanwhile
                await self.store.battles.answer(
                    battle.battle_id, creator_id, accept=False, lapse_ms=INVITATION_MS
                )
            await self._close(await self.store.battles.get(battle.battle_id))
        elif battle.state == "running":
            await self.finish(battle.battle_id, forfeit=creator_id)

    async def finish(self, battle_id: str, forfeit: str = "") -> bool:
        """End the battle if it is due (or forfeited) and announce its end; True once it has
        ended, here or before. Before an end at its time, one process delivers every gift a
        crashed process left in its outbox, so that ``battle_end`` counts those debited in
        time too; the others wait for it."""
        battles = self.store.battles
        if not forfeit:
            battle = await battles.get(battle_id)
            if battle.state == "running" and battle.ends_at is not None:
                due = battle.ends_at + SETTLE_MS
                if battle.read_ms < due:
                    await battles.schedule(battle_id, due)
                    return False
                if not await battles.settle(battle_id, SETTLE_LOCK_MS):
                    return False  # another process is settling it
                await self.sweep(due)
        finished = await battles.finish(battle_id, forfeit, SETTLE_MS)
        if finished.status == "early":
            assert finished.due_ms is not None
            await battles.schedule(battle_id, finished.due_ms)
            return False
        battle = await battles.get(battle_id)
        if finished.status == "not_running":
            await self._close(battle)
            return False
        frame = battle.end_frame()
        assert battle.ended_ms is not None
        await asyncio.gather(
            *(battles.announce(side.room_id, battle_id, frame, battle.ended_ms) for side in battle.sides)
        )
        await self._close(battle)
        if finished.status == "ok":
            metrics.BATTLES.labels("forfeited" if battle.forfeit else "ended").inc()
        return True

    async def _close(self, battle: Battle) -> None:
        """Free both creators for their next battle and stop watching this one; if it never
        ran, its rooms' gifts stop looking for it."""
        battles = self.store.battles
        await asyncio.gather(*(battles.release(side.creator, battle.battle_id) for side in battle.sides))
        await battles.unschedule(battle.battle_id)
        if battle.shown_state(INVITATION_MS) in ("declined", "lapsed"):
            await asyncio.gather(*(battles.close(side.room_id, battle) for side in battle.sides))

    async def tick(self, now_ms: int) -> int:
        """End the battles due by ``now_ms``; how many ended."""
        ended = 0
        for battle_id in await self.store.battles.due(now_ms, CLOCK_BATCH):
            try:
                ended += await self.finish(battle_id)
            except ENGINE_ERRORS:
                raise
            except Exception:
                log.exception("battle %s could not be ended; retried at the next look", battle_id)
        return ended

    async def run(self) -> None:
        """Every process's battle clock: ends every battle due, whichever process started it."""
        while True:
            try:
                await self.tick(time.time_ns() // 1_000_000)
            except ENGINE_ERRORS as exc:
                metrics.engine_error(exc)
                log.warning("battle clock paused: engine unavailable (%s)", exc)
            await asyncio.sleep(CLOCK_INTERVAL_S)
