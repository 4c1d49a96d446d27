"""Engine connections whose commands are packed by hiredis, in C.

redis-py's asyncio connections parse replies with hiredis when it is installed, but still
pack every command in Python, argument by argument; on the gift path, with pipelines of
14-argument EVALSHAs, that packing was the server's largest single cost. ``hiredis_packing``
gives whichever connection class the URL selects (TCP, TLS or unix socket) a
``pack_command`` that makes one ``hiredis.pack_command`` call instead, leaving the rest of
the connection as it is. It splits multi-word command names (``SCRIPT LOAD``) as redis-py
does, and refuses arguments other than str, bytes, int, float and memoryview with
redis-py's ``DataError``.

The same class copes with a connection whose transport was closed under it (the peer reset
it while idle, as happens to every pooled connection to a cluster master that just failed):
a command not yet written takes a new connection, and a transport that closes during the
write is reported as redis-py's ``ConnectionError``, which its retries and cluster failover
handle. redis-py 8.1 writes on the dead transport and lets the event loop's own error escape
instead (``RuntimeError`` from uvloop, ``AttributeError`` or ``TypeError`` from asyncio;
redis-py issue #4287, fixed upstream after 8.1), which a request answered 500.

Every engine call of the store ends within a deadline (``GIFTING_ENGINE_TIMEOUT_MS``), all
of it: waiting for a pooled connection, connecting, the handshake, health checks, reading
the reply and every retry and reconnect redis-py makes on the way, which nest and add up
to minutes against a stalled engine whatever the socket timeouts. ``DeadlineRedis`` and
``DeadlineCluster`` (and their pipelines) wrap each command and pipeline in one
``asyncio.timeout``; a request's calls together keep within one budget of that length
too (``engine_budget``), so a stalled engine costs a client one bounded wait, then a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, DataError, ResponseError
from redis.exceptions import TimeoutError as EngineTimeout


def _pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
    name = args[0]
    if (isinstance(name, str) and " " in name) or (isinstance(name, bytes) and b" " in name):
        args = (*name.split(), *args[1:])
    try:
        return [pack_command(args)]
    except TypeError as exc:
        raise DataError(str(exc)) from exc


def hiredis_packing(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """``connection_class`` with hiredis packing its commands, and a transport closed under
    it replaced before a command is written, or reported as ``ConnectionError`` if it closes
    during the write."""

    class Packed(connection_class):  # type: ignore[misc]
        pack_command = _pack_command

        async def send_packed_command(
            self, command: bytes | str | Iterable[bytes], check_health: bool = True
        ) -> None:
            writer = self._writer
            if writer is not None and writer.is_closing():
                # Closed while it sat in its pool (a cluster node's pool hands connections
                # out unchecked): the command, not yet written, takes a new connection.
                await self.disconnect(nowait=True)
            try:
                await super().send_packed_command(command, check_health)
            except (AttributeError, RuntimeError, TypeError) as exc:
                # The command was packed before; what raises these here is the transport,
                # closed under the write (redis-py has disconnected the connection).
                raise ConnectionError("the connection was closed while the command was written") from exc

    Packed.__name__ = Packed.__qualname__ = connection_class.__name__
    return Packed


class _Budget:
    """What is left of a request's time for the engine, in seconds."""

    __slots__ = ("left",)

    def __init__(self, left: float) -> None:
        self.left = left


Budgets = tuple[_Budget, ...]
# The budgets the current engine call counts against: its request's (and an outer one's),
# or, in a batch sent for several requests, every one of theirs.
_BUDGETS: ContextVar[Budgets] = ContextVar("engine_budgets", default=())


@contextlib.contextmanager
def engine_budget(timeout_s: float) -> Iterator[None]:
    """The engine calls made in the block (by this task, and by tasks it starts) wait for
    the engine ``timeout_s`` in all, rather than each: a request's budget. Time spent
    elsewhere (reading the body, another service) does not count. Inside another budget,
    the outer one keeps counting too."""
    token = _BUDGETS.set((*_BUDGETS.get(), _Budget(timeout_s)))
    try:
        yield
    finally:
        _BUDGETS.reset(token)


@contextlib.contextmanager
def unbudgeted() -> Iterator[None]:
    """The engine calls made in the block count against no request's budget, each still
    bounded on its own: for work that reads the whole engine on purpose (the books audit)."""
    token = _BUDGETS.set(())
    try:
        yield
    finally:
        _BUDGETS.reset(token)


def current_budgets() -> Budgets:
    """The budgets an engine call made now counts against (for a call sent later, by a batch)."""
    return _BUDGETS.get()


@contextlib.contextmanager
def charged_to(groups: Iterable[Budgets]) -> Iterator[None]:
    """The engine calls made in the block count against every budget of ``groups`` (those of
    the calls a batch carries): it ends within the least of them, and spends from each."""
    merged = tuple({id(budget): budget for group in groups for budget in group}.values())
    token = _BUDGETS.set(merged)
    try:
        yield
    finally:
        _BUDGETS.reset(token)


