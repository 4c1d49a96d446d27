"""The Lua scripts, and the one owner of their loading: ``ScriptRunner``.

Each script is read once from its own file (``store/lua/<name>.lua``, KEYS/ARGV/return
header first) and called by EVALSHA with the SHA computed on the client, as redis-py's
``Script`` does. The runner is the only place that knows how to recover a script the engine
lost (a restart, SCRIPT FLUSH), for a single call, a batch and a mixed pipeline alike: the
engine answers NOSCRIPT, so the call did not run; the runner loads the script and sends
again the refused calls, and only those. Everything else in a pipeline ran once and keeps
its first reply.

A script's business outcomes come back as a status word; ``outcome`` turns the refusals
into the typed errors of ``server.errors``, from one table per script beside its call.

A script may include a part written once for several scripts: a line ``--#include <name>``
is replaced by the text of ``store/lua/<name>.lua`` (names of parts start with ``_``; parts
include nothing). The text is the same in every process, and so is each script's SHA.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from server.store.connection import pipelined

_INCLUDE = re.compile(r"^--#include (_\w+)$", re.MULTILINE)

Arg = str | int | bytes
# KEYS and ARGV of one script call, in the order of the script's header.
Arguments = tuple[list[str], list[Arg]]


def script_source(name: str) -> str:
    """The text of ``store/lua/<name>.lua``, with the parts it includes in place."""
    return _INCLUDE.sub(lambda line: _lua_file(line[1]), _lua_file(name))


def _lua_file(name: str) -> str:
    return resources.files("server.store").joinpath(f"lua/{name}.lua").read_text("utf-8")


@dataclass(frozen=True)
class Script:
    name: str
    source: str

    @cached_property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()  # the engine names a script by it

    @classmethod
    def named(cls, name: str) -> Script:
        return cls(name, script_source(name))


GIFT_DEBIT = Script.named("gift_debit")
CREDIT_CREATOR = Script.named("credit_creator")
CREDIT_PURCHASE = Script.named("credit_purchase")
ROOM_GIFT = Script.named("room_gift")
COMBO_EXPIRE = Script.named("combo_expire")
ROOM_END = Script.named("room_end")
ROOM_SUMMARY = Script.named("room_summary")
ROOM_GOAL = Script.named("room_goal")
ROOM_STATE = Script.named("room_state")
ROOM_LIKES = Script.named("room_likes")
RELEASE_DIAMONDS = Script.named("release_diamonds")
REVERSE_CREDIT = Script.named("reverse_credit")
WITHDRAW = Script.named("withdraw")
WITHDRAWAL_DECIDE = Script.named("withdrawal_decide")
CLAW_BACK = Script.named("claw_back")
RESTORE_PURCHASE = Script.named("restore_purchase")
CREATE_ORDER = Script.named("create_order")
IP_BUCKET = Script.named("ip_bucket")
CONNECTION_OPEN = Script.named("connection_open")
CONNECTION_REFRESH = Script.named("connection_refresh")
CHAT_POST = Script.named("chat_post")
FOLLOW = Script.named("follow")
UNFOLLOW = Script.named("unfollow")
CREATOR_CARD = Script.named("creator_card")
ROOM_FOLLOW = Script.named("room_follow")
ROOM_SHARE = Script.named("room_share")
CHAT_DELETE = Script.named("chat_delete")
ROOM_BAN = Script.named("room_ban")
BATTLE_CLAIM = Script.named("battle_claim")
BATTLE_OPEN = Script.named("battle_open")
BATTLE_ANSWER = Script.named("battle_answer")
BATTLE_SCORE = Script.named("battle_score")
BATTLE_FINISH = Script.named("battle_finish")
BATTLE_STATE = Script.named("battle_state")
ROOM_BATTLE = Script.named("room_battle")
VIDEO_GIFT = Script.named("video_gift")


class Call(NamedTuple):
    """One command of a pipeline: ``script`` with ``keys`` and ``args``, or (no script) the
    plain command ``args`` (``("HGETALL", key)``)."""

    script: Script | None
    keys: Sequence[str]
    args: Sequence[Arg]

    @classmethod
    def command(cls, *args: Arg) -> Call:
        return cls(None, (), args)


class ScriptRunner:
    """Calls scripts on one engine client, loading any the engine has lost."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """One script call on its own; its reply, or the error it raised."""
        try:
            return await self._evalsha(script, keys, args)
        except NoScriptError:
            await self._load([script])
            return await self._evalsha(script, keys, args)

    async def pipeline(self, calls: Sequence[Call]) -> list[Any]:
        """The replies of ``calls``, sent as one pipeline; the first error any of them raised."""
        replies = await self.execute(calls)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def execute(self, calls: Sequence[Call]) -> list[Any]:
        """The replies of ``calls``, sent as one non-transactional pipeline, each error in
        place of its reply; a connection's error is raised."""
        replies = await self._pipeline(calls)
        refused = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if refused:
            await self._load([script for i in refused if (script := calls[i].script) is not None])
            for i, reply in zip(refused, await self._pipeline([calls[i] for i in refused]), strict=True):
                replies[i] = reply
        return replies

    async def _evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        return await self._redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        # Each script as a plain EVALSHA: a cluster pipeline refuses ``pipe.evalsha()``, and
        # neither kind should check for the script first.
        return await pipelined(
            self._redis,
            [
                args if script is None else ("EVALSHA", script.sha, len(keys), *keys, *args)
                for script, keys, args in calls
            ],
        )

    async def _load(self, scripts: Sequence[Script]) -> None:
        for source in {script.source for script in scripts}:
            await self._redis.script_load(source)


# A script's refusals: status word -> the error for that reply.
Refusals = Mapping[str, Callable[[list[Any]], Exception]]


def outcome(script: Script, reply: list[Any], accepted: Sequence[str], refusals: Refusals) -> list[Any]:
    """``reply`` if its status (``reply[0]``) is one of ``accepted``; else the error its
    refusal maps to is raised, and ``RuntimeError`` for a status the script should not return."""
    status = reply[0]
    if status in accepted:
        return reply
    refusal = refusals.get(status)
    if refusal is None:
        raise RuntimeError(f"{script.name} returned {reply!r}")
    raise refusal(reply)
