"""Cluster mode's own parts: the URL form, the local cluster, and the store's cluster client.

The rest of the suite runs against a cluster in CI's third pass (``GIFTING_TEST_ENGINE=cluster``);
``tests/faults/test_cluster_moves.py`` moves slots mid-storm.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from server import cluster
from server.cluster import SLOTS, EmbeddedCluster
from server.settings import Settings, SettingsError, cluster_nodes
from server.store.connection import _pack_command
from server.store.store import connect_cluster

pytestmark = pytest.mark.embedded_only


def test_a_cluster_url_names_its_nodes() -> None:
    assert cluster_nodes("redis+cluster://10.0.0.1:7000,valkey-2:6379/") == [
        ("10.0.0.1", 7000),
        ("valkey-2", 6379),
    ]
    assert cluster_nodes("redis+cluster://[::1]:7000") == [("::1", 7000)]
    assert cluster_nodes("redis://127.0.0.1:6379/0") is None
    assert cluster_nodes("unix:///tmp/engine.sock") is None


@pytest.mark.parametrize(
    "url", ["redis+cluster://", "redis+cluster://host", "redis+cluster://host:0", "redis+cluster://a:1,b:x"]
)
def test_a_malformed_cluster_url_is_refused_at_start(url: str) -> None:
    with pytest.raises(SettingsError, match="GIFTING_REDIS_URL"):
        Settings.from_env({"GIFTING_REDIS_URL": url, "GIFTING_DEMO": "1"})


@pytest.mark.anyio
async def test_the_local_cluster_serves_every_slot_and_the_store_packs_with_hiredis(tmp_path: Path) -> None:
    with EmbeddedCluster(tmp_path / "cluster", masters=3) as cluster:
        owners = {cluster.master_of(slot).port for slot in (0, SLOTS // 2, SLOTS - 1)}
        assert len(owners) == 3
        nodes = cluster_nodes(cluster.url)
        assert nodes is not None and len(nodes) == 3
        client = connect_cluster(nodes)
        try:
            for key in ("{u:a}:wallet", "{r:b}:info", "{u:c}:earnings"):
                await client.set(key, 1)
                assert await client.get(key) == "1"
            served = client.get_nodes()
            assert len(served) == 3
            assert all(node.connection_class.pack_command is _pack_command for node in served)
        finally:
            await client.aclose()


def test_a_node_whose_port_is_taken_before_it_binds_starts_on_other_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ports are chosen free, then bound by the nodes a moment later; another process can take
    # one in between. Here a listening socket holds the port handed to the first node.
    with contextlib.closing(socket.socket()) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken: int = holder.getsockname()[1]
        choose = cluster.cluster_ports
        calls: list[int] = []

        def taken_first(count: int) -> list[int]:
            calls.append(count)
            return [taken, *choose(count)[1:]] if len(calls) == 1 else choose(count)

        monkeypatch.setattr(cluster, "cluster_ports", taken_first)
        with EmbeddedCluster(tmp_path / "cluster", masters=3) as local:
            ports = [node.port for node in local.nodes]
            assert taken not in ports and len(set(ports)) == 3
            assert len(calls) == 2  # the first choice, then one more port for the node that exited
            with local.nodes[0].client() as client:
                assert cluster.cluster_info(client)["cluster_state"] == "ok"
