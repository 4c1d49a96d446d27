"""Crashes in the middle of a storm: ``kill -9`` of the engine, and of a server process.

Each test runs its own engine and servers (never the suite's engine), drives a storm of
purchases and gifts (``tests/faults/storm.py``), kills something with SIGKILL in the middle
of it, recovers, and then checks the books against what the servers acknowledged:

- with ``appendfsync always``, every acknowledged purchase and gift survives the engine's
  crash exactly once, and the retries of every refused request (same key, same order)
  leave each one applied exactly once;
- with ``everysec`` too, a killed engine *process* loses nothing acknowledged: the engine
  writes each event-loop turn's changes to its append-only file (into the kernel) before it
  sends the replies, and only the fsync is deferred, so only a machine crash or power loss
  can take back the last second or two of writes (docs/RELIABILITY.md); the test checks
  that nothing acknowledged is lost and that the books balance;
- a server killed between a gift's debit and its creator credit leaves the credit in the
  sender's outbox, and another server delivers it exactly once;
- the embedded engine a server started itself, killed, is restarted by that server (no
  test restarts it), and the books are exact; an engine that cannot be restarted makes the
  server fail its health check and exit non-zero.

In every case ``gifting-server audit`` passes afterwards. The figures each test prints are
the counts in docs/RELIABILITY.md (run with ``-s`` to see them). Each test crashes once
(the server test until a kill lands between a debit and its credit); the soak variant,
``GIFTING_SOAK_ROUNDS=20 python -m pytest tests/faults -s``, crashes that many times.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import anyio
import httpx
import psutil
import pytest

from server.engine import EmbeddedEngine
from server.keys import KeySchema
from tests.faults.storm import Books, Storm, audit, wait_for_empty_outbox
from tests.support import Api, ServerProcess, engine_client, running_server, server_env, unique

pytestmark = [pytest.mark.anyio, pytest.mark.embedded_only]

PREFIX = "crash:"
USERS = 24
# The storm runs this long before the crash and this long after recovery.
BEFORE_S = 1.5
AFTER_S = 1.0
# The engine stays down this long: longer than the server's own quick reconnects ride out.
OUTAGE_S = 0.5
# Crashes per test: 1 in the suite, more on request (the soak run).
ROUNDS = int(os.environ.get("GIFTING_SOAK_ROUNDS", "1"))


@pytest.fixture
def engine_dir(tmp_path: Path) -> Path:
    return tmp_path / "engine"


def start_engine(data_dir: Path, fsync: str) -> EmbeddedEngine:
    return EmbeddedEngine(data_dir, fsync=fsync).start()


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def open_room(url: str) -> tuple[str, str]:
    creator = unique("c")
    with httpx.Client(base_url=url, timeout=10) as http:
        return creator, Api(http).open_room(creator)


def check_exactly_once(storm: Storm, books: Books) -> None:
    """Every gift the storm made is debited, credited and published once; every payment
    credited once; each balance is the funding plus purchases minus gifts, to the coin."""
    event_ids = {event_id for _, event_id, _ in storm.acked.values()}
    assert len(event_ids) == len(storm.acked), "two gift keys answered with one event id"
    assert books.gift_refs == dict.fromkeys(event_ids, 1)
    assert books.credited_refs == dict.fromkeys(event_ids, 1)
    assert books.published == dict.fromkeys(event_ids, 1)
    assert books.purchase_refs == dict.fromkeys([*storm.funding_orders, *storm.paid], 1)
    assert books.coins == {user: storm.expected_coins(user) for user in storm.users}


async def check_nothing_lost(
    storm: Storm, engine_url: str, prefix: str, creator: str, server_url: str
) -> None:
    """After a fault: no request met a 500 and every acknowledged gift is in the books once;
    then, every refused request retried, each gift and payment is applied exactly once, the
    outbox is drained and the audit passes."""
    assert not [key for key in storm.refusals if " 500 " in key], storm.refusals
    books = Books.read(engine_url, prefix, storm, creator)
    lost = [key for key, (_, event_id, _) in storm.acked.items() if books.gift_refs[event_id] != 1]
    assert not lost, f"{len(lost)} acknowledged gifts missing after the fault"
    await storm.settle(server_url)
    check_exactly_once(storm, await wait_for_empty_outbox(engine_url, prefix, storm, creator))
    done = audit(engine_url, prefix)
    assert done.returncode == 0, done.stdout + done.stderr


def check_audit(url: str) -> None:
    done = audit(url, PREFIX)
    assert done.returncode == 0, done.stdout + done.stderr


async def storm_with(storm: Storm, during: float, crash: Callable[[], None], rounds: int = 1) -> None:
    """Run ``storm``; ``rounds`` times, after ``BEFORE_S`` call ``crash`` in a thread; then
    let it run ``during`` more seconds."""
    stop = anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(storm.run, stop)
        for _ in range(rounds):
            await anyio.sleep(BEFORE_S)
            await anyio.to_thread.run_sync(crash)
        await anyio.sleep(during)
        stop.set()


async def storm_killing_the_engine(
    engine_dir: Path, fsync: str, logs: Path, stack: ExitStack
) -> tuple[EmbeddedEngine, ServerProcess, str, Storm, list[float]]:
    """A server on its own engine with ``fsync``, a storm through it, and ``ROUNDS`` kills of
    the engine in the middle (each down for ``OUTAGE_S``); the engine, the server, the room's
    creator, the storm and the kill times."""
    engine = start_engine(engine_dir, fsync)
    stack.callback(engine.stop)
    server = stack.enter_context(running_server(server_env(engine.url, PREFIX), logs))
    creator, room_id = open_room(server.base_url)
    storm = await Storm.prepare([server.base_url], room_id, USERS)
    killed_at: list[float] = []

    def crash() -> None:
        killed_at.append(time.monotonic())
        engine.kill()
        time.sleep(OUTAGE_S)  # how long the engine stays down, so that requests meet the outage
        engine.start()

    await storm_with(storm, AFTER_S, crash, ROUNDS)
    return engine, server, creator, storm, killed_at


async def test_an_engine_killed_mid_storm_loses_nothing_acknowledged_with_fsync_always(
    engine_dir: Path, logs: Path, stack: ExitStack
) -> None:
    engine, server, creator, storm, killed_at = await storm_killing_the_engine(
        engine_dir, "always", logs, stack
    )
    acked_before = {key for key, (_, _, at) in storm.acked.items() if at < killed_at[-1]}
    refused = len(storm.failed) + len(storm.unpaid)
    # Durability first: every gift and payment acknowledged, before or between the crashes,
    # is in the reloaded books.
    books = Books.read(engine.url, PREFIX, storm, creator)
    lost = [key for key, (_, event_id, _) in storm.acked.items() if books.gift_refs[event_id] != 1]
    assert not lost, f"{len(lost)} acknowledged gifts lost in the crash"
    assert all(books.purchase_refs[order] == 1 for order in storm.paid)
    assert refused > 0, "the crash refused nothing: it did not land inside the storm"

    await storm.settle(server.base_url)
    check_exactly_once(storm, await wait_for_empty_outbox(engine.url, PREFIX, storm, creator))
    check_audit(engine.url)
    print(
        f"\nengine kill -9 (always): {len(killed_at)} kills; {len(storm.acked)} gifts and "
        f"{len(storm.paid)} payments applied, {len(acked_before)} gifts acknowledged before the "
        f"last kill, {refused} requests refused "
        f"and retried ({dict(storm.refusals)}); lost: 0"
    )


async def test_an_engine_process_killed_with_fsync_everysec_loses_nothing_acknowledged_either(
    engine_dir: Path, logs: Path, stack: ExitStack
) -> None:
    engine, _, creator, storm, killed_at = await storm_killing_the_engine(engine_dir, "everysec", logs, stack)
    books = Books.read(engine.url, PREFIX, storm, creator)
    lost = {key: at for key, (_, event_id, at) in storm.acked.items() if books.gift_refs[event_id] == 0}
    window = max((min(k - at for k in killed_at if k > at) for at in lost.values()), default=0.0)
    lost_payments = [order for order in storm.paid if books.purchase_refs[order] == 0]
    assert (len(lost), len(lost_payments)) == (0, 0), f"lost in {window:.2f} s before the crash"
    # What survived is consistent: balances match ledgers, every surviving debit is credited once.
    await wait_for_empty_outbox(engine.url, PREFIX, storm, creator)
    check_audit(engine.url)
    print(
        f"\nengine kill -9 (everysec): {len(killed_at)} kills; {len(storm.acked)} gifts acknowledged, "
        f"{len(lost)} lost "
        f"(the oldest {window * 1000:.0f} ms before the crash); {len(storm.paid)} payments "
        f"acknowledged, {len(lost_payments)} lost; audit ok"
    )


async def test_a_server_killed_between_debit_and_credit_is_completed_once_by_another(
    engine_dir: Path, logs: Path, stack: ExitStack
) -> None:
    engine = start_engine(engine_dir, "everysec")
    stack.callback(engine.stop)
    env = server_env(engine.url, PREFIX)
    survivor = stack.enter_context(running_server(env, logs))
    creator, room_id = open_room(survivor.base_url)
    keys = KeySchema(PREFIX)
    stranded_total = kills = 0
    storms: list[Storm] = []
    # Kill until a kill has landed between some gift's debit and its credit (at least twice).
    while kills < max(2, ROUNDS) or (stranded_total == 0 and kills < 12):
        with running_server(env, logs) as victim:
            storm = await Storm.prepare([victim.base_url], room_id, USERS)
            storms.append(storm)

            def crash(victim: ServerProcess = victim, storm: Storm = storm) -> None:
                assert victim.process is not None
                victim.process.send_signal(signal.SIGKILL)
                victim.process.wait()
                nonlocal stranded_total
                stranded_total += stranded(engine.url, keys, storm, creator)

            await storm_with(storm, 0.0, crash)
            kills += 1
        await storm.settle(survivor.base_url)
    for storm in storms:
        check_exactly_once(storm, await wait_for_empty_outbox(engine.url, PREFIX, storm, creator))
    check_audit(engine.url)
    assert stranded_total > 0, f"{kills} kills never landed between a debit and its credit"
    print(
        f"\nserver kill -9: {kills} kills, {stranded_total} gifts debited but not credited at "
        f"the kill, each credited once by the surviving server; "
        f"{sum(len(s.acked) for s in storms)} gifts in all, lost: 0"
    )


def stranded(url: str, keys: KeySchema, storm: Storm, creator_id: str) -> int:
    """Outbox entries whose gift the creator has not been credited for yet."""
    with engine_client(url) as client:
        waiting = [event_id for user in storm.users for event_id in client.hkeys(keys.user(user).outbox)]
        if not waiting:
            return 0
        credited = client.smismember(keys.user(creator_id).credited, waiting)
    return sum(1 for is_credited in credited if not is_credited)


def embedded_engine(server: ServerProcess) -> psutil.Process:
    """The engine process the server started itself, as the kernel sees it."""
    assert server.process is not None
    children = psutil.Process(server.process.pid).children()
    engines = [child for child in children if "valkey" in child.name() or "redis" in child.name()]
    assert len(engines) == 1, children
    return engines[0]


def wait_until(ready: Callable[[], bool], timeout_s: float, failure: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def engine_restarts(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("gifting_engine_restarts_total "):
            return float(line.split()[1])
    raise AssertionError("no gifting_engine_restarts_total in /metrics")


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_killed_embedded_engine_is_restarted_by_its_server_and_loses_nothing_acknowledged(
    workers: int, tmp_path: Path, logs: Path, stack: ExitStack
) -> None:
    """With ``--workers 2`` the parent process owns the engine and restarts it; the workers
    reconnect to the same socket, and count the parent's restart in their ``/metrics``."""
    data = (tmp_path / "data").resolve()
    (tmp_path / "metrics").mkdir()
    env = server_env(
        None,
        PREFIX,
        GIFTING_DATA_DIR=str(data),
        GIFTING_FSYNC="always",
        GIFTING_WORKERS=str(workers),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    server = stack.enter_context(running_server(env, logs))
    engine_url = f"unix://{data / 'engine.sock'}"
    creator, room_id = open_room(server.base_url)
    storm = await Storm.prepare([server.base_url], room_id, USERS)
    killed: list[psutil.Process] = []

    def crash() -> None:
        engine = embedded_engine(server)
        killed.append(engine)
        engine.kill()
        # Nothing here starts it again: the server must, and serve again, by itself.
        wait_until(lambda: ready(server.base_url), 20, f"the server never recovered:\n{server.output()}")

    await storm_with(storm, AFTER_S, crash)
    [dead] = killed
    assert not dead.is_running(), "the killed engine was never reaped (a zombie)"
    assert embedded_engine(server).pid != dead.pid
    assert engine_restarts(server.base_url) == 1
    assert "embedded engine restarted" in server.log_path.read_text()
    refused = len(storm.failed) + len(storm.unpaid)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200
    await check_nothing_lost(storm, engine_url, PREFIX, creator, server.base_url)
    print(
        f"\nembedded engine kill -9, restarted by the server ({workers} worker(s)): "
        f"{len(storm.acked)} gifts and "
        f"{len(storm.paid)} payments applied, {refused} requests refused during the restart and "
        f"retried ({dict(storm.refusals)}); lost: 0"
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_a_server_whose_engine_cannot_be_restarted_fails_its_health_check_and_exits_1(
    workers: int, tmp_path: Path, logs: Path
) -> None:
    """With ``--workers 2`` the parent, which owns the engine, stops the workers and exits 1;
    a worker's ``/healthz`` cannot see the parent's engine, and answers until it is stopped."""
    data = (tmp_path / "data").resolve()
    env = server_env(None, PREFIX, GIFTING_DATA_DIR=str(data), GIFTING_WORKERS=str(workers))
    with running_server(env, logs) as server:
        assert server.process is not None
        # Every worker up first: one still starting when the engine dies fails its own start,
        # and uvicorn stops the parent with its startup-failure code instead.
        wait_until(
            lambda: server.log_path.read_text().count("Application startup complete") >= workers,
            30,
            f"the workers never all started:\n{server.output()}",
        )
        # An append-only file the engine refuses to load: every restart fails.
        [manifest] = (data / "appendonlydir").glob("*.manifest")
        manifest.write_text("not a manifest\n")
        embedded_engine(server).kill()
        health: list[int] = []
        deadline = time.monotonic() + 60
        while server.process.poll() is None:
            assert time.monotonic() < deadline, f"the server never exited: {health[-5:]}"
            with suppress(httpx.TransportError):
                health.append(httpx.get(f"{server.base_url}/healthz", timeout=5).status_code)
            time.sleep(0.05)
        code = server.process.returncode
        output = server.log_path.read_text()
    assert code == 1, output[-4000:]
    assert 503 in health or workers > 1, health
    assert "could not be brought back" in output
