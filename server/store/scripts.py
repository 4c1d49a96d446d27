"""The Lua scripts, each loaded once from its own file and called by EVALSHA.

redis-py's ``Script`` computes the SHA on the client, sends EVALSHA, and loads the script
again when the engine answers NOSCRIPT (after a restart or SCRIPT FLUSH).

A script may include a part written once for several scripts: a line ``--#include <name>``
is replaced by the text of ``store/lua/<name>.lua`` (names of parts start with ``_``; parts
include nothing). The text is the same in every process, and so is each script's SHA.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

_INCLUDE = re.compile(r"^--#include (_\w+)$", re.MULTILINE)


def script_source(name: str) -> str:
    """The text of ``store/lua/<name>.lua``, with the parts it includes in place."""
    return _INCLUDE.sub(lambda line: _lua_file(line[1]), _lua_file(name))


def _lua_file(name: str) -> str:
    return resources.files("server.store").joinpath(f"lua/{name}.lua").read_text("utf-8")


@dataclass(frozen=True)
class Scripts:
    gift_debit: AsyncScript
    credit_creator: AsyncScript
    credit_purchase: AsyncScript
    room_gift: AsyncScript
    combo_expire: AsyncScript
    room_end: AsyncScript
    room_goal: AsyncScript
    room_state: AsyncScript
    release_diamonds: AsyncScript
    reverse_credit: AsyncScript
    withdraw: AsyncScript
    withdrawal_decide: AsyncScript
    claw_back: AsyncScript
    create_order: AsyncScript
    ip_bucket: AsyncScript
    connection_open: AsyncScript
    connection_refresh: AsyncScript
    follow: AsyncScript
    unfollow: AsyncScript
    creator_card: AsyncScript
    room_follow: AsyncScript
    room_share: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        return cls(**{name: redis.register_script(script_source(name)) for name in _NAMES})


_NAMES = tuple(Scripts.__dataclass_fields__)


def queue_script(pipe: Pipeline, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> None:
    """Queue one EVALSHA of ``script`` on ``pipe`` (as a plain command: a cluster pipeline
    refuses ``pipe.evalsha()``, and neither kind should check for the script first)."""
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)


async def run_pipeline(
    redis: Redis, build: Callable[[Pipeline], None], scripts: Sequence[AsyncScript]
) -> list[Any]:
    """The replies of the commands ``build`` queues, sent as one pipeline.

    If the engine had lost one of ``scripts`` (a restart, SCRIPT FLUSH), none of their calls
    ran: the scripts are loaded again and the whole pipeline sent again, so a caller's
    pipeline must be safe to repeat (reads, and scripts that set rather than add).
    """
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            build(pipe)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        if attempt == 0 and any(isinstance(reply, NoScriptError) for reply in replies):
            for script in scripts:
                script.sha = await redis.script_load(script.script)
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies
    raise AssertionError("unreachable")
