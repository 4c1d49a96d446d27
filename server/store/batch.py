"""Group commit for the hot path: scripts called in one event-loop turn share one pipeline.

Each gift takes a debit and then two deliveries, and under load many gifts are in flight at
once. Sent one by one, every script pays a pooled-connection checkout, its own write and read,
and redis-py's per-command wrapping, which together cost more CPU than the script's work in the
engine. ``ScriptBatch.call`` instead queues the script and returns a future; once the callers
woken in the same turn have queued theirs, the batch goes out as one non-transactional
pipeline on one connection, and each future gets its own reply. Batches do not wait for each
other: a batch sent while an earlier one is in flight takes another connection.

Nothing waits for a batch to fill (``store.coalesce``): the flush runs at the next turn of
the event loop, so a lone gift goes out as fast as before, and a busy turn carries as many
calls as it produced (at most ``MAX_BATCH``). Each script is still atomic on its own; a
pipeline only shares the round trip. A script the engine does not know (after a restart or
SCRIPT FLUSH) is loaded and the calls it refused, and only those, are sent again
(``ScriptRunner.execute``): NOSCRIPT means they did not run.

``ScriptBatch.read`` queues a plain read the same way: the room check each gift makes before
its debit shares the round trip with the scripts of the other gifts in flight, and the gifts
of one turn to the same room share one read of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from server import metrics
from server.store.coalesce import Coalescer
from server.store.connection import charged_to, current_budgets
from server.store.scripts import Arg, Call, Script, ScriptRunner

T = TypeVar("T")

# A turn with more calls than this sends them in several pipelines.
MAX_BATCH = 512


class _Queued:
    """One queued call, the future its caller awaits and how to read its reply."""

    __slots__ = ("budgets", "call", "future", "parse")

    def __init__(self, call: Call, parse: Callable[[Any], Any], future: asyncio.Future[Any]) -> None:
        self.call = call
        self.parse = parse
        self.future = future
        # Its callers' request budgets (a shared read has several): the batch waits no longer
        # than any of its callers may.
        self.budgets = [current_budgets()]


def _reply(reply: Any) -> Any:
    return reply


class ScriptBatch:
    def __init__(self, runner: ScriptRunner) -> None:
        self._runner = runner
        self._turn: Coalescer[_Queued] = Coalescer(self._send, MAX_BATCH)
        # The reads queued in the turn not yet sent (``_reads_of`` is its list), by command.
        self._reads: dict[tuple[Arg, ...], _Queued] = {}
        self._reads_of: list[_Queued] | None = None

    def call(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        parse: Callable[[Any], T] = _reply,
    ) -> asyncio.Future[T]:
        """Queue one script call; the future gets ``parse(reply)``, or the error the call
        raised (the engine's, the connection's, or one ``parse`` raised)."""
        return self._queue(Call(script, keys, args), parse).future

    def read(self, command: Sequence[Arg], parse: Callable[[Any], T] = _reply) -> asyncio.Future[T]:
        """Queue one read-only command (``("HGETALL", key)``); its future as for ``call``.

        The same read queued again in the same turn is not sent twice: every caller gets its
        own future (cancelling one cancels no other) of the one reply, parsed once, and the
        read counts against every caller's budget, so it waits no longer than any of them may."""
        if self._reads_of is not self._turn.pending:  # a new turn: nothing queued to share yet
            self._reads = {}
            self._reads_of = self._turn.pending
        key = tuple(command)
        queued = self._reads.get(key)
        if queued is None:
            queued = self._queue(Call.command(*command), parse)
            if self._reads_of is self._turn.pending:  # unless that call filled and sent the turn
                self._reads[key] = queued
        else:
            queued.budgets.append(current_budgets())
        return _follow(queued.future)

    def write(self, command: Sequence[Arg]) -> asyncio.Future[Any]:
        """Queue one plain write command (``("HDEL", key, field)``), never shared with
        another caller's; its future as for ``call``."""
        return self._queue(Call.command(*command), _reply).future

    def _queue(self, call: Call, parse: Callable[[Any], Any]) -> _Queued:
        queued = _Queued(call, parse, asyncio.get_running_loop().create_future())
        self._turn.add(queued)
        return queued

    async def _send(self, queued: list[_Queued]) -> None:
        metrics.ENGINE_PIPELINES.inc()
        metrics.ENGINE_PIPELINED_CALLS.inc(len(queued))
        try:
            with charged_to(group for item in queued for group in item.budgets):
                replies = await self._runner.execute([item.call for item in queued])
        except BaseException as exc:
            for item in queued:
                if not item.future.done():
                    item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for item, reply in zip(queued, replies, strict=True):
            if item.future.done():  # the caller gave up waiting; the script ran all the same
                continue
            if isinstance(reply, Exception):
                item.future.set_exception(reply)
                continue
            try:
                item.future.set_result(item.parse(reply))
            except Exception as exc:
                item.future.set_exception(exc)


def _follow(source: asyncio.Future[T]) -> asyncio.Future[T]:
    """A future of its own that gets ``source``'s result or error."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def copy(done: asyncio.Future[T]) -> None:
        if future.done():  # its caller gave up waiting
            return
        if done.cancelled():
            future.cancel()
        elif (error := done.exception()) is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result())

    source.add_done_callback(copy)
    return future
