"""``gifting-server --workers N``: N processes on one port and one embedded engine, one hub.

Each test looks at the real processes: which worker holds a connection is read from the
kernel (``psutil``), and ``/healthz`` names the pid that answered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import httpx
import psutil
import pytest

from server.demo import DEMO_ROOM, seed_demo
from server.keys import KeySchema
from server.store import Store
from tests.conftest import Engine
from tests.support import Api, ServerProcess, delete_prefix, server_env, unique
from tests.wsclient import Frame, RoomSocket

WORKERS = 2
# Connections opened while looking for one on each worker; with two idle workers taking
# turns at random, the odds of all of them landing on one are nil.
MOST_TRIES = 100


def start_workers(tmp_path: Path, logs: Path) -> ServerProcess:
    """``python -m server --workers 2`` with its own embedded engine in ``tmp_path``."""
    env = server_env(
        None,
        "gifting:",
        GIFTING_DATA_DIR=str(tmp_path / "data"),
        GIFTING_FSYNC="everysec",
        GIFTING_MAX_CONNECTIONS_PER_USER="0",
    )
    log_path = logs / f"server-workers-{unique('')}.log"
    command = (sys.executable, "-m", "server", "--workers", str(WORKERS))
    return ServerProcess(env, log_path, command=command).start()


def parent_pid(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


def worker_pids(server: ServerProcess) -> set[int]:
    """The worker processes: uvicorn starts them with multiprocessing's spawn."""
    pids = set()
    for child in psutil.Process(parent_pid(server)).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def engine_processes(server: ServerProcess) -> list[psutil.Process]:
    return [p for p in psutil.Process(parent_pid(server)).children(recursive=True) if "valkey" in p.name()]


def holder_of(server: ServerProcess, client_port: int) -> int:
    """The pid of the worker holding the server side of the connection from ``client_port``."""
    for pid in worker_pids(server):
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.laddr.port == server.port and conn.raddr and conn.raddr.port == client_port:
                return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def gone(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process has exited (a zombie awaiting its reaper counts as exited);
    those still running after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = []
        for process in processes:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    running.append(process)
            except psutil.NoSuchProcess:
                pass
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, logs: Path) -> Iterator[ServerProcess]:
    server = start_workers(tmp_path_factory.mktemp("workers"), logs)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def workers_api(workers: ServerProcess) -> Iterator[Api]:
    with httpx.Client(base_url=workers.base_url, timeout=10) as http:
        yield Api(http)


def test_both_workers_serve_requests_on_one_port_and_one_engine(workers: ServerProcess) -> None:
    pids = worker_pids(workers)
    assert len(pids) == WORKERS
    engines = engine_processes(workers)
    assert len(engines) == 1, "one engine, started by the parent, not one per worker"
    assert engines[0].ppid() == parent_pid(workers)
    answered: dict[int, httpx.Client] = {}
    with ExitStack() as clients:
        for _ in range(MOST_TRIES):
            # A client of its own is a connection of its own; keep-alive keeps it on one worker.
            client = clients.enter_context(httpx.Client(base_url=workers.base_url, timeout=5))
            pid = client.get("/healthz").json()["pid"]
            assert client.get("/healthz").json()["pid"] == pid
            answered.setdefault(pid, client)
            if len(answered) == WORKERS:
                break
    assert set(answered) == pids


async def sockets_on_each_worker(
    server: ServerProcess, room_id: str, token: str, stack: AsyncExitStack
) -> dict[int, RoomSocket]:
    """One room socket (past its ``welcome``) on each worker: sockets are opened until every
    worker holds one; the spares are closed."""
    found: dict[int, RoomSocket] = {}
    for _ in range(MOST_TRIES):
        sock = await RoomSocket.open(server.base_url, room_id, token)
        pid = holder_of(server, sock.ws.local_address[1])
        if pid in found:
            await sock.close()
            continue
        stack.push_async_callback(sock.close)
        await sock.welcome()
        found[pid] = sock
        if len(found) == WORKERS:
            return found
    raise AssertionError(f"{MOST_TRIES} sockets all landed on workers {sorted(found)}")


