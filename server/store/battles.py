"""Battles: one battle's record in its own slot (``{b:<battle>}``), the creators' one-battle
pointers in theirs, and each room's registration and log of its battles in the room's slot.

Nothing here spans two slots in one step: ``server.battles`` orders the steps so that a crash
between any two leaves nothing wrong (a pointer expires by itself, a registration without a
battle that ran counts nothing, an end not yet announced is announced by the next process
that finds it due).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from server.domain.ids import new_id
from server.errors import Conflict, Forbidden, NotFound
from server.keys import BattleKeys, KeySchema, RoomKeys
from server.store.batch import ScriptBatch
from server.store.records import CreatorCredit
from server.store.scripts import (
    BATTLE_ANSWER,
    BATTLE_CLAIM,
    BATTLE_FINISH,
    BATTLE_OPEN,
    BATTLE_SCORE,
    BATTLE_STATE,
    ROOM_BATTLE,
    Arguments,
    Call,
    Refusals,
    ScriptRunner,
    outcome,
)

# Each side's supporters a battle shows.
TOP_SUPPORTERS = 3


@dataclass(frozen=True)
class Supporter:
    user_id: str
    name: str
    coins: int

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "name": self.name, "coins": self.coins}


@dataclass(frozen=True)
class Side:
    creator: str
    name: str
    room_id: str
    score: int
    top: tuple[Supporter, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "creator": self.creator,
            "name": self.name,
            "room_id": self.room_id,
            "score": self.score,
            "top": [supporter.to_dict() for supporter in self.top],
        }


@dataclass(frozen=True)
class Battle:
    """A battle as its record holds it; ``sides[0]`` is the inviter's."""

    battle_id: str
    state: str  # invited, running, ended, declined, lapsed
    duration_ms: int
    invited_ms: int
    started_ms: int | None
    ends_at: int | None
    ended_ms: int | None
    sides: tuple[Side, Side]
    winner: str | None
    forfeit: str | None
    version: int
    # The engine's time when this was read (a client's countdown corrects its clock by it).
    read_ms: int
    final: tuple[int, int] | None = None

    @property
    def inviter(self) -> str:
        return self.sides[0].creator

    @property
    def opponent(self) -> str:
        return self.sides[1].creator

    def side_of(self, creator_id: str) -> int | None:
        for i, side in enumerate(self.sides):
            if side.creator == creator_id:
                return i
        return None

    def shown_state(self, lapse_ms: int) -> str:
        """The state, with an invitation nobody answered in time shown as lapsed."""
        if self.state == "invited" and self.read_ms - self.invited_ms >= lapse_ms:
            return "lapsed"
        return self.state

    def to_dict(self, lapse_ms: int) -> dict[str, Any]:
        """The ``Battle`` the HTTP API answers."""
        return {
            "battle_id": self.battle_id,
            "state": self.shown_state(lapse_ms),
            "inviter": self.inviter,
            "duration_s": self.duration_ms // 1000,
            "invited_ms": self.invited_ms,
            "started_ms": self.started_ms,
            "ends_at": self.ends_at,
            "ended_ms": self.ended_ms,
            "sides": [side.to_dict() for side in self.sides],
            "winner": self.winner,
            "forfeit": self.forfeit,
        }

    def frame(self) -> dict[str, Any]:
        """The ``battle`` event both rooms see while it runs."""
        return {
            "type": "battle",
            "battle_id": self.battle_id,
            "state": "running",
            "sides": [side.to_dict() for side in self.sides],
            "ends_at": self.ends_at,
            "server_ms": self.read_ms,
        }

    def end_frame(self) -> dict[str, Any]:
        """The ``battle_end`` event, once per room: the scores it ended with, its winner (None
        for a draw) and each side's biggest supporter."""
        final = self.final or (self.sides[0].score, self.sides[1].score)
        return {
            "type": "battle_end",
            "battle_id": self.battle_id,
            "scores": {side.creator: score for side, score in zip(self.sides, final, strict=True)},
            "winner": self.winner,
            "forfeit": self.forfeit,
            "mvp": {side.creator: side.top[0].to_dict() if side.top else None for side in self.sides},
            "sides": [
                {**side.to_dict(), "score": score} for side, score in zip(self.sides, final, strict=True)
            ],
            "ended_ms": self.ended_ms,
        }


@dataclass(frozen=True)
class Finished:
    """``battle_finish.lua``'s outcome: "ok" (ended now), "done" (before), "early", "not_running"."""

    status: str
    due_ms: int | None = None


