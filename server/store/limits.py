"""Abuse limits in the engine: a request token bucket per client address, and each user's
open connection slots, so that both hold across every server process sharing the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from server.errors import RateLimited, TooManyConnections
from server.keys import KeySchema
from server.store.batch import ScriptBatch
from server.store.scripts import Scripts, queue_script, run_pipeline

# Users whose slots one pipeline frees or renews.
SYNC_CHUNK = 500


class Limits:
    def __init__(self, redis: Redis, keys: KeySchema, scripts: Scripts, batch: ScriptBatch) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._batch = batch

    async def take_request(self, address: str, rate_per_s: float, burst: int) -> int:
        """Take one request token from ``address``'s bucket (``ip_bucket.lua``); the whole
        tokens left, or ``RateLimited`` with the wait when there is none."""
        reply: list[Any] = await self._batch.call(
            self._scripts.ip_bucket, [self._keys.client_rate(address)], [repr(float(rate_per_s)), burst]
        )
        if int(reply[0]) == 1:
            return int(reply[1])
        wait_ms = int(reply[1])
        raise RateLimited(
            f"too many requests from this address: at most {rate_per_s:g} a second "
            f"(bursts of {burst}); retry in {wait_ms} ms",
            retry_after_ms=wait_ms,
        )

    async def open_connection(self, user_id: str, slot: str, most: int, ttl_ms: int) -> int:
        """Take a connection slot for the user (``connection_open.lua``); the user's open
        slots counting it, or ``TooManyConnections`` if the user already holds ``most``."""
        reply: list[Any] = await self._batch.call(
            self._scripts.connection_open, [self._keys.user(user_id).connections], [slot, most, ttl_ms]
        )
        if int(reply[0]) == 1:
            return int(reply[1])
        raise TooManyConnections(
            f"this account already has {reply[1]} live connections open (at most {most}); close one and retry"
        )

    async def sync_connections(
        self, held: Mapping[str, Sequence[str]], released: Sequence[tuple[str, str]], ttl_ms: int
    ) -> None:
        """Free the slots of closed connections, and keep those in ``held`` (user -> slot ids)
        alive for another ``ttl_ms`` (``connection_refresh.lua``), a pipeline per ``SYNC_CHUNK``."""
        script = self._scripts.connection_refresh
        ops = [(self._keys.user(user_id).connections, [slot], False) for user_id, slot in released]
        ops += [(self._keys.user(user_id).connections, list(slots), True) for user_id, slots in held.items()]
        # In pipelines of a bounded size, so that other clients' commands get in between.
        for start in range(0, len(ops), SYNC_CHUNK):

            def build(
                pipe: Pipeline, chunk: Sequence[tuple[str, list[str], bool]] = ops[start : start + SYNC_CHUNK]
            ) -> None:
                for key, slots, refresh in chunk:
                    if refresh:
                        queue_script(pipe, script, [key], [ttl_ms, *slots])
                    else:
                        pipe.zrem(key, *slots)

            await run_pipeline(self._redis, build, [script])
