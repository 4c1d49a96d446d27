"""``ScriptBatch``: the gift path's reads and scripts of one event-loop turn share one pipeline."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError, ResponseError

from server import metrics
from server.settings import cluster_nodes
from server.store.batch import MAX_BATCH, ScriptBatch
from server.store.connection import hiredis_packing
from server.store.scripts import Script, ScriptRunner
from tests.conftest import Engine
from tests.support import engine_client_async, unique

pytestmark = pytest.mark.anyio

# Appends ARGV[1] to a list and returns the list's new length: the engine's order of execution.
APPEND = "return redis.call('RPUSH', KEYS[1], ARGV[1])"
# Fails inside the engine when ARGV[1] is 'fail'.
CHECKED = "if ARGV[1] == 'fail' then return redis.error_reply('ERR refused') end return ARGV[1]"


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[Redis]:
    if cluster_nodes(engine.url) is not None:
        client = engine_client_async(engine.url)
    else:
        pool = BlockingConnectionPool.from_url(engine.url, decode_responses=True, client_name=unique("batch"))
        pool.connection_class = hiredis_packing(pool.connection_class)
        client = Redis.from_pool(pool)
    yield client
    await client.aclose()


def appender(client: Redis, key_prefix: str) -> tuple[ScriptBatch, Script, str]:
    """A fresh batch, the APPEND script and a fresh list key for it."""
    return ScriptBatch(ScriptRunner(client)), Script("append", APPEND), f"{key_prefix}{unique('list')}"


async def connections_named(engine: Engine, name: str) -> int:
    with redis.Redis.from_url(engine.url) as admin:
        return sum(1 for c in admin.client_list() if c.get("name") == name)


async def test_calls_of_one_turn_share_one_connection_and_run_in_order(
    client: Redis, engine: Engine, key_prefix: str
) -> None:
    batch, script, key = appender(client, key_prefix)
    futures: list[asyncio.Future[int]] = [batch.call(script, [key], [i]) for i in range(200)]
    assert await asyncio.gather(*futures) == list(range(1, 201))
    assert await client.lrange(key, 0, -1) == [str(i) for i in range(200)]
    if cluster_nodes(engine.url) is None:
        # 200 calls queued in one turn went out on one pooled connection, not one each.
        name = client.connection_pool.connection_kwargs["client_name"]
        assert await connections_named(engine, name) == 1


async def test_a_turn_larger_than_the_batch_limit_goes_out_in_several_pipelines(
    client: Redis, key_prefix: str
) -> None:
    batch, script, key = appender(client, key_prefix)
    replies: list[int] = await asyncio.gather(
        *(batch.call(script, [key], [i]) for i in range(MAX_BATCH * 2 + 3))
    )
    assert sorted(replies) == list(range(1, MAX_BATCH * 2 + 4))
    assert await client.llen(key) == MAX_BATCH * 2 + 3


async def test_each_error_reaches_only_its_own_caller(client: Redis) -> None:
    batch = ScriptBatch(ScriptRunner(client))
    script = Script("checked", CHECKED)

    def parse(reply: str) -> str:
        if reply == "bad":
            raise ValueError("unparsable reply")
        return reply.upper()

    results = await asyncio.gather(
        batch.call(script, [], ["a"], parse),
        batch.call(script, [], ["fail"], parse),
        batch.call(script, [], ["bad"], parse),
        batch.call(script, [], ["b"], parse),
        return_exceptions=True,
    )
    assert results[0] == "A" and results[3] == "B"
    assert isinstance(results[1], ResponseError) and "refused" in str(results[1])
    assert isinstance(results[2], ValueError)


@pytest.mark.embedded_only
@pytest.mark.usefixtures("needs_own_engine")
async def test_a_flushed_script_is_loaded_again_and_only_refused_calls_are_resent(
    client: Redis, key_prefix: str
) -> None:
    batch, script, key = appender(client, key_prefix)
    assert await batch.call(script, [key], ["before"]) == 1
    await client.script_flush()
    assert await asyncio.gather(*(batch.call(script, [key], [i]) for i in range(5))) == [2, 3, 4, 5, 6]
    assert await client.lrange(key, 0, -1) == ["before", "0", "1", "2", "3", "4"]


async def test_a_read_queued_among_scripts_gets_its_own_reply_in_their_order(
    client: Redis, key_prefix: str
) -> None:
    batch, script, key = appender(client, key_prefix)
    first: asyncio.Future[int] = batch.call(script, [key], ["a"])
    read = batch.read(("LRANGE", key, 0, -1), lambda items: [item.upper() for item in items])
    second: asyncio.Future[int] = batch.call(script, [key], ["b"])
    assert (await first, await read, await second) == (1, ["A"], 2)


@pytest.mark.embedded_only
@pytest.mark.usefixtures("needs_own_engine")
async def test_a_read_beside_scripts_refused_after_a_flush_is_answered_once(
    client: Redis, key_prefix: str
) -> None:
    batch, script, key = appender(client, key_prefix)
    await client.script_flush()
    # Only the refused scripts are sent again: the read is answered from the first pipeline,
    # where they had not run.
    appended: asyncio.Future[int] = batch.call(script, [key], ["a"])
    length: asyncio.Future[int] = batch.read(("LLEN", key))
    assert (await appended, await length) == (1, 0)
    assert await client.lrange(key, 0, -1) == ["a"]


async def test_the_same_read_queued_twice_in_a_turn_is_sent_once(client: Redis, key_prefix: str) -> None:
    batch, key = ScriptBatch(ScriptRunner(client)), f"{key_prefix}{unique('room')}"
    await client.hset(key, mapping={"state": "live"})
    sent = metrics.ENGINE_PIPELINED_CALLS._value.get()
    first: asyncio.Future[dict[str, str]] = batch.read(("HGETALL", key))
    second: asyncio.Future[dict[str, str]] = batch.read(("HGETALL", key))
    other: asyncio.Future[str] = batch.read(("HGET", key, "state"))
    second.cancel()  # a caller that gives up takes no other caller's reply with it
    assert await first == {"state": "live"} and await other == "live"
    assert metrics.ENGINE_PIPELINED_CALLS._value.get() - sent == 2
    # The next turn reads again, and sees what was written since.
    await client.hset(key, "state", "ended")
    assert await batch.read(("HGETALL", key)) == {"state": "ended"}
    assert metrics.ENGINE_PIPELINED_CALLS._value.get() - sent == 3


async def test_an_unreachable_engine_fails_every_call_of_the_batch() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    try:
        batch = ScriptBatch(ScriptRunner(client))
        script = Script("append", APPEND)
        results = await asyncio.gather(
            *(batch.call(script, ["k"], [i]) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, ConnectionError) for r in results), results
    finally:
        await client.aclose()