def blocking_s(args: tuple[Any, ...]) -> float:
    """How long the engine may rightly hold the command ``args`` before it answers: the
    ``BLOCK`` of an ``XREAD``, the timeout of a ``WAIT``; 0 for any other command."""
    name = _word(args[0]) if args else ""
    if name in ("XREAD", "XREADGROUP"):
        for i, arg in enumerate(args[1:-1], start=1):
            option = _word(arg)
            if option == "STREAMS":  # keys and ids follow: no more options
                break
            if option == "BLOCK":
                return int(args[i + 1]) / 1000
    elif name == "WAIT" and len(args) >= 3:
        return int(args[2]) / 1000
    return 0.0


def _word(arg: Any) -> str:
    """A command's name or option, upper case, whether redis-py passed it as str or bytes."""
    if isinstance(arg, bytes | bytearray | memoryview):
        return bytes(arg).decode("latin-1").upper()
    return str(arg).upper()


@contextlib.asynccontextmanager
async def within_deadline(timeout_s: float | None, blocking: float = 0.0) -> AsyncIterator[None]:
    """Run one engine call (a command, or a pipeline with its reconnects and retries) so that
    it ends within ``timeout_s``, or what is left of its request's budget if that is less,
    plus ``blocking`` (the time it asks the engine to wait); past it, the call is cancelled
    (its connection closed) and raises redis-py's ``TimeoutError``, an outage like any other
    (``store.failures``). ``timeout_s`` None: no deadline."""
    if timeout_s is None:
        yield
        return
    budgets = _BUDGETS.get()
    allowed = max(0.0, min([timeout_s, *(budget.left for budget in budgets)]))
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with asyncio.timeout_at(start + allowed + blocking):
            yield
    except TimeoutError as exc:
        raise EngineTimeout(f"the engine did not answer within {allowed + blocking:.3f} s") from exc
    finally:
        spent = max(0.0, loop.time() - start - blocking)
        for budget in budgets:
            budget.left -= spent


class DeadlineRedis(Redis):  # type: ignore[misc]
    """A single-engine client whose every command and pipeline ends within ``timeout_s``."""

    timeout_s: float | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        async with within_deadline(self.timeout_s, blocking_s(args)):
            return await super().execute_command(*args, **options)

    async def pipelined(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies of ``commands``, written in one write on one pooled connection and
        read in order, each error reply in place of its reply; a connection's error raised.

        What redis-py's ``Pipeline.execute`` does for a non-transactional pipeline (the
        same pooled connection, the same retries with a reconnect between them, the same
        reply callbacks), without what the group commit never uses: a command stack, WATCH,
        scripts loaded through the pipeline. On the gift path that machinery cost more of
        the server's CPU than reading the replies."""
        blocking = sum(blocking_s(tuple(command)) for command in commands)
        async with within_deadline(self.timeout_s, blocking):
            pool = self.connection_pool
            connection = await pool.get_connection()
            try:
                replies: list[Any] = await connection.retry.call_with_retry(
                    lambda: self._exchange(connection, commands),
                    lambda _: connection.disconnect(),
                )
                return replies
            finally:
                await pool.release(connection)

    async def _exchange(self, connection: AbstractConnection, commands: Sequence[Sequence[Any]]) -> list[Any]:
        await connection.send_packed_command(connection.pack_commands(commands))
        callbacks = self.response_callbacks
        replies: list[Any] = []
        for command in commands:
            try:
                reply = await connection.read_response()
            except ResponseError as exc:
                replies.append(exc)
                continue
            callback = callbacks.get(command[0]) if command[0] != "EVALSHA" else None
            replies.append(reply if callback is None else callback(reply))
        return replies

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = DeadlinePipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.timeout_s = self.timeout_s
        return pipe


async def pipelined(redis: Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """The replies of ``commands`` sent as one non-transactional pipeline, each error reply
    in place of its reply; a connection's error raised. On a single engine, the client's own
    lean exchange (``DeadlineRedis.pipelined``); on a cluster, redis-py's cluster pipeline,
    which routes each command to its slot's node."""
    if isinstance(redis, DeadlineRedis):
        return await redis.pipelined(commands)
    async with redis.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    return replies


class DeadlinePipeline(Pipeline):  # type: ignore[misc]
    timeout_s: float | None = None
    blocking: float = 0.0

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self.blocking += blocking_s(args)
        return super().execute_command(*args, **kwargs)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            async with within_deadline(self.timeout_s, self.blocking):
                replies: list[Any] = await super().execute(raise_on_error)
                return replies
        finally:
            self.blocking = 0.0


class DeadlineCluster(RedisCluster):  # type: ignore[misc]
    """The same for a cluster client: redirections and failover retries count within it."""

    timeout_s: float | None = None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with within_deadline(self.timeout_s, blocking_s(args)):
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused, as redis-py refuses it
        pipe = DeadlineClusterPipeline(self, transaction)
        pipe.timeout_s = self.timeout_s
        return pipe


class DeadlineClusterPipeline(ClusterPipeline):  # type: ignore[misc]
    timeout_s: float | None = None
    blocking: float = 0.0

    def execute_command(self, *args: Any, **kwargs: Any) -> ClusterPipeline:
        self.blocking += blocking_s(args)
        return super().execute_command(*args, **kwargs)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            async with within_deadline(self.timeout_s, self.blocking):
                replies: list[Any] = await super().execute(raise_on_error, allow_redirections)
                return replies
        finally:
            self.blocking = 0.0
