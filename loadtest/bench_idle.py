"""What a node's idle rooms cost it: one engine against a cluster of masters.

A server process serves ``--rooms`` live rooms with one connected viewer each and nothing
happening; the benchmark measures the CPU the server (and the engine) use while it keeps
them, ``--repeat`` times for ``--seconds`` each, first on one embedded engine, then on a
local cluster of ``--shards`` masters (``server/cluster.py``). On one engine the hub reads
every room with one blocking ``XREAD`` per tick; on a cluster it reads the rooms woken by
sharded pub/sub (``server/store/wakeups.py``) and every room once a second. The one-engine
figure, measured in the same run, is the reference the cluster figure is set against.

    .venv/bin/python -m loadtest.bench_idle [--rooms 500] [--shards 3] [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

from loadtest.harness import CpuMeter, bearer, open_room, running_server
from server.cluster import EmbeddedCluster
from server.engine import EmbeddedEngine

# Handshakes in flight at once while the viewers connect.
CONNECTING = 50


@contextlib.asynccontextmanager
async def engine(shards: int, tmp: Path) -> AsyncIterator[tuple[str, tuple[int, ...]]]:
    """One embedded engine (``shards`` 1) or a local cluster: its URL and process ids."""
    if shards > 1:
        with EmbeddedCluster(tmp / "cluster", masters=shards) as cluster:
            yield cluster.url, tuple(node.process.pid for node in cluster.nodes if node.process)
        return
    single = EmbeddedEngine(tmp / "engine").start()
    try:
        assert single.process is not None
        yield single.url, (single.process.pid,)
    finally:
        single.stop()


async def idle_cores(args: argparse.Namespace, shards: int) -> tuple[list[float], list[float]]:
    """Server and engine cores used in each run while ``args.rooms`` rooms sit idle."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        async with (
            engine(shards, Path(tmp)) as (url, engine_pids),
            running_server(url, Path(tmp) / "server.log") as (base_url, server_pid),
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            gate = asyncio.Semaphore(CONNECTING)

            async def viewer(n: int) -> ClientConnection:
                async with gate:
                    room_id = await open_room(http, f"idle_creator_{n:05d}")
                    token = (await bearer(http, f"idle_viewer_{n:05d}", "viewer"))["authorization"]
                    ws_url = base_url.replace("http://", "ws://") + f"/v1/rooms/{room_id}/ws"
                    ws = await connect(f"{ws_url}?token={token.removeprefix('Bearer ')}")
                    await ws.recv()  # the welcome: the room is served from here on
                    return ws

            sockets = await asyncio.gather(*(viewer(n) for n in range(args.rooms)))
            try:
                server, engine_ = [], []
                for _ in range(args.repeat):
                    meter = CpuMeter({"server": server_pid, "engine": engine_pids})
                    meter.start()
                    await asyncio.sleep(args.seconds)
                    cores = meter.stop()
                    server.append(cores["server"])
                    engine_.append(cores["engine"])
                return server, engine_
            finally:
                await asyncio.gather(*(ws.close() for ws in sockets))


async def bench(args: argparse.Namespace) -> None:
    results = {}
    for shards in (1, args.shards):
        server, engine_ = await idle_cores(args, shards)
        results[shards] = (statistics.median(server), statistics.median(engine_))
        label = "1 engine" if shards == 1 else f"{shards} masters"
        runs = " ".join(f"{cores:.2f}" for cores in server)
        print(f"  [{label}] server cores per run: {runs}", flush=True)
    print(f"\n{args.rooms} idle rooms, one viewer each, {args.repeat} runs of {args.seconds:g} s (medians)")
    print("engine       server cores  engine cores  server vs 1 engine")
    reference = results[1][0]
    for shards, (server_cores, engine_cores) in results.items():
        label = "1 engine" if shards == 1 else f"{shards} masters"
        ratio = server_cores / reference if reference else float("nan")
        print(f"{label:<12} {server_cores:>12.2f}  {engine_cores:>12.2f}  {ratio:>17.1f}x")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=500, help="idle rooms, one viewer each (default 500)")
    parser.add_argument("--shards", type=int, default=3, help="masters of the cluster (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs on each engine (default 3)")
    args = parser.parse_args(argv)
    if args.rooms < 1 or args.shards < 2 or args.seconds <= 0 or args.repeat < 1:
        parser.error("--rooms and --repeat must be at least 1, --shards at least 2, --seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    asyncio.run(bench(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