@dataclass
class Battles:
    redis: Redis
    keys: KeySchema
    runner: ScriptRunner
    batch: ScriptBatch
    stream_len: int
    _top: int = field(default=TOP_SUPPORTERS)

    # -- the creators' pointers -----------------------------------------------------------

    async def claim(self, creator_id: str, battle_id: str, lifetime_ms: int) -> str | None:
        """Take the creator's one battle for ``battle_id``; the battle they have already, if any."""
        reply = await self.runner.call(
            BATTLE_CLAIM, *claim_arguments(self.keys, creator_id, "claim", battle_id, lifetime_ms)
        )
        return None if reply[0] == "ok" else str(reply[1])

    async def release(self, creator_id: str, battle_id: str) -> None:
        await self.runner.call(BATTLE_CLAIM, *claim_arguments(self.keys, creator_id, "release", battle_id, 0))

    async def extend(self, creator_id: str, battle_id: str, lifetime_ms: int) -> bool:
        """Keep the creator's pointer to ``battle_id`` for ``lifetime_ms``; False if it is gone."""
        reply = await self.runner.call(
            BATTLE_CLAIM, *claim_arguments(self.keys, creator_id, "extend", battle_id, lifetime_ms)
        )
        return bool(reply[0] == "ok")

    async def current(self, creator_id: str) -> str | None:
        """The creator's battle while it is invited or running."""
        battle_id: str | None = await self.redis.get(self.keys.user(creator_id).battle)
        return battle_id

    # -- the battle's record ------------------------------------------------------------

    async def open(
        self, battle_id: str, inviter: Side, opponent: Side, *, duration_ms: int, invited_ms: int
    ) -> None:
        """Write the invitation."""
        await self.runner.call(
            BATTLE_OPEN,
            [self.keys.battle(battle_id).info],
            [
                inviter.creator,
                opponent.creator,
                inviter.room_id,
                opponent.room_id,
                inviter.name,
                opponent.name,
                duration_ms,
                invited_ms,
            ],
        )

    async def answer(self, battle_id: str, caller: str, accept: bool, lapse_ms: int) -> None:
        reply = await self.runner.call(
            BATTLE_ANSWER,
            [self.keys.battle(battle_id).info],
            ["accept" if accept else "decline", caller, lapse_ms, new_id("ans")],
        )
        outcome(BATTLE_ANSWER, reply, ("ok",), answer_refusals(battle_id))

    def score(self, battle_id: str, credit: CreatorCredit) -> asyncio.Future[str]:
        """Count a delivered gift in the battle if its debit fell in the battle's window:
        "ok", "dup" or "outside". Queued with the gift path's calls of this turn."""
        assert credit.debit_ms is not None
        return self.batch.call(
            BATTLE_SCORE,
            *score_arguments(self.keys.battle(battle_id), credit),
            lambda reply: str(reply[0]),
        )

    async def settle(self, battle_id: str, lock_ms: int) -> bool:
        """Take the settling of the battle's end for ``lock_ms``; False if another process has it."""
        key = self.keys.battle(battle_id).settling
        holder = new_id("settle")
        if await self.redis.set(key, holder, nx=True, px=lock_ms):
            return True
        # Held already: by this very call, if it was sent again after its reply was lost.
        return bool(await self.redis.get(key) == holder)

    async def finish(self, battle_id: str, forfeit: str, settle_ms: int) -> Finished:
        reply = await self.runner.call(
            BATTLE_FINISH, [self.keys.battle(battle_id).info], [forfeit, settle_ms]
        )
        status = str(reply[0])
        return Finished(status, int(reply[1]) if status == "early" else None)

    async def get(self, battle_id: str) -> Battle:
        battle = (await self.states([battle_id]))[0]
        if battle is None:
            raise NotFound(f"no battle {battle_id!r}", code="battle_not_found")
        return battle

    async def states(self, battle_ids: Sequence[str]) -> list[Battle | None]:
        """The battles as they are now, in one round trip (None for an unknown id)."""
        return self.from_states(battle_ids, await self.runner.pipeline(self.state_calls(battle_ids)))

    def state_calls(self, battle_ids: Sequence[str]) -> list[Call]:
        """The calls that read the battles as they are now, for a pipeline of their reader's."""
        return [Call(BATTLE_STATE, *state_arguments(self.keys.battle(b), self._top)) for b in battle_ids]

    @staticmethod
    def from_states(battle_ids: Sequence[str], replies: Sequence[Any]) -> list[Battle | None]:
        """The battles the replies of ``state_calls`` describe (None for an unknown id)."""
        return [battle_from_reply(b, reply) for b, reply in zip(battle_ids, replies, strict=True)]

    # -- the rooms ------------------------------------------------------------------------

    async def register(self, room_id: str, battle_id: str, invited_ms: int, window_end: int) -> None:
        """Register an invitation in one of its rooms, before it can start; ``window_end`` is
        the latest its window can end (if it starts at the last moment and runs in full)."""
        await self._room(room_id, "register", battle_id, invited_ms, window_end)

    async def announce(self, room_id: str, battle_id: str, event: dict[str, Any], window_end: int) -> str:
        """Add the battle's start or end (``event``) to the room's log, once: "ok", "dup" or
        "ended" (the live ended: not added); ``window_end`` is its ``ends_at`` or ``ended_ms``."""
        mode = "start" if event["type"] == "battle" else "end"
        return await self._room(room_id, mode, battle_id, orjson.dumps(event), window_end)

    async def close(self, room_id: str, battle: Battle) -> None:
        """A battle that never ran (declined, lapsed): no gift of the room counts in it."""
        await self._room(room_id, "close", battle.battle_id, "", battle.invited_ms)

    async def _room(self, room_id: str, mode: str, battle_id: str, value: int | bytes | str, end: int) -> str:
        keys = self.keys.room(room_id)
        reply = await self.runner.call(
            ROOM_BATTLE, *room_battle_arguments(keys, mode, battle_id, value, self.stream_len, end)
        )
        return str(reply[0])

    # -- the battles due ------------------------------------------------------------------

    async def schedule(self, battle_id: str, due_ms: int) -> None:
        await self.redis.zadd(self.keys.battles_due, {battle_id: due_ms})

    async def due(self, now_ms: int, limit: int) -> list[str]:
        ids: list[str] = await self.redis.zrangebyscore(self.keys.battles_due, "-inf", now_ms, 0, limit)
        return ids

    async def unschedule(self, battle_id: str) -> None:
        await self.redis.zrem(self.keys.battles_due, battle_id)


