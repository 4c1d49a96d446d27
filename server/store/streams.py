"""Paging through a ledger stream, newest first, with the last entry id as the cursor."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from server.errors import InvalidRequest
from server.store.records import ledger_entry

# At most 19 digits a part, so that every cursor is a stream id the engine can parse (< 2**64).
CURSOR_PATTERN = r"^\d{1,19}-\d{1,19}$"
_CURSOR_RE = re.compile(CURSOR_PATTERN, re.ASCII)


Entry = Callable[[str, dict[str, str]], dict[str, Any]]


async def read_stream_page(
    redis: Redis, key: str, cursor: str | None, limit: int, entry: Entry = ledger_entry
) -> tuple[list[dict[str, Any]], str | None]:
    """Entries of a ledger stream older than ``cursor`` (newest first), each as ``entry``
    reads it, and the next cursor (the last entry's id)."""
    if cursor is not None and not _CURSOR_RE.fullmatch(cursor):
        raise InvalidRequest(f"cursor must be a ledger entry id such as 1700000000000-0, got {cursor[:40]!r}")
    if cursor is not None and not any(int(part) for part in cursor.split("-")):
        return [], None  # nothing is older than 0-0, and the engine refuses the range "(0-0"
    top = "+" if cursor is None else f"({cursor}"
    rows = await redis.xrevrange(key, max=top, min="-", count=limit + 1)
    entries = [entry(entry_id, fields) for entry_id, fields in rows[:limit]]
    next_cursor = rows[limit - 1][0] if len(rows) > limit else None
    return entries, next_cursor
