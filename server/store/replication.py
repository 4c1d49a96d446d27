"""Acknowledge only what replicas hold: the fence that follows every money write.

Replication is asynchronous. A master answers a write before its replicas have it, and if
the master fails in that window, the replica promoted in its place never had the write. For
this server that would be an acknowledged gift or payment gone, or worse, a creator credit
gone after the gift's outbox entry was cleared on another master: nothing would deliver it
again.

With ``GIFTING_REPLICA_ACKS=N`` the server therefore confirms each money write before it
acknowledges it or clears what depends on it: it writes a fence key in the same slot and
sends ``WAIT N timeout`` right behind it, on the same connection to the same master. A
master replicates its writes in order, so once N replicas hold the fence they hold every
write that master made before it, the money write included. The fence is written after the
write's reply arrived, so this holds however the write itself was sent (a pipeline, another
connection, a redirection during a slot move). A fence the engine redirects (its slot moved
or is moving) is sent again to the slot's new master rather than followed: the WAIT queued
behind it would otherwise only wait for that connection's earlier writes.

If fewer than N replicas confirm within the timeout, ``NotReplicated`` is raised: a
``TimeoutError``, so a client sees ``503 engine_unavailable``. The write stands on the
master; a client retry with the same idempotency key replays it and is confirmed in turn,
and a delivery left unconfirmed keeps its outbox entry for the sweeper.

Fences asked for in one event-loop turn share one pipeline, with one fence per master, as
the gift path's scripts share theirs (``store.coalesce``): a lone fence goes out at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.exceptions import AskError, MovedError

from server.keys import KeySchema
from server.store.coalesce import Coalescer
from server.store.connection import charged_to, current_budgets
from server.store.failures import NotReplicated
from server.store.topology import Topology

# A fence outlives any WAIT; it only has to exist long enough to be replicated.
FENCE_TTL_MS = 60_000
# How long a fence redirected by a slot's move waits before it is sent again.
REDIRECTED_RETRY_S = 0.01


class _Fence:
    """The fence asked for one master in this turn, the future its callers await, and their
    request budgets: it waits no longer than any of them may."""

    __slots__ = ("budgets", "future", "key", "master")

    def __init__(self, master: str, key: str, future: asyncio.Future[None]) -> None:
        self.master = master
        self.key = key
        self.future = future
        self.budgets = [current_budgets()]


class ReplicaFence:
    def __init__(self, topology: Topology, keys: KeySchema, replicas: int = 0, timeout_ms: int = 500) -> None:
        self._topology = topology
        self._redis = topology.redis
        self._keys = keys
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self._turn: Coalescer[_Fence] = Coalescer(self._send)

    async def confirm(self, *keys: str) -> None:
        """Return once ``replicas`` replicas hold every write made so far to the slots of
        ``keys``; raise ``NotReplicated`` if they do not in time. Free when replicas is 0."""
        if self.replicas == 0:
            return
        futures = {id(f): f for f in (self._fence(key) for key in keys)}
        await asyncio.gather(*futures.values())

    async def short_of_replicas(self) -> dict[str, int]:
        """Masters with fewer connected replicas than required, with how many they have:
        money writes in their slots answer 503 until they have enough."""
        if self.replicas == 0:
            return {}
        infos = await self._topology.replication_infos()
        connected = {master: int(info.get("connected_slaves", 0)) for master, info in infos.items()}
        return {master: count for master, count in connected.items() if count < self.replicas}

    def _fence(self, key: str) -> asyncio.Future[None]:
        master = self._topology.master_of(key)
        for pending in self._turn.pending:  # one fence per master and turn
            if pending.master == master:
                pending.budgets.append(current_budgets())
                return pending.future
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turn.add(_Fence(master, self._keys.fence(key), future))
        return future

    async def _send(self, fences: list[_Fence]) -> None:
        try:
            with charged_to(group for fence in fences for group in fence.budgets):
                acked = await self._wait({fence.master: fence.key for fence in fences})
        except Exception as exc:
            for fence in fences:
                if not fence.future.done():
                    fence.future.set_exception(exc)
            return
        for fence in fences:
            if fence.future.done():
                continue
            if acked[fence.master] >= self.replicas:
                fence.future.set_result(None)
            else:
                fence.future.set_exception(
                    NotReplicated(
                        f"{acked[fence.master]} of {self.replicas} replicas confirmed the write "
                        f"within {self.timeout_ms} ms"
                    )
                )

    async def _wait(self, fences: dict[str, str]) -> dict[str, int]:
        """Write each fence and WAIT behind it on the master serving it; replicas confirmed,
        by the master each fence was asked for.

        A fence redirected to another master (its slot moved, or is moving: MOVED, ASK) is
        not followed: the WAIT queued behind it on the first master would then prove nothing.
        It is sent again, to the master serving the slot by then, until the timeout.
        """
        acked = dict.fromkeys(fences, 0)
        todo = fences
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            targets = {asked: self._topology.master_of(key) for asked, key in todo.items()}
            async with self._redis.pipeline(transaction=False) as pipe:
                for asked, key in todo.items():
                    pipe.set(key, "1", px=FENCE_TTL_MS)
                    pipe.execute_command(
                        "WAIT", self.replicas, self.timeout_ms, **self._topology.on(targets[asked])
                    )
                replies: list[Any] = await pipe.execute(raise_on_error=False, **self._topology.unredirected())
            redirected = {}
            for (asked, key), fenced, waited in zip(todo.items(), replies[0::2], replies[1::2], strict=True):
                if isinstance(fenced, AskError):  # MovedError is an AskError too
                    redirected[asked] = key
                    if isinstance(fenced, MovedError):
                        await self._topology.refresh_slots()
                elif isinstance(fenced, Exception):
                    raise fenced
                elif isinstance(waited, Exception):
                    raise waited
                else:
                    acked[asked] = int(waited)
            if not redirected or time.monotonic() > deadline:
                return acked
            todo = redirected
            await asyncio.sleep(REDIRECTED_RETRY_S)
