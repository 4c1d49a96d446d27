"""Group commit for the hot path: scripts called in one event-loop turn share one pipeline.

Each gift takes a debit and then two deliveries, and under load many gifts are in flight at
once. Sent one by one, every script pays a pooled-connection checkout, its own write and read,
and redis-py's per-command wrapping, which together cost more CPU than the script's work in the
engine. ``ScriptBatch.call`` instead queues the script and returns a future; once the callers
woken in the same turn have queued theirs, the batch goes out as one non-transactional
pipeline on one connection, and each future gets its own reply. Batches do not wait for each
other: a batch sent while an earlier one is in flight takes another connection.

Nothing waits for a batch to fill: the flush runs at the next turn of the event loop, so a
lone gift goes out as fast as before, and a busy turn carries as many calls as it produced
(at most ``MAX_BATCH``). Each script is still atomic on its own; a pipeline only shares the
round trip. A script the engine does not know (after a restart or SCRIPT FLUSH) is loaded
and the calls it refused, and only those, are sent again: NOSCRIPT means they did not run.

``ScriptBatch.read`` queues a plain read the same way: the room check each gift makes before
its debit shares the round trip with the scripts of the other gifts in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from server.store.connection import charged_to, current_budgets
from server.store.scripts import queue_script

T = TypeVar("T")

# A turn with more calls than this sends them in several pipelines.
MAX_BATCH = 512

Arg = str | int | bytes


class _Call:
    """One queued call: ``script`` with ``keys`` and ``args``, or (no script) the plain
    command ``args``."""

    __slots__ = ("args", "budgets", "future", "keys", "parse", "script")

    def __init__(
        self,
        script: AsyncScript | None,
        keys: Sequence[str],
        args: Sequence[Arg],
        parse: Callable[[Any], Any],
        future: asyncio.Future[Any],
    ) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.parse = parse
        self.future = future
        # The caller's request budget: the batch waits no longer than its callers may.
        self.budgets = current_budgets()


def _reply(reply: Any) -> Any:
    return reply


class ScriptBatch:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[_Call] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def call(
        self,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[Arg],
        parse: Callable[[Any], T] = _reply,
    ) -> asyncio.Future[T]:
        """Queue one script call; the future gets ``parse(reply)``, or the error the call
        raised (the engine's, the connection's, or one ``parse`` raised)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue(_Call(script, keys, args, parse, future))
        return future

    def read(self, command: Sequence[Arg], parse: Callable[[Any], T] = _reply) -> asyncio.Future[T]:
        """Queue one read-only command (``("HGETALL", key)``); its future as for ``call``."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue(_Call(None, (), command, parse, future))
        return future

    def _queue(self, call: _Call) -> None:
        self._pending.append(call)
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        calls, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Call]) -> None:
        try:
            with charged_to(call.budgets for call in calls):
                replies = await self._execute(calls)
        except BaseException as exc:
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for call, reply in zip(calls, replies, strict=True):
            if call.future.done():  # the caller gave up waiting; the script ran all the same
                continue
            if isinstance(reply, Exception):
                call.future.set_exception(reply)
                continue
            try:
                call.future.set_result(call.parse(reply))
            except Exception as exc:
                call.future.set_exception(exc)

    async def _execute(self, calls: list[_Call]) -> list[Any]:
        replies = await self._pipeline(calls)
        refused = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if refused:
            lost = {id(script): script for i in refused if (script := calls[i].script) is not None}
            for script in lost.values():
                script.sha = await self._redis.script_load(script.script)
            for i, reply in zip(refused, await self._pipeline([calls[i] for i in refused]), strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                if call.script is None:
                    pipe.execute_command(*call.args)
                else:
                    queue_script(pipe, call.script, call.keys, call.args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
