"""Recovery: a flushed script cache, a crash between debit and credit, and a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from fractions import Fraction
from pathlib import Path

import anyio
import httpx
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import TimeoutError as EngineTimeout

from server.app import stop_tasks
from server.audit import AuditResult, audit_books
from server.domain.catalog import Catalog
from server.domain.money import price_gift
from server.domain.requests import GiftRequest
from server.engine import EmbeddedEngine
from server.gifting import GiftService
from server.keys import KeySchema
from server.settings import Settings
from server.store import Store
from server.store.connection import engine_budget
from server.store.records import CreatorCredit
from tests.conftest import Engine
from tests.support import (
    Api,
    delete_prefix,
    engine_client,
    engine_client_async,
    running_server,
    server_env,
    stalled,
    strand,
    unique,
)
from tests.wsclient import RoomSocket


@pytest.fixture
async def store(engine: Engine, key_prefix: str) -> AsyncIterator[Store]:
    async with Store.from_url(engine.url, KeySchema(key_prefix)) as store:
        yield store


@pytest.mark.embedded_only
@pytest.mark.usefixtures("needs_own_engine")
def test_gifts_keep_working_after_the_script_cache_is_flushed(
    api: Api, engine: Engine, viewer: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    api.buy(viewer)
    for i in range(10):
        if i == 5:
            with engine_client(engine.url) as client:
                client.script_flush()
                assert client.script_exists("0" * 40) == [False]
        assert api.gift(viewer, room_id, "doughnut").status_code == 200
    assert api.coins(viewer) == 550 - 300
    assert api.earnings(creator)["pending"] == 150


@pytest.fixture
def service(store: Store) -> GiftService:
    return GiftService(store, Catalog.load_default(), Settings(idempotency_ttl_s=60))


@pytest.mark.anyio
async def test_a_credit_lost_between_debit_and_creator_is_applied_once_by_the_sweep(
    store: Store, service: GiftService, api: Api, viewer: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    api.buy(viewer)
    # Dated a minute ahead, so that only this test's sweep, not the running server's, takes it.
    ts = int(time.time() * 1000) + 60_000
    credit = CreatorCredit(unique("g_"), creator, room_id, viewer, "corgi", 1, 299, 149, ts)
    assert await strand(store, credit) == 251
    [pending] = await store.outbox.pending(viewer)
    # The debit adds its own time to the entry: the engine's, about now (not the gift's ts).
    assert pending.debit_ms is not None and abs(pending.debit_ms - (ts - 60_000)) < 10_000
    assert pending == dataclasses.replace(credit, debit_ms=pending.debit_ms)
    assert (await store.earnings.get(creator, int(time.time() * 1000))).pending == 0

    assert await service.sweep(older_than_ms=ts) == 0
    assert await service.sweep(older_than_ms=ts + 1) >= 1
    assert await service.sweep(older_than_ms=ts + 1) == 0
    assert await service.deliver(credit) is False
    assert await store.outbox.pending(viewer) == []
    assert (await store.earnings.get(creator, int(time.time() * 1000))).pending == 149
    entries, _ = await store.earnings.ledger(creator, None, 10)
    assert [e["ref"] for e in entries] == [credit.event_id]


@pytest.mark.anyio
async def test_the_running_server_sweeps_a_stranded_outbox_entry_by_itself(
    store: Store, api: Api, viewer: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    api.buy(viewer)
    await strand(store, CreatorCredit(unique("g_"), creator, room_id, viewer, "rose", 7, 7, 3, 0))
    deadline = time.monotonic() + 10
    while api.earnings(creator)["lifetime"] != 3:
        assert time.monotonic() < deadline, "the server's sweeper did not apply the outbox entry"
        await anyio.sleep(0.05)
    assert await store.outbox.pending(viewer) == []


def test_a_stranded_gift_is_credited_at_the_share_it_was_priced_with_after_the_share_changes(
    engine: Engine, logs: Path
) -> None:
    """A gift priced at a share of 0.5 waits in the outbox while the servers are redeployed with
    0.7; the new server's sweeper credits the diamonds of 0.5 and records 0.5 with them."""
    prefix, viewer, creator = f"{unique('share')}:", unique("v"), unique("c")
    keys = KeySchema(prefix)
    try:
        with (
            running_server(server_env(engine.url, prefix, GIFTING_CREATOR_SHARE="0.5"), logs) as first,
            httpx.Client(base_url=first.base_url, timeout=10) as http,
        ):
            api = Api(http)
            api.buy(viewer)
            room_id = api.open_room(creator)

        async def price_and_strand() -> None:
            price = price_gift(Catalog.load_default().gift("corgi"), 1, Fraction(1, 2))
            credit = CreatorCredit(
                unique("g_"), creator, room_id, viewer, "corgi", 1, price.coins, price.diamonds,
                int(time.time() * 1000), share=price.share,
            )  # fmt: skip
            async with Store.from_url(engine.url, keys) as store:
                assert await strand(store, credit) == 550 - 299

        asyncio.run(price_and_strand())
        with (
            running_server(server_env(engine.url, prefix, GIFTING_CREATOR_SHARE="0.7"), logs) as second,
            httpx.Client(base_url=second.base_url, timeout=10) as http,
        ):
            api = Api(http)
            deadline = time.monotonic() + 10
            while api.earnings(creator)["lifetime"] == 0:
                assert time.monotonic() < deadline, "the second server's sweeper did not deliver the gift"
                time.sleep(0.05)
            assert api.earnings(creator)["lifetime"] == 149  # floor(299 x 0.5), not floor(299 x 0.7)
            assert [(e["pending"], e["share"]) for e in api.earnings_ledger(creator)] == [(149, "1/2")]

        async def audit() -> AuditResult:
            async with engine_client_async(engine.url) as client:
                return await audit_books(client, keys, Fraction(7, 10))

        result = asyncio.run(audit())
        assert result.ok, result.violations
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


