"""What differs between one engine and a cluster, in one place: ``Topology.of(redis)``.

The stores are written against redis-py's ``Redis`` and keep each script's and pipeline's
keys in one slot (``keys.py``), which is all a cluster asks of most calls. The few that
must know which they talk to ask the topology: reading many rooms' streams (one blocking
``XREAD`` against one engine, one per slot on a cluster), the replica fence's routing to a
slot's master, the replication report of every master, and reads at one instant over many
accounts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster

from server.keys import KeySchema
from server.store.wakeups import RoomWakeups

T = TypeVar("T")
# How many of one read's transactions a cluster client sends at once.
CONCURRENT_TRANSACTIONS = 16
StreamEntry = tuple[str, dict[str, str]]


class Topology:
    """One engine: every key on one connection."""

    # A bare connection to the engine reaches every key (a reader may bypass the client).
    one_connection = True

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @staticmethod
    def of(redis: Redis) -> Topology:
        return ClusterTopology(redis) if isinstance(redis, RedisCluster) else Topology(redis)

    def wakeups(self, keys: KeySchema) -> RoomWakeups | None:
        """The rooms' wake-up subscriptions, where a blocking read of every room cannot be
        made (``store.wakeups``); None on one engine."""
        return None

    async def read_streams(
        self, streams: dict[str, str], count: int, block_ms: int | None
    ) -> list[tuple[str, list[StreamEntry]]]:
        """Up to ``count`` new entries of each stream (key -> offset), by key; one engine
        waits up to ``block_ms`` when there are none (None: no wait)."""
        reply = await self.redis.xread(streams, count=count, block=block_ms)
        return list(reply or [])

    def master_of(self, key: str) -> str:
        """The name of the master serving ``key`` ("" on one engine)."""
        return ""

    async def replication_infos(self) -> dict[str, dict[str, Any]]:
        """``INFO replication`` of every master, by master name."""
        return {"engine": await self.redis.info("replication")}

    def on(self, master: str) -> dict[str, Any]:
        """The options that send a pipelined command to ``master`` itself."""
        return {}

    def unredirected(self) -> dict[str, Any]:
        """The options of a pipeline's ``execute`` that return redirections as errors
        rather than follow them."""
        return {}

    async def refresh_slots(self) -> None:
        """Learn the slots' masters again, after a redirection."""

    async def read_at_one_instant(
        self, queue: Callable[[Pipeline, T], None], groups: Sequence[T]
    ) -> list[Any]:
        """The replies of the commands ``queue`` makes for each group, each group's read at
        one instant (MULTI/EXEC): all groups in one transaction on one engine. ``queue``
        sends plain ``execute_command`` calls (a cluster transaction passes the ``keys=``
        option of redis-py's command methods on to reply parsers that take none)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for group in groups:
                queue(pipe, group)
            replies: list[Any] = await pipe.execute()
        return replies


class ClusterTopology(Topology):
    """A cluster: each key on its slot's master."""

    one_connection = False

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self.cluster: RedisCluster = redis

    def wakeups(self, keys: KeySchema) -> RoomWakeups | None:
        return RoomWakeups(self.cluster, keys)

    async def read_streams(
        self, streams: dict[str, str], count: int, block_ms: int | None
    ) -> list[tuple[str, list[StreamEntry]]]:
        """One XREAD per hash slot (a command's keys must share one), all in one pipeline
        that goes to each node once. They do not block: the hub reads again at its next
        tick anyway."""
        by_slot: dict[int, dict[str, str]] = {}
        for key, offset in streams.items():
            by_slot.setdefault(self.cluster.keyslot(key), {})[key] = offset
        async with self.cluster.pipeline() as pipe:
            for group in by_slot.values():
                pipe.xread(group, count=count)
            replies = await pipe.execute()
        return [(key, entries) for reply in replies for key, entries in (reply or [])]

    def master_of(self, key: str) -> str:
        return str(self.cluster.get_node_from_key(key).name)

    async def replication_infos(self) -> dict[str, dict[str, Any]]:
        infos: dict[str, dict[str, Any]] = await self.cluster.info(
            "replication", target_nodes=RedisCluster.PRIMARIES
        )
        return infos

    def on(self, master: str) -> dict[str, Any]:
        return {"target_nodes": self.cluster.get_node(node_name=master)}

    def unredirected(self) -> dict[str, Any]:
        return {"allow_redirections": False}

    async def refresh_slots(self) -> None:
        await self.cluster.nodes_manager.initialize()

    async def read_at_one_instant(
        self, queue: Callable[[Pipeline, T], None], groups: Sequence[T]
    ) -> list[Any]:
        """One transaction per group (a transaction's keys must share a slot), at most
        ``CONCURRENT_TRANSACTIONS`` at once: each is one engine call with its own time bound,
        and hundreds sent together would queue behind each other past it."""
        gate = asyncio.Semaphore(CONCURRENT_TRANSACTIONS)

        async def one(group: T) -> list[Any]:
            async with gate, self.cluster.pipeline(transaction=True) as pipe:
                queue(pipe, group)
                got: list[Any] = await pipe.execute()
            return got

        return [reply for replies in await asyncio.gather(*map(one, groups)) for reply in replies]
