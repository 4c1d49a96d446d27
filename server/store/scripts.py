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

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        return cls(
            gift_debit=redis.register_script(script_source("gift_debit")),
            credit_creator=redis.register_script(script_source("credit_creator")),
            credit_purchase=redis.register_script(script_source("credit_purchase")),
        )