@pytest.mark.anyio
async def test_the_gift_service_is_the_same_path_without_http(
    service: GiftService, api: Api, viewer: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    api.buy(viewer)
    request = GiftRequest(gift_id="perfume", count=2, idempotency_key="svc-1")
    first = await service.send(viewer, room_id, request, int(time.time() * 1000))
    again = await service.send(viewer, room_id, request, int(time.time() * 1000))
    assert (first.coins, first.cost, first.replayed) == (510, 40, False)
    assert (again.gift_event_id, again.coins, again.replayed) == (first.gift_event_id, 510, True)
    assert api.earnings(creator)["pending"] == 20


def test_a_restart_keeps_every_balance(tmp_path: Path, logs: Path) -> None:
    """The server's own embedded engine: stop the whole server, start it again, same figures."""
    env = server_env(None, "gifting:", GIFTING_DATA_DIR=str(tmp_path / "data"), GIFTING_FSYNC="always")
    viewer = unique("v")
    with running_server(env, logs) as first, httpx.Client(base_url=first.base_url) as http:
        api = Api(http)
        api.buy(viewer, "us_1250")
        assert api.gift(viewer, "demo_carol", "galaxy").status_code == 200
        before = (api.wallet(viewer), api.ledger(viewer), api.earnings("carol"))
    assert (tmp_path / "data" / "appendonlydir").is_dir()
    with running_server(env, logs) as second, httpx.Client(base_url=second.base_url) as http:
        api = Api(http)
        after = (api.wallet(viewer), api.ledger(viewer), api.earnings("carol"))
        assert after == before
        assert before[0]["coins"] == 250 and before[2]["pending"] == 500


def test_an_engine_outage_is_503_and_service_resumes_by_itself(tmp_path: Path, logs: Path) -> None:
    """An engine the server does not own (``GIFTING_REDIS_URL``) goes down: the server is not
    ready, but healthy (``/healthz`` 200): restarting it would not bring the engine back.
    A server's own embedded engine is another matter (``tests/faults/test_crashes.py``)."""
    engine = EmbeddedEngine(tmp_path / "engine", fsync="always").start()
    env = server_env(engine.url, "gifting:")
    viewer = unique("v")
    try:
        with running_server(env, logs) as server, httpx.Client(base_url=server.base_url) as http:
            api = Api(http)
            api.buy(viewer)
            engine.stop()
            assert http.get("/readyz").status_code == 503
            assert http.get("/healthz").status_code == 200
            down = api.gift(viewer, "demo_carol", "rose")
            assert down.status_code == 503 and down.json()["error"]["code"] == "engine_unavailable"
            engine.start()
            assert http.get("/readyz").status_code == 200
            assert api.gift(viewer, "demo_carol", "rose").status_code == 200
            assert api.coins(viewer) == 549
    finally:
        engine.stop()


@pytest.mark.anyio
async def test_a_room_socket_rides_out_an_engine_outage(tmp_path: Path, logs: Path) -> None:
    """Gifts during the outage are refused with engine_unavailable; afterwards the same
    connection gifts again and receives the room's events, without reconnecting."""
    engine = EmbeddedEngine(tmp_path / "engine", fsync="always").start()
    viewer = unique("v")
    try:
        with (
            running_server(server_env(engine.url, "gifting:"), logs) as server,
            httpx.Client(base_url=server.base_url) as http,
        ):
            api = Api(http)
            api.buy(viewer)
            sock = await RoomSocket.open(server.base_url, "demo_carol", api.token(viewer))
            await sock.welcome()
            engine.stop()
            down = await sock.gift("rose", key="during-outage")
            assert (down["type"], down["code"]) == ("error", "engine_unavailable")
            engine.start()
            up = await sock.gift("rose", key="during-outage")  # the same key: charged once
            assert up["type"] == "gift_ack" and up["coins"] == 549, up
            [event] = await sock.wait_gift_count(1)
            assert event["event_id"] == up["gift_event_id"]
            assert api.coins(viewer) == 549
            await sock.close()
    finally:
        engine.stop()


@pytest.mark.anyio
async def test_a_burst_beyond_the_connection_pool_waits_instead_of_failing(store: Store) -> None:
    """More commands in flight than the pool has connections: they queue for one. (On a
    cluster, where redis-py's node pools cannot queue, each node's pool is ten times larger.)"""
    from server.store.store import MAX_CONNECTIONS

    replies = await asyncio.gather(*(store.redis.ping() for _ in range(3 * MAX_CONNECTIONS)))
    assert replies == [True] * (3 * MAX_CONNECTIONS)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"), "asyncio"]
)
async def test_a_pooled_connection_closed_under_the_store_is_replaced_for_the_next_command(
    store: Store, key_prefix: str
) -> None:
    """As every pooled connection to a cluster master is when the master fails: its
    transport closed while it sat in the pool. The next command takes a new connection; the
    event loop's complaint about the dead one (uvloop's ``RuntimeError``) never reaches a
    request, which answered it 500 internal_error."""
    key = f"{key_prefix}{unique('closed')}"
    redis = store.redis
    assert await redis.set(key, "1")

    async def close_under(connection: AbstractConnection) -> None:
        writer = connection._writer
        assert writer is not None
        writer.transport.abort()  # what the loop does to a transport the peer reset
        await writer.wait_closed()

    if isinstance(redis, RedisCluster):
        node = redis.get_node_from_key(key)
        connection = node.acquire_connection()
        await close_under(connection)
        node.release(connection)
    else:
        pool = redis.connection_pool
        connection = await pool.get_connection()
        await close_under(connection)
        await pool.release(connection)
    assert await redis.get(key) == "1"