def holding(event_id: str) -> Callable[[Frame], bool]:
    """A predicate: the frame is a batch holding the event ``event_id``."""
    return lambda frame: any(event.get("event_id") == event_id for event in frame.get("events", ()))


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.mark.anyio
async def test_a_gift_sent_to_one_worker_reaches_a_viewer_on_the_other(
    workers: ServerProcess, workers_api: Api, stack: AsyncExitStack
) -> None:
    creator, gifter, watcher = unique("c"), unique("v"), unique("v")
    room_id = workers_api.open_room(creator)
    workers_api.buy(gifter, "us_550")
    senders = await sockets_on_each_worker(workers, room_id, workers_api.token(gifter), stack)
    watchers = await sockets_on_each_worker(workers, room_id, workers_api.token(watcher), stack)
    first, second = sorted(senders)
    for sent_on, seen_on, gift_id in ((first, second, "rose"), (second, first, "finger_heart")):
        ack = await senders[sent_on].gift(gift_id)
        assert ack["type"] == "gift_ack", ack
        event_id = ack["gift_event_id"]
        batch = await watchers[seen_on].wait_for(holding(event_id))
        (seen,) = [e for e in batch["events"] if e.get("event_id") == event_id]
        assert (seen["type"], seen["sender"]["id"], seen["gift_id"], seen["count"]) == (
            "gift",
            gifter,
            gift_id,
            1,
        )


def test_a_killed_worker_is_replaced_while_the_other_keeps_serving(workers: ServerProcess) -> None:
    """uvicorn's supervisor notices the dead worker within about a second and starts a new
    one; until it serves, the survivor takes every connection on the shared port."""
    before = worker_pids(workers)
    victim, survivor = sorted(before)
    os.kill(victim, signal.SIGKILL)
    psutil.Process(victim).wait(10)  # the supervisor reaps it
    answered: set[int] = set()
    deadline = time.monotonic() + 30
    while not answered - before:
        assert time.monotonic() < deadline, f"no replacement worker served; answered by {answered}"
        with httpx.Client(base_url=workers.base_url, timeout=5) as client:
            reply = client.get("/healthz")  # a refused or reset connection fails the test
        assert reply.status_code == 200
        answered.add(reply.json()["pid"])
    assert victim not in answered
    (replacement,) = answered - before
    assert worker_pids(workers) == {survivor, replacement}
    assert workers.process is not None and workers.process.poll() is None
    assert len(engine_processes(workers)) == 1


def test_sigterm_to_the_parent_stops_every_worker_and_the_engine(tmp_path: Path, logs: Path) -> None:
    server = start_workers(tmp_path, logs)
    try:
        children = psutil.Process(parent_pid(server)).children(recursive=True)
        assert len(worker_pids(server)) == WORKERS and len(engine_processes(server)) == 1
        assert server.stop() == 0  # SIGTERM, then a graceful exit
        assert gone(children, 10) == []
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.base_url}/healthz", timeout=2)
    finally:
        server.stop()


def test_a_parent_killed_outright_takes_its_workers_and_engine_with_it(tmp_path: Path, logs: Path) -> None:
    server = start_workers(tmp_path, logs)
    try:
        assert server.process is not None
        children = psutil.Process(parent_pid(server)).children(recursive=True)
        assert len(worker_pids(server)) == WORKERS and len(engine_processes(server)) == 1
        server.process.kill()
        server.process.wait(10)
        # No orphans: each worker and the engine asked Linux for SIGTERM when the parent dies.
        assert gone(children, 15) == []
    finally:
        server.stop()


@pytest.mark.anyio
async def test_demo_seeding_waits_for_a_process_already_seeding(engine: Engine) -> None:
    """Workers that start together seed the demo data in turns: the room is created once."""
    prefix = f"{unique('t')}:"
    try:
        async with Store.from_url(engine.url, KeySchema(prefix)) as store:
            other = store.redis.lock(store.keys.demo_seed_lock, timeout=30)
            assert await other.acquire(blocking=False)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(seed_demo(store), 0.5)
            assert await store.profile_name("alice") is None, "it seeded while another process held the lock"
            await other.release()
            await asyncio.gather(*(seed_demo(store) for _ in range(4)))
            creator_id, room_id, _ = DEMO_ROOM
            room = await store.rooms.get(room_id)
            assert room.state == "live" and room.creator_id == creator_id
            await seed_demo(store)
            assert (await store.rooms.get(room_id)).epoch == room.epoch
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)
