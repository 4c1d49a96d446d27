"""Room wake-ups on a cluster (``server/store/wakeups.py``): a process reads a room only when
a script published into it, and keeps hearing about it when the room's slot moves.

These run on a local 3-master cluster the test starts, with the periodic full read pushed
out of reach, so that every read they see comes from a wake-up.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redis.crc import key_slot

from server.cluster import EmbeddedCluster
from server.keys import KeySchema
from server.store.store import connect_cluster
from server.store.wakeups import RoomWakeups
from tests.faults.test_cluster_moves import move_slot
from tests.support import unique

pytestmark = [pytest.mark.anyio, pytest.mark.embedded_only]

KEYS = KeySchema("wake:")
DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path_factory.mktemp("wakeups"), masters=3) as cluster:
        yield cluster


@pytest.fixture
async def wakeups(cluster: EmbeddedCluster) -> AsyncIterator[RoomWakeups]:
    client = connect_cluster([("127.0.0.1", node.port) for node in cluster.nodes])
    await client.ping()
    wakeups = RoomWakeups(client, KEYS, full_read_s=3_600)
    try:
        yield wakeups
    finally:
        await wakeups.aclose()
        await client.aclose()


async def settled(wakeups: RoomWakeups, rooms: set[str]) -> None:
    """Until every subscription is confirmed and the reads they owed are done."""
    deadline = time.monotonic() + DEADLINE_S
    while await wakeups.due(rooms):
        assert time.monotonic() < deadline, "subscriptions never confirmed"


async def woken(wakeups: RoomWakeups, rooms: set[str]) -> set[str]:
    """The first non-empty set of rooms due."""
    deadline = time.monotonic() + DEADLINE_S
    while not (due := await wakeups.due(rooms)):
        assert time.monotonic() < deadline, "no room was woken"
    return due


async def ticks_until(wakeups: RoomWakeups, rooms: set[str], done: Callable[[], bool], failure: str) -> None:
    """Call ``due`` as the hub's ticks do until ``done()``."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, failure
        await wakeups.due(rooms)


def publish(cluster: EmbeddedCluster, room_id: str) -> int:
    """An event's wake-up as the room scripts send it, on the room's master; subscribers reached."""
    channel = KEYS.room(room_id).wake
    with cluster.master_of(key_slot(channel.encode())).client() as client:
        receivers: int = client.execute_command("SPUBLISH", channel, "")
    return receivers


def subscribers(cluster: EmbeddedCluster, room_id: str) -> int:
    channel = KEYS.room(room_id).wake
    with cluster.master_of(key_slot(channel.encode())).client() as client:
        counts = dict(client.pubsub_shardnumsub(channel))
    return int(counts[channel])


def rooms_on_three_masters(cluster: EmbeddedCluster) -> set[str]:
    by_master: dict[int, str] = {}
    while len(by_master) < cluster.masters:
        room_id = unique("r")
        by_master.setdefault(cluster.master_of(key_slot(KEYS.room(room_id).wake.encode())).port, room_id)
    return set(by_master.values())


async def test_only_the_room_published_into_is_read(cluster: EmbeddedCluster, wakeups: RoomWakeups) -> None:
    rooms = rooms_on_three_masters(cluster)
    assert await wakeups.due(rooms) == rooms, "a room is read when first followed"
    await settled(wakeups, rooms)
    assert all(subscribers(cluster, room) == 1 for room in rooms)
    for room in sorted(rooms):
        assert publish(cluster, room) == 1
        assert await woken(wakeups, rooms) == {room}
        assert await wakeups.due(rooms) == set(), "one wake-up, one read"


@pytest.fixture
async def followed(cluster: EmbeddedCluster, wakeups: RoomWakeups) -> set[str]:
    """Three rooms, one per master, followed with their subscriptions confirmed."""
    rooms = rooms_on_three_masters(cluster)
    await settled(wakeups, rooms)
    return rooms


async def test_a_read_of_some_rooms_leaves_the_others_wake_ups_for_their_own_read(
    cluster: EmbeddedCluster, wakeups: RoomWakeups, followed: set[str]
) -> None:
    """Between ticks the hub reads only its quiet rooms: the wake-up of a room left out
    waits for the next read that includes it, and every room stays followed."""
    rooms = followed
    quiet, busy = sorted(rooms)[:2]
    assert publish(cluster, busy) == 1
    assert publish(cluster, quiet) == 1
    deadline = time.monotonic() + DEADLINE_S
    while not (due := await wakeups.due(rooms, {quiet})):
        assert time.monotonic() < deadline, "the quiet room was not woken"
    assert due == {quiet}
    assert await woken(wakeups, rooms) == {busy}
    assert await wakeups.due(rooms) == set(), "one wake-up, one read"
    assert all(subscribers(cluster, room) == 1 for room in rooms)


async def test_a_room_no_longer_served_is_no_longer_followed(
    cluster: EmbeddedCluster, wakeups: RoomWakeups, followed: set[str]
) -> None:
    rooms = followed
    left = min(rooms)
    kept = rooms - {left}
    assert await wakeups.due(kept) == set()
    await ticks_until(wakeups, kept, lambda: subscribers(cluster, left) == 0, "the subscription stayed")
    assert all(subscribers(cluster, room) == 1 for room in kept)
    assert publish(cluster, left) == 0


async def test_wake_ups_follow_a_room_whose_slot_moved(
    cluster: EmbeddedCluster, wakeups: RoomWakeups, followed: set[str]
) -> None:
    rooms = followed
    moved = min(rooms)
    slot = key_slot(KEYS.room(moved).wake.encode())
    before, after = move_slot(cluster, slot)
    assert cluster.master_of(slot).port == after.port != before.port
    # The old master drops the subscription; the room is read then and followed anew on the
    # new master (redis-py also moves it once its slot map is refreshed).
    await ticks_until(
        wakeups,
        rooms,
        lambda: subscribers(cluster, moved) == 1,
        "the room was never followed on its new master",
    )
    await settled(wakeups, rooms)
    assert publish(cluster, moved) == 1
    assert await woken(wakeups, rooms) == {moved}


def test_the_keys_of_a_room_and_its_wake_channel_share_a_slot() -> None:
    room = KEYS.room(unique("r"))
    assert key_slot(room.wake.encode()) == key_slot(room.events.encode()) == key_slot(room.info.encode())