@pytest.mark.pure
@pytest.mark.anyio
async def test_shutdown_ends_a_loop_that_lost_its_cancellation() -> None:
    """As a loop does whose cancellation raced an inner ``asyncio.wait_for`` on Python 3.11."""
    cancellations = 0

    async def loop_that_swallows_the_first_cancel() -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations > 1:
                    raise

    async def failing() -> None:
        raise RuntimeError("a loop that died")

    stubborn = asyncio.create_task(loop_that_swallows_the_first_cancel())
    crashed = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with anyio.fail_after(5):
        await stop_tasks([stubborn, crashed])
    assert stubborn.cancelled() and cancellations == 2
    assert isinstance(crashed.exception(), RuntimeError)


@pytest.fixture
def own_engine(tmp_path: Path) -> Iterator[EmbeddedEngine]:
    """An embedded engine of the test's own, whose process it may stop."""
    with EmbeddedEngine(tmp_path / "engine") as engine:
        yield engine


@pytest.mark.anyio
async def test_engine_calls_end_within_their_bound_against_a_stalled_engine(
    own_engine: EmbeddedEngine,
) -> None:
    """Each call gives up after the store's timeout, a request's calls share one budget, a
    blocking read gets its own wait on top, and the pool is usable again after the stall."""
    async with Store.from_url(own_engine.url, KeySchema("t:"), timeout_ms=300) as store:
        started = time.monotonic()
        assert await store.redis.xread({"t:s": "$"}, block=600) == []
        assert time.monotonic() - started >= 0.6  # its block, not the 0.3 s bound

        with stalled(own_engine):
            started = time.monotonic()
            with pytest.raises(EngineTimeout):
                await store.redis.get("t:x")
            assert 0.3 <= time.monotonic() - started < 0.6
            with engine_budget(0.3):
                started = time.monotonic()
                with pytest.raises(EngineTimeout):
                    await store.redis.get("t:x")
                with pytest.raises(EngineTimeout):
                    await store.redis.set("t:x", 1)
                assert time.monotonic() - started < 0.6  # the second had nothing left
            assert await store.ping() is False
        assert await store.ping() is True
        assert await store.redis.set("t:x", 1) and await store.redis.get("t:x") == "1"


@pytest.mark.anyio
async def test_a_call_shared_by_requests_ends_within_the_least_budget_of_them(
    own_engine: EmbeddedEngine,
) -> None:
    """A read (the room check) or a replica fence that several requests share in one turn
    waits no longer than the request with the least budget left may: each caller's budget
    bounds it, not only the first caller's. A gift whose budget an outage had spent used to
    wait a fresh request's whole budget on the room read it shared, then answer 503 after
    twice the bound."""
    async with Store.from_url(
        own_engine.url, KeySchema("t:"), timeout_ms=10_000, replica_acks=1, replica_timeout_ms=100
    ) as store:
        await store.rooms.create("alice", "r1", "A live", 1)  # the pool holds a connection now
        with stalled(own_engine):
            fresh_ones: list[asyncio.Future[object]] = []
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "read": lambda: store.rooms.get("r1"),
                "fence": lambda: store.replicated(rooms=["r1"]),
            }
            for name, call in calls.items():
                with engine_budget(5.0):
                    fresh = asyncio.ensure_future(call())
                with engine_budget(0.2):
                    spent = asyncio.ensure_future(call())
                started = time.monotonic()
                with pytest.raises(EngineTimeout):
                    await spent
                fresh_ones.append(fresh)
                assert time.monotonic() - started < 2.0, name  # not the fresh caller's 5 s
            for sharer in fresh_ones:  # the one call they shared ended for both
                with pytest.raises(EngineTimeout):
                    await sharer
        assert await store.ping() is True
