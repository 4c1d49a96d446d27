"""``Store``: one engine connection and the typed stores that share it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from server.keys import KeySchema
from server.settings import Settings, cluster_nodes
from server.store.adminlog import AdminLog
from server.store.batch import ScriptBatch
from server.store.battles import Battles
from server.store.catalog import CatalogChanges
from server.store.chat import Chat
from server.store.connection import DeadlineCluster, DeadlineRedis, hiredis_packing
from server.store.earnings import CreatorEarnings
from server.store.failures import ENGINE_ERRORS
from server.store.likes import Likes
from server.store.limits import Limits
from server.store.moderation import Moderation
from server.store.outbox import Outbox
from server.store.overlays import OverlayTokens
from server.store.payments import Payments
from server.store.replication import ReplicaFence
from server.store.reversals import Reversals
from server.store.rooms import Rooms
from server.store.scripts import ScriptRunner
from server.store.social import Social
from server.store.topology import Topology
from server.store.videos import Videos
from server.store.wallets import Wallets
from server.store.withdrawals import Withdrawals

# Engine connections per process, and how long a command waits for a free one.
MAX_CONNECTIONS = 100
POOL_WAIT_S = 5.0
# Connections per cluster node and process (see connect_cluster).
CLUSTER_NODE_CONNECTIONS = 1_000


class Store:
    def __init__(
        self,
        redis: Redis,
        keys: KeySchema,
        room_stream_len: int = 10_000,
        replica_acks: int = 0,
        replica_timeout_ms: int = 500,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.topology = Topology.of(redis)
        self.replication = ReplicaFence(self.topology, keys, replica_acks, replica_timeout_ms)
        runner = ScriptRunner(redis)
        # The gift path's scripts (debit, room publish, creator credit) share round trips.
        batch = ScriptBatch(runner)
        self._batch = batch
        self.wallets = Wallets(redis, keys, batch)
        self.payments = Payments(redis, keys, runner)
        self.social = Social(redis, keys, runner, room_stream_len)
        self.rooms = Rooms(self.topology, keys, runner, batch, room_stream_len, self.social)
        self.videos = Videos(keys, runner, batch)
        self.earnings = CreatorEarnings(redis, keys, runner, batch)
        self.outbox = Outbox(redis, keys, batch)
        self.withdrawals = Withdrawals(redis, keys, runner)
        self.reversals = Reversals(redis, keys)
        self.catalog = CatalogChanges(redis, keys)
        self.admin_log = AdminLog(redis, keys)
        self.overlays = OverlayTokens(redis, keys, runner, room_stream_len)
        self.limits = Limits(keys, runner, batch)
        self.likes = Likes(redis, keys, runner, room_stream_len)
        self.chat = Chat(redis, keys, runner, batch, room_stream_len)
        self.moderation = Moderation(redis, keys, runner, batch, room_stream_len)
        self.battles = Battles(redis, keys, runner, batch, room_stream_len)

    @classmethod
    def from_url(
        cls,
        url: str,
        keys: KeySchema,
        room_stream_len: int = 10_000,
        *,
        timeout_ms: int = Settings.engine_timeout_ms,
        **options: int,
    ) -> Store:
        """A store on the engine at ``url``: ``redis://``, ``rediss://``, ``unix://``, or a
        cluster as ``redis+cluster://host:port,host:port,...`` (any reachable nodes). Each
        engine call ends within ``timeout_ms`` (``store.connection``). ``options`` are the
        replica settings of ``__init__``."""
        nodes = cluster_nodes(url)
        if nodes is not None:
            return cls(connect_cluster(nodes, timeout_ms=timeout_ms), keys, room_stream_len, **options)
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            **client_options(deadline=True),
            # Under a burst, commands wait for one of the pool's connections rather than fail
            # with "too many connections" (redis-py's default pool refuses past its size).
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT_S,
        )
        pool.connection_class = hiredis_packing(pool.connection_class)
        redis = cast(DeadlineRedis, DeadlineRedis.from_pool(pool))
        redis.timeout_s = timeout_ms / 1000
        return cls(redis, keys, room_stream_len, **options)

    async def ping(self) -> bool:
        """True if the engine answers; never raises."""
        try:
            return bool(await self.redis.ping())
        except ENGINE_ERRORS:
            return False

    async def replicated(
        self,
        *,
        users: Iterable[str] = (),
        rooms: Iterable[str] = (),
        keys: Iterable[str] = (),
        videos: Iterable[str] = (),
    ) -> None:
        """Wait until the configured replicas hold every write made so far in the slots of
        these users, rooms, keys and videos (``store.replication``); at once when none are
        required."""
        await self.replication.confirm(
            *(self.keys.user(user).wallet for user in users),
            *(self.keys.room(room).info for room in rooms),
            *(self.keys.video(video).info for video in videos),
            *keys,
        )

    async def engine_ms(self) -> int:
        """The engine's clock, unix milliseconds (on a cluster, one master's)."""
        reply: Any = await self.redis.time()
        if isinstance(reply, dict):  # a cluster asks every node
            reply = next(iter(reply.values()))
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000

    async def set_profile(self, user_id: str, name: str, role: str) -> None:
        await self.redis.hset(self.keys.user(user_id).profile, mapping={"name": name, "role": role})

    def profile_name(self, user_id: str) -> asyncio.Future[str | None]:
        """The user's display name, None if they have none; the read is queued at once on the
        group commit (``store.batch``), sharing the round trip of what else this turn sends."""
        return self._batch.read(("HGET", self.keys.user(user_id).profile, "name"))

    async def profile_name_and_region(self, user_id: str) -> tuple[str | None, str | None]:
        """The user's display name and saved region (``None`` for either they do not have)."""
        name, region = await self.redis.hmget(self.keys.user(user_id).profile, ["name", "region"])
        return name, region

    async def set_region(self, user_id: str, region: str | None) -> None:
        """Save the user's region in their profile (``None``: forget it)."""
        key = self.keys.user(user_id).profile
        if region is None:
            await self.redis.hdel(key, "region")
        else:
            await self.redis.hset(key, "region", region)

    async def close(self) -> None:
        await self.rooms.aclose()
        await self.redis.aclose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def client_options(deadline: bool) -> dict[str, Any]:
    """The options every engine client of the store shares, single engine or cluster.

    A few quick reconnects ride out a dropped connection; a longer outage must surface as
    engine_unavailable at once rather than hang requests. Every write the store sends is
    idempotent, so a retry after a lost reply cannot apply anything twice; and a write that
    makes something new (an order, a withdrawal, a gift's event, a battle, a slot, a token)
    knows its own first run by the new id it carries, so its caller gets the first answer, not
    a refusal (``tests/faults/test_lost_replies.py``).

    A client whose every call ends within a ``deadline`` (``store.connection``) has no socket
    timeout of its own: the deadline bounds each read already, and redis-py's timer on every
    reply cost about 4 µs of CPU each, 19 µs in a pipeline of 5 (a gift's calls are
    4 or 5 replies). A client without one (``connect_cluster`` for the audit) keeps 5 s.
    """
    return {
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 2),
        "socket_timeout": None if deadline else 5,
        "socket_connect_timeout": 2,
        "health_check_interval": 30,
    }


def connect_cluster(
    nodes: list[tuple[str, int]], *, decode_responses: bool = True, timeout_ms: int | None = None
) -> Redis:
    """A cluster client that routes every command to the node serving its keys' slot, each
    call ending within ``timeout_ms`` if given (``store.connection``).

    It is typed as ``Redis``: the stores use only commands both clients have, and every
    script and pipeline keeps its keys in one slot (``keys.py``), which is all a cluster asks.
    """
    cluster = DeadlineCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        decode_responses=decode_responses,
        **client_options(deadline=timeout_ms is not None),
        # A cluster node's pool cannot make a command wait for a free connection (it refuses
        # one past its size), so each node's pool is larger than the single engine's.
        max_connections=CLUSTER_NODE_CONNECTIONS,
    )
    # RedisCluster takes no connection class, but builds every node (the startup ones now,
    # the discovered ones later) from one shared options dict that names it.
    packed = hiredis_packing(Connection)
    cluster.connection_kwargs["connection_class"] = packed
    for node in cluster.startup_nodes:
        node.connection_class = packed
    cluster.timeout_s = None if timeout_ms is None else timeout_ms / 1000
    return cast(Redis, cluster)
