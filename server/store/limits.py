"""Abuse limits in the engine: a request token bucket per client address, and each user's
open connection slots, so that both hold across every server process sharing the engine.

A room socket's handshake asks both at once: the two live in different cluster slots, so they
cannot be one script, but each call is queued on the hot path's group commit
(``store.batch``) as soon as it is made, and the two go out in one pipeline, one round trip.
When the address turns out to be over its rate after the slot was taken, the handshake gives
the slot back (``close_connection``) before it answers, so a refused handshake holds none."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from server.errors import RateLimited, TooManyConnections
from server.keys import KeySchema, UserKeys
from server.store.batch import ScriptBatch
from server.store.scripts import CONNECTION_OPEN, CONNECTION_REFRESH, IP_BUCKET, Arguments, Call, ScriptRunner

# Users whose slots one pipeline frees or renews.
SYNC_CHUNK = 500


class Limits:
    def __init__(self, keys: KeySchema, runner: ScriptRunner, batch: ScriptBatch) -> None:
        self._keys = keys
        self._runner = runner
        self._batch = batch

    def take_request(self, address: str, rate_per_s: float, burst: int) -> asyncio.Future[int]:
        """Take one request token from ``address``'s bucket (``ip_bucket.lua``); the whole
        tokens left, or ``RateLimited`` with the wait when there is none.

        The call is queued at once, so that it shares one engine round trip with whatever
        else this turn of the event loop queues (``open_connection`` of the same handshake)."""

        def parse(reply: list[Any]) -> int:
            if int(reply[0]) == 1:
                return int(reply[1])
            wait_ms = int(reply[1])
            raise RateLimited(
                f"too many requests from this address: at most {rate_per_s:g} a second "
                f"(bursts of {burst}); retry in {wait_ms} ms",
                retry_after_ms=wait_ms,
            )

        arguments = ip_bucket_arguments(self._keys, address, rate_per_s, burst)
        return self._batch.call(IP_BUCKET, *arguments, parse)

    def open_connection(self, user_id: str, slot: str, most: int, ttl_ms: int) -> asyncio.Future[int]:
        """Take a connection slot for the user (``connection_open.lua``); the user's open
        slots counting it, or ``TooManyConnections`` if the user already holds ``most``.
        Queued at once, as ``take_request`` is."""

        def parse(reply: list[Any]) -> int:
            if int(reply[0]) == 1:
                return int(reply[1])
            raise TooManyConnections(
                f"this account already has {reply[1]} live connections open (at most {most}); "
                "close one and retry"
            )

        return self._batch.call(
            CONNECTION_OPEN, *connection_open_arguments(self._keys.user(user_id), slot, most, ttl_ms), parse
        )

    async def close_connection(self, user_id: str, slot: str) -> None:
        """Free one slot at once: a connection refused after its slot was taken."""
        await self._runner.pipeline([Call.command("ZREM", self._keys.user(user_id).connections, slot)])

    async def sync_connections(
        self, held: Mapping[str, Sequence[str]], released: Sequence[tuple[str, str]], ttl_ms: int
    ) -> None:
        """Free the slots of closed connections, and keep those in ``held`` (user -> slot ids)
        alive for another ``ttl_ms`` (``connection_refresh.lua``), a pipeline per ``SYNC_CHUNK``."""
        calls = [
            Call.command("ZREM", self._keys.user(user_id).connections, slot) for user_id, slot in released
        ]
        calls += [
            Call(CONNECTION_REFRESH, *connection_refresh_arguments(self._keys.user(user_id), slots, ttl_ms))
            for user_id, slots in held.items()
        ]
        # In pipelines of a bounded size, so that other clients' commands get in between.
        for start in range(0, len(calls), SYNC_CHUNK):
            await self._runner.pipeline(calls[start : start + SYNC_CHUNK])


def ip_bucket_arguments(keys: KeySchema, address: str, rate_per_s: float, burst: int) -> Arguments:
    """KEYS and ARGV of ``ip_bucket.lua``."""
    return [keys.client_rate(address)], [repr(float(rate_per_s)), burst]


def connection_open_arguments(user: UserKeys, slot: str, most: int, ttl_ms: int) -> Arguments:
    """KEYS and ARGV of ``connection_open.lua``."""
    return [user.connections], [slot, most, ttl_ms]


def connection_refresh_arguments(user: UserKeys, slots: Sequence[str], ttl_ms: int) -> Arguments:
    """KEYS and ARGV of ``connection_refresh.lua``."""
    return [user.connections], [ttl_ms, *slots]
