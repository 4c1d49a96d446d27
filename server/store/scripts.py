"""The Lua scripts, each loaded once from its own file and called by EVALSHA.

redis-py's ``Script`` computes the SHA on the client, sends EVALSHA, and loads the script
again when the engine answers NOSCRIPT (after a restart or SCRIPT FLUSH).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def script_source(name: str) -> str:
    """The text of ``store/lua/<name>.lua``."""
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
    ip_bucket: AsyncScript
    connection_open: AsyncScript
    connection_refresh: AsyncScript

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        return cls(**{name: redis.register_script(script_source(name)) for name in _NAMES})


_NAMES = tuple(Scripts.__dataclass_fields__)