def claim_arguments(
    keys: KeySchema, creator_id: str, mode: str, battle_id: str, lifetime_ms: int
) -> Arguments:
    """KEYS and ARGV of ``battle_claim.lua``."""
    return [keys.user(creator_id).battle], [mode, battle_id, lifetime_ms]


def score_arguments(battle: BattleKeys, credit: CreatorCredit) -> Arguments:
    """KEYS and ARGV of ``battle_score.lua``."""
    return (
        [battle.info, battle.scored, battle.top(0), battle.top(1), battle.names],
        [
            credit.event_id,
            credit.room_id,
            credit.coins,
            credit.sender_id,
            credit.sender_name or credit.sender_id,
            credit.debit_ms if credit.debit_ms is not None else "",
        ],
    )


def state_arguments(battle: BattleKeys, top: int) -> Arguments:
    """KEYS and ARGV of ``battle_state.lua``."""
    return [battle.info, battle.top(0), battle.top(1), battle.names], [top]


def room_battle_arguments(
    room: RoomKeys, mode: str, battle_id: str, value: int | bytes | str, stream_len: int, window_end: int
) -> Arguments:
    """KEYS and ARGV of ``room_battle.lua``."""
    return (
        [room.info, room.events, room.battles, room.battle_events, room.battle_ends],
        [mode, battle_id, value, stream_len, room.wake, window_end],
    )


def answer_refusals(battle_id: str) -> Refusals:
    """The errors of ``battle_answer.lua``'s refusals."""
    return {
        "missing": lambda _: NotFound(f"no battle {battle_id!r}", code="battle_not_found"),
        "forbidden": lambda _: Forbidden("only the invited creator can accept this battle"),
        "not_invited": lambda reply: Conflict(
            f"battle {battle_id!r} is {reply[1]}: only an invitation can be answered",
            code="battle_not_invited",
        ),
        "lapsed": lambda _: Conflict(
            f"the invitation to battle {battle_id!r} lapsed: nobody accepted it in time", code="battle_lapsed"
        ),
    }


def _int(raw: str | None) -> int | None:
    return None if raw in (None, "") else int(raw)


def _supporters(flat: list[Any]) -> tuple[Supporter, ...]:
    return tuple(
        Supporter(str(flat[i]), str(flat[i + 1]), int(float(flat[i + 2]))) for i in range(0, len(flat), 3)
    )


def battle_from_reply(battle_id: str, reply: list[Any]) -> Battle | None:
    """The battle ``battle_state.lua`` read, or None for an unknown id."""
    if not reply:
        return None
    flat, top0, top1, now = reply
    raw: dict[str, str] = dict(zip(flat[::2], flat[1::2], strict=True))
    sides = (
        Side(raw["inviter"], raw["name_0"], raw["room_0"], int(raw["score_0"]), _supporters(top0)),
        Side(raw["opponent"], raw["name_1"], raw["room_1"], int(raw["score_1"]), _supporters(top1)),
    )
    final = (int(raw["final_0"]), int(raw["final_1"])) if "final_0" in raw else None
    return Battle(
        battle_id=battle_id,
        state=raw["state"],
        duration_ms=int(raw["duration_ms"]),
        invited_ms=int(raw["invited_ms"]),
        started_ms=_int(raw.get("started_ms")),
        ends_at=_int(raw.get("ends_at")),
        ended_ms=_int(raw.get("ended_ms")),
        sides=sides,
        winner=raw.get("winner") or None,
        forfeit=raw.get("forfeit") or None,
        version=int(raw.get("v", 0)),
        read_ms=int(now),
        final=final,
    )
