"""The connection slots this process holds, for the per-user connection limit.

The limit is counted in the engine: each user has one sorted set of slots, from every
process, scored by expiry (``connection_open.lua``). ``ConnectionSlots`` is this process's
side of it, apart from any I/O: which slot each of its connections holds, the slots of
closed connections still to free, and when every held slot is due for a refresh. The hub
sends what it lists to the engine (``Limits.sync_connections``) from its tick, renewing
every slot each third of ``GIFTING_CONNECTION_SLOT_TTL_S``: one script per user, so the
renewals of 10,000 viewers cost the engine a few hundred scripts a second, not thousands.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable


class ConnectionSlots:
    def __init__(self, node_id: str, refresh_every_s: float) -> None:
        self.node_id = node_id
        self.refresh_every_s = refresh_every_s
        self._held: dict[str, dict[Hashable, str]] = {}
        self._released: list[tuple[str, str]] = []
        self._numbers = itertools.count(1)
        self._next_refresh = 0.0

    def new_slot(self) -> str:
        """A slot id no other connection of any process uses: the node id and a counter."""
        return f"{self.node_id}:{next(self._numbers)}"

    def hold(self, user_id: str, connection: Hashable, slot: str) -> None:
        """Record that ``connection`` holds ``slot`` in ``user_id``'s set."""
        self._held.setdefault(user_id, {})[connection] = slot

    def release(self, user_id: str, connection: Hashable) -> bool:
        """Queue the slot of a closed connection to be freed; False if it held none (never
        admitted, or released already)."""
        mine = self._held.get(user_id)
        slot = mine.pop(connection, None) if mine is not None else None
        if slot is None:
            return False
        if not mine:
            del self._held[user_id]
        self._released.append((user_id, slot))
        return True

    def take_released(self) -> list[tuple[str, str]]:
        """The (user, slot) pairs to free, each handed out once."""
        released, self._released = self._released, []
        return released

    def take_due(self, now_s: float) -> dict[str, list[str]]:
        """Every held slot by user when a refresh is due at ``now_s`` (monotonic seconds),
        else nothing; a refresh is due every ``refresh_every_s``."""
        if now_s < self._next_refresh:
            return {}
        self._next_refresh = now_s + self.refresh_every_s
        return {user_id: list(mine.values()) for user_id, mine in self._held.items()}

    def held(self) -> dict[str, list[str]]:
        """Every held slot by user."""
        return {user_id: list(mine.values()) for user_id, mine in self._held.items()}
