"""The socket.io peer of the room benchmark (``loadtest/peers/socketio``) and its lean sinks.

The peer runs as the benchmark runs it (``npm ci`` when its ``node_modules`` is missing), and
is spoken to through ``SioSink`` viewers in a sink process and a ``SioGifter``: a gift reaches
every viewer of its room once and no other room, and a malformed one is refused with a clear
error and reaches nobody. Without Node the benchmark reports the peer as not run, with the
reason, and still measures the server.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench_room import wait_delivered
from loadtest.peers import PeerUnavailable, ensure_socketio_installed, socketio_peer
from loadtest.sinks import SIO_PATH, GiftLedger, open_sio_gifters, sink_pool
from tests.support import ROOT

pytestmark = pytest.mark.embedded_only
needs_node = pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed: the peer is a Node server"
)

ACK_TIMEOUT_S = 10.0


@pytest.mark.anyio
@needs_node
async def test_a_gift_reaches_each_viewer_of_its_room_once_through_the_socketio_sinks(tmp_path: Path) -> None:
    async with socketio_peer(tmp_path / "peer.log") as node, sink_pool(1) as pool:
        for group, room in (("room_a", "room_a"), ("room_b", "room_b")):
            viewers = 2 if group == "room_a" else 1
            connect = await pool.connect(
                group,
                node.port,
                [SIO_PATH] * viewers,
                welcome=True,
                record=True,
                sample_every=1,
                concurrency=2,
                sio_room=room,
            )
            assert connect["opened"] == viewers and not connect["failures"], connect
        ledger = GiftLedger()
        [gifter] = await open_sio_gifters(node.port, "room_a", ["gifter_1"], ledger)

        # Malformed: refused with a clear error, and nothing is emitted.
        gifter.post("bad-1", {"type": "gift", "gift_id": "rose", "count": 0, "idempotency_key": "bad-1"})
        await asyncio.wait_for(ledger.answered.wait(), ACK_TIMEOUT_S)
        assert ledger.errors == {"bad_request": 1} and not ledger.acked_ids

        gifter.gift("t")
        await asyncio.wait_for(ledger.answered.wait(), ACK_TIMEOUT_S)
        assert len(ledger.acked_ids) == 1 and ledger.errors == {"bad_request": 1}
        await wait_delivered(pool, 2, "room_a")

        [reply] = await pool.every(op="completeness", group="room_a", acked=ledger.acked_ids)
        # Per viewer: events received, distinct, distinct acknowledged, frames.
        assert reply["viewers"] == [(1, 1, 1, 1), (1, 1, 1, 1)]
        [counts] = await pool.every(op="gift_counts", group="room_b")
        assert counts["counts"] == [0]
        gifter.close()


def test_without_node_the_peer_is_reported_not_run_and_the_server_still_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(PeerUnavailable, match="node is not installed"):
        ensure_socketio_installed()
    out = tmp_path / "peer.json"
    command = [sys.executable, "-m", "loadtest.bench_room", "--scenarios", "peer", "--peer-viewers", "10"]
    command += ["--peer-rates", "10", "--peer-step-seconds", "0.3", "--peer-gifters", "1"]
    command += ["--peer-warmup", "0.1", "--sink-procs", "1", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    peer = json.loads(out.read_text())["peer"]
    assert "node is not installed" in peer["peer_not_run"] and list(peer["steps"]) == ["server"]
    assert peer["targets"][1]["value"] is None and "not run" in peer["targets"][1]["target"]
    assert "socket.io peer NOT RUN: node is not installed" in done.stdout
