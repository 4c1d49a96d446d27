"""A cluster moves hash slots while gifts flow: nothing is lost, nothing applied twice.

The suite starts its own 3-master cluster of the embedded engine (``server/cluster.py``)
and a server on it, drives the storm of purchases and gifts (``tests/faults/storm.py``) and,
in the middle of it, moves the slot of the live room (which every gift touches) and the
slots of two gifters to other masters, the way ``valkey-cli --cluster reshard`` does:
``CLUSTER SETSLOT IMPORTING``/``MIGRATING``, ``MIGRATE`` of every key, then ``SETSLOT
NODE``. Clients follow with ASK and MOVED redirections. Then every acknowledged gift and
payment must be in the books exactly once, every refused request retried to exactly once,
and ``gifting-server audit`` must pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from redis.crc import key_slot

from server.cluster import ClusterNode, EmbeddedCluster
from server.keys import KeySchema
from tests.faults.storm import Storm
from tests.faults.test_crashes import BEFORE_S, PREFIX, check_nothing_lost, open_room
from tests.support import running_server, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.embedded_only]

USERS = 12
# Keys moved per MIGRATE call.
MIGRATE_BATCH = 50


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path / "cluster", masters=3) as cluster:
        yield cluster


def move_slot(cluster: EmbeddedCluster, slot: int) -> tuple[ClusterNode, ClusterNode]:
    """Move ``slot`` to the next master, keys and all; the old and the new owner."""
    source = cluster.master_of(slot)
    masters = cluster.nodes[: cluster.masters]
    target = masters[(masters.index(source) + 1) % len(masters)]
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, MIGRATE_BATCH):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in masters:
            with node.client() as client:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)
    return source, target


async def test_slots_moved_during_a_storm_lose_nothing_and_apply_nothing_twice(
    cluster: EmbeddedCluster, logs: Path
) -> None:
    env = server_env(cluster.url, PREFIX, GIFTING_GIFT_RATE="100000", GIFTING_GIFT_BURST="100000")
    with running_server(env, logs) as server:
        creator, room_id = open_room(server.base_url)
        storm = await Storm.prepare([server.base_url], room_id, USERS)
        keys = KeySchema(PREFIX)
        slots = [key_slot(keys.room(room_id).info.encode())]
        slots += [key_slot(keys.user(user).wallet.encode()) for user in storm.users[:2]]
        moved: list[tuple[int, int, int]] = []

        def reshard() -> None:
            for slot in dict.fromkeys(slots):
                source, target = move_slot(cluster, slot)
                moved.append((slot, source.port, target.port))

        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(storm.run, stop)
            await anyio.sleep(BEFORE_S)
            await anyio.to_thread.run_sync(reshard)
            await anyio.sleep(BEFORE_S)
            stop.set()

        for slot, _, target in moved:
            assert cluster.master_of(slot).port == target, f"slot {slot} did not move"
        await check_nothing_lost(storm, cluster.url, PREFIX, creator, server.base_url)
        print(
            f"\nslot moves: {len(moved)} slots moved during the storm; {len(storm.acked)} gifts and "
            f"{len(storm.paid)} payments applied once each; refused and retried: {dict(storm.refusals)}"
        )
