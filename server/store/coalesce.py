"""Per-turn coalescing: what callers queue in one event-loop turn is sent together.

The cost model, the same for every user (the script batch, the replica fence, the outbox
clears): nothing waits for a batch to fill. The first item queued schedules a flush at the
next turn of the event loop, so a lone item goes out at once, and a busy turn hands every
item its callers queued to one ``send`` (at most ``limit``: a full batch goes out at once
and the next one starts). Sends do not wait for each other: a batch flushed while an
earlier one is in flight is sent beside it.

``send`` owns the outcome of its items (their futures, a log line): it should not raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(
        self, send: Callable[[list[T]], Coroutine[Any, Any, None]], limit: int | None = None
    ) -> None:
        self._send = send
        self._limit = limit
        self.pending: list[T] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, item: T) -> None:
        """Queue ``item`` for this turn's batch."""
        self.pending.append(item)
        if self._limit is not None and len(self.pending) >= self._limit:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Send what is queued now, without waiting for the turn to end."""
        self._scheduled = False
        if not self.pending:
            return
        items, self.pending = self.pending, []
        task = asyncio.get_running_loop().create_task(self._send(items))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def drain(self) -> None:
        """Send what is queued now and wait until every batch in flight is sent."""
        self.flush()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
