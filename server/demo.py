"""Demo data: a few named users and a live room, created once and kept across restarts."""

from __future__ import annotations

import contextlib
import time

from server.errors import Conflict, NotFound
from server.store import Store

DEMO_USERS = (
    ("alice", "Alice", "viewer"),
    ("bob", "Bob", "viewer"),
    ("dave", "Dave", "viewer"),
    ("carol", "Carol", "creator"),
    ("erin", "Erin", "creator"),
    ("admin", "Admin", "admin"),
)
DEMO_ROOM = ("carol", "demo_carol", "Carol cooks live")
# How long one process may hold the seeding lock (it expires if the process dies holding
# it), and how long another waits for it.
SEED_LOCK_S = 30


async def seed_demo(store: Store) -> None:
    """Create what is missing. Processes that start together (``--workers``, several nodes)
    take turns under a lock in the engine, so the room is created once, with one epoch."""
    lock = store.redis.lock(store.keys.demo_seed_lock, timeout=SEED_LOCK_S, blocking_timeout=SEED_LOCK_S)
    async with lock:
        await _seed(store)


async def _seed(store: Store) -> None:
    for user_id, name, role in DEMO_USERS:
        if await store.profile_name(user_id) is None:
            await store.set_profile(user_id, name, role)
    creator_id, room_id, title = DEMO_ROOM
    with contextlib.suppress(NotFound):
        await store.rooms.get(room_id)
        return
    # Conflict: the demo creator is already live in another room, which serves as well.
    with contextlib.suppress(Conflict):
        await store.rooms.create(creator_id, room_id, title, time.time_ns() // 1_000_000)
