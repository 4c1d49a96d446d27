"""Gift throughput: the real server over its WebSocket (or HTTP) against the bare debit script.

For each fsync policy (``--fsync always``, ``everysec`` or ``both``) a fresh embedded engine
is started with that ``appendfsync`` policy, and three things are measured on it:

server
    Gifts per second acknowledged by a real ``python -m server`` process (demo mode, its own
    key prefix), as fast as the acks allow. ``--concurrency`` senders each send 1-coin roses,
    each with a fresh idempotency key, into ``--rooms`` live rooms (16 by default; the
    senders are spread over them round-robin) that the benchmark opens through the API;
    senders buy their coins through the real purchase and sandbox payment flow. Also the
    p50/p99 acknowledgement latency; any error fails the benchmark. With ``--servers N``,
    N server processes share the engine (as one hub) and sender i talks to server i mod N,
    as a load balancer spreading connections would; their CPU is added up. With
    ``--shards N`` the engine is a local cluster of N masters (``server/cluster.py``, their
    CPU added up) and the server runs on its ``redis+cluster://`` URL; the ceiling then runs
    through a cluster client on the same masters (database 0, its own prefix). ``--replicas
    N`` gives each master N replicas (their CPU counted with the engine's), and
    ``--replica-acks N`` makes the server wait for N of them before acknowledging a money
    write (``GIFTING_REPLICA_ACKS``). The transport
    (``--transport``) is either

    ``ws`` (default), the way viewers gift: each sender holds its room's WebSocket
    (``/v1/rooms/{room}/ws``, subprotocol ``gifting.v1.json``) and keeps up to
    ``--inflight`` ``gift`` frames unanswered, matching ``gift_ack`` and ``error`` frames to
    them by idempotency key. A sender is a viewer of its room too, so the server also
    delivers the room's batches to every sender, as it would in production; the client
    skips them by their first bytes (the load generator shares the machine, so it must
    stay cheap). It uses the ``websockets`` asyncio client: one per sender is cheap enough
    at tens of connections. The default is 64 senders x 1 in flight, as the figures
    of docs/SCALING.md were taken; the server handles up to 32 frames of a connection at once
    (``api/ws.py`` ``InFlight``), so ``--inflight 4`` shows what a client that does not wait
    for each answer gets: its gifts share the engine's round trips. The suite
    (``loadtest.bench``) takes its maximum at ``--inflight 4``: with 1, the rate is the 64
    gifts in flight over one gift's latency (three round trips to the engine), however
    little of the machine that uses. The rooms matter: a
    platform's gifts spread over many lives, and with every sender in one room each gift
    would also go out to every sender, so the measure would be the room's fan-out
    (``bench_room`` measures that) rather than the gift path.

    ``http``: ``POST /v1/rooms/{room}/gifts``, one request at a time per sender over
    keep-alive HTTP/1.1. Each sender has its own httpx client of one connection: one shared
    client with a pool of 64 connections spends a core on httpcore's pool bookkeeping alone
    (its per-request scan of every connection) and caps the load at a few hundred gifts/s;
    ``--client-pool shared`` shows it.

paced
    The ack latency at a fixed offered rate, ``--paced`` (0.5) times the median maximum just
    measured: the gifts are sent round-robin over the same senders on one fixed schedule,
    whatever the acks do (an open loop, so queueing at the maximum does not hide in the
    figure). A maximum rate says what the server can take; the latency at half of it says
    how it serves a load it can comfortably take. Only for ``--transport ws``. Each paced
    run on one engine also says how many rewrites of the append-only file overlapped it
    (``paced_aof_rewrites``): one holds the fsyncs of ``always`` for most of a second.

ceiling
    ``gift_debit.lua`` run bare by EVALSHA from a redis-py asyncio client packing with
    hiredis as the server's store does: 4 pipelines of 100 calls in flight, keys built by the
    real ``KeySchema`` under another prefix, wallets funded by a plain HSET (this is not the
    money path).

Why that is the ceiling: every acknowledged gift is one run of gift_debit, and the engine runs
scripts one at a time on one thread, so the server can never acknowledge gifts faster than the
engine runs that script. Pipelining strips everything else away: no HTTP, JSON or JWT, no room
publish, no creator credit (the server runs 3 scripts per gift: gift_debit, then room_gift and
credit_creator, plus a batched outbox HDEL), and one round trip carries 100 calls. With
``appendfsync always`` the engine writes and fsyncs its append-only file once per event-loop
turn, before it answers anything from that turn, so a turn full of pipelined scripts shares one
fsync (group commit); the server's concurrent gifts share round trips and fsyncs too (its
scripts of one event-loop turn go out as one pipeline, see ``server/store/batch.py``), with
fewer commands per turn. The ratio server/ceiling is how much of the engine's capacity for the
gift's one atomic step the whole server delivers.

The load generator, the server and the engine share the machine's cores, so the CPU each
used during a measurement is shown beside it, in cores (CPU seconds per wall second), and as
CPU microseconds per gift or script, which a busy machine disturbs far less than the rates:
1e6 over it is what one whole core would do. On a small machine the ceiling can be bound by
the client rather than by the engine; the engine's microseconds per script then give its own
limit. The two measurements are interleaved and
repeated (``--repeat``) and medians are reported, because the machine is shared and noisy; an
uncounted warm-up of each comes first.

The ceiling uses logical database 1 of the engine: the server's outbox sweeper SCANs database
0 periodically and should not walk the ceiling's keys, and database 1 is flushed before each
ceiling run so the idempotency records and ledger entries of earlier runs do not pile up.

    .venv/bin/python -m loadtest.bench_gift [--transport ws|http] [--seconds 5]
        [--concurrency 64] [--inflight 1] [--rooms 16] [--servers 1] [--shards 1]
        [--replicas 0] [--replica-acks 0] [--paced 0.5]
        [--fsync always|everysec|both] [--repeat 3] [--warmup 1]
        [--client-pool per-sender|shared] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from loadtest.harness import (
    ACK_TIMEOUT_S,
    CREATOR_ID,
    GIFT_ID,
    PACKAGE_COINS,
    ROOM_ID,
    SUBPROTOCOL,
    UNLIMITED,
    BenchError,
    CpuMeter,
    Sender,
    collector_off,
    fraction,
    http_client,
    judged,
    new_sender,
    open_room,
    pace,
    percentile,
    positive_float,
    positive_int,
    report_head,
    run_benchmark,
    running_server,
    top_up,
)
from server.cluster import EmbeddedCluster
from server.domain.catalog import Catalog
from server.domain.money import gift_fingerprint, price_gift, utc_day
from server.engine import EmbeddedEngine
from server.keys import KeySchema, UserKeys
from server.settings import FSYNC_POLICIES, Settings
from server.store.connection import hiredis_packing
from server.store.records import CreatorCredit
from server.store.scripts import script_source
from server.store.store import connect_cluster
from server.store.topology import Topology
from server.store.wallets import gift_debit_arguments

RAW_PREFIX = "benchraw:"
RAW_DB = 1
RAW_COINS = 10**15
PIPELINES = 4
PIPELINE_DEPTH = 100
# Frames a sender skips unparsed: room batches and its own balance updates.
IGNORED_FRAMES = ('{"type":"batch"', '{"type":"balance"')
HTTP_SENDERS = 64
WS_SENDERS = 64  # x --inflight (see the module docstring)
ROOMS = 16
# The targets a result is judged against (its "targets"): the server's gifts/s as a share of the
# bare script's on the same engine, for one server process and for several on the one engine;
# the server's and the engine's CPU per gift at that maximum; and the p99 ack of the paced runs.
GIFT_RATIO_TARGET = 0.30
SERVERS_RATIO_TARGET = 0.40
SERVER_CPU_US_TARGET = 60.0
ENGINE_CPU_US_TARGET = 60.0
PACED_P99_TARGET_MS = 25.0


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerRun:
    gifts: int
    seconds: float
    gifts_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    busiest_sender_gifts: int
    cpu_cores: dict[str, float]
    # The append-only file's rewrites that overlapped the run (paced runs on one engine).
    aof_rewrites: int | None = None


@dataclass(frozen=True)
class CeilingRun:
    scripts: int
    seconds: float
    scripts_per_s: float
    cpu_cores: dict[str, float]


@dataclass(frozen=True)
class PolicyResult:
    """Every run on the engine started with one fsync policy, and their medians."""

    fsync: str
    engine_version: str
    server_runs: list[ServerRun]
    ceiling_runs: list[CeilingRun]
    transport: str = "http"
    servers: int = 1  # server processes sharing the engine
    paced_rate: float | None = None  # offered gifts/s of the paced runs (None: not run)
    paced_runs: list[ServerRun] = field(default_factory=list)

    @property
    def server_gifts_per_s(self) -> float:
        return statistics.median(run.gifts_per_s for run in self.server_runs)

    @property
    def ceiling_scripts_per_s(self) -> float:
        return statistics.median(run.scripts_per_s for run in self.ceiling_runs)

    @property
    def ratio(self) -> float:
        return self.server_gifts_per_s / self.ceiling_scripts_per_s

    def summary(self) -> dict[str, Any]:
        """Medians across runs; ``*_cpu_us_per_*`` is CPU time per operation, which a shared
        machine disturbs much less than the rate (1e6 / it is what one whole core would do)."""
        server_cpu = median_cpu([run.cpu_cores for run in self.server_runs])
        ceiling_cpu = median_cpu([run.cpu_cores for run in self.ceiling_runs])
        return {
            "server_gifts_per_s": round(self.server_gifts_per_s, 1),
            "server_p50_ms": round(statistics.median(run.p50_ms for run in self.server_runs), 3),
            "server_p99_ms": round(statistics.median(run.p99_ms for run in self.server_runs), 3),
            "server_errors": sum(run.errors for run in self.server_runs),
            "server_cpu_cores": server_cpu,
            "server_cpu_us_per_gift": per_op_us(server_cpu["server"], self.server_gifts_per_s),
            "engine_cpu_us_per_gift": per_op_us(server_cpu["engine"], self.server_gifts_per_s),
            "ceiling_scripts_per_s": round(self.ceiling_scripts_per_s, 1),
            "ceiling_cpu_cores": ceiling_cpu,
            "engine_cpu_us_per_script": per_op_us(ceiling_cpu["engine"], self.ceiling_scripts_per_s),
            "ratio": round(self.ratio, 4),
            **self.paced_summary(),
        }

    def paced_summary(self) -> dict[str, Any]:
        """The paced runs' medians (the latency at a rate the server comfortably takes)."""
        if not self.paced_runs:
            return {}
        return {
            "paced_offered_per_s": self.paced_rate,
            "paced_gifts_per_s": round(statistics.median(run.gifts_per_s for run in self.paced_runs), 1),
            "paced_p50_ms": round(statistics.median(run.p50_ms for run in self.paced_runs), 3),
            "paced_p99_ms": round(statistics.median(run.p99_ms for run in self.paced_runs), 3),
            "paced_errors": sum(run.errors for run in self.paced_runs),
            "paced_aof_rewrites": [run.aof_rewrites for run in self.paced_runs],
            "paced_ceiling_ratio": round((self.paced_rate or 0) / self.ceiling_scripts_per_s, 4),
        }

    @property
    def label(self) -> str:
        """What the result is named by in a summary: its fsync policy, transport and processes."""
        label = f"gift path, fsync {self.fsync}"
        if self.transport != "ws":
            label += f", over {self.transport}"
        if self.servers > 1:
            label += f", {self.servers} server processes"
        return label

    def targets(self) -> list[dict[str, Any]]:
        """The maximum against the bare script's rate; the server's CPU per gift there (its
        processes together), and the engine's beside what a bare script costs it; and the
        paced runs' p99 ack."""
        median = self.summary()
        share = SERVERS_RATIO_TARGET if self.servers > 1 else GIFT_RATIO_TARGET
        server_us, engine_us = median["server_cpu_us_per_gift"], median["engine_cpu_us_per_gift"]
        script_us = median["engine_cpu_us_per_script"]
        targets = [
            judged(
                "gifts/s acked (max)",
                median["server_gifts_per_s"],
                f">= {share * 100:g} % of bare script ({median['ceiling_scripts_per_s']:,.0f}/s)",
                self.ratio >= share,
                ratio=median["ratio"],
                unit="gifts/s",
            ),
            judged(
                "server CPU per gift acked (max)",
                server_us,
                f"<= {SERVER_CPU_US_TARGET:g} µs",
                server_us <= SERVER_CPU_US_TARGET,
                unit="µs",
            ),
            judged(
                "engine CPU per gift acked (max)",
                engine_us,
                f"<= {ENGINE_CPU_US_TARGET:g} µs (a bare script: {script_us:g} µs)",
                engine_us <= ENGINE_CPU_US_TARGET,
                # Over the engine's CPU per bare script of the same run: a gift's cost in scripts.
                ratio=round(engine_us / script_us, 3) if script_us else None,
                unit="µs",
            ),
        ]
        if self.paced_runs:
            p99 = median["paced_p99_ms"]
            targets.append(
                judged(
                    f"p99 ack at {median['paced_offered_per_s']:,.0f} gifts/s offered",
                    p99,
                    f"<= {PACED_P99_TARGET_MS:g} ms",
                    p99 <= PACED_P99_TARGET_MS,
                    unit="ms",
                )
            )
        return targets

    def to_dict(self) -> dict[str, Any]:
        return {
            "fsync": self.fsync,
            "transport": self.transport,
            "servers": self.servers,
            "engine_version": self.engine_version,
            "median": self.summary(),
            "targets": self.targets(),
            "server_runs": [asdict(run) for run in self.server_runs],
            "ceiling_runs": [asdict(run) for run in self.ceiling_runs],
            "paced_runs": [asdict(run) for run in self.paced_runs],
        }


def per_op_us(cores: float, per_s: float) -> float:
    return round(cores / per_s * 1e6, 1)


def median_cpu(samples: list[dict[str, float]]) -> dict[str, float]:
    return {name: round(statistics.median(s[name] for s in samples), 2) for name in samples[0]}


# --- measurement 1: gifts through the server -----------------------------------------------


async def gift_worker(
    sender: Sender,
    run_tag: str,
    deadline: float,
    latencies: list[float],
    failures: list[str],
) -> int:
    """Send roses one after another until ``deadline``; return how many were acknowledged."""
    url = f"/v1/rooms/{sender.room_id}/gifts"
    sent = acked = 0
    while time.perf_counter() < deadline:
        body = orjson.dumps({"gift_id": GIFT_ID, "count": 1, "idempotency_key": f"{run_tag}-{sent}"})
        sent += 1
        started = time.perf_counter()
        try:
            reply = await sender.client.post(url, content=body, headers=sender.headers)
        except httpx.HTTPError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        if reply.status_code == 200:
            latencies.append(time.perf_counter() - started)
            acked += 1
        else:
            failures.append(f"HTTP {reply.status_code}: {reply.text[:200]}")
    return acked


async def measure_server(senders: list[Sender], seconds: float, run_tag: str, meter: CpuMeter) -> ServerRun:
    latencies: list[float] = []
    failures: list[str] = []
    meter.start()
    started = time.perf_counter()
    deadline = started + seconds
    acked = await asyncio.gather(
        *(gift_worker(sender, run_tag, deadline, latencies, failures) for sender in senders)
    )
    elapsed = time.perf_counter() - started
    return server_run(run_tag, latencies, failures, elapsed, max(acked), meter.stop())


def server_run(
    run_tag: str,
    latencies: list[float],
    failures: list[str],
    elapsed: float,
    busiest: int,
    cpu: dict[str, float],
) -> ServerRun:
    """One run's figures from its ack latencies (seconds); any failure fails the benchmark."""
    if failures or not latencies:
        raise BenchError(
            f"{len(failures)} of {len(failures) + len(latencies)} gifts failed in run {run_tag!r}; "
            f"first: {failures[0] if failures else 'none acknowledged'}"
        )
    latencies.sort()
    return ServerRun(
        gifts=len(latencies),
        seconds=round(elapsed, 3),
        gifts_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(percentile(latencies, 50) * 1000, 3),
        p99_ms=round(percentile(latencies, 99) * 1000, 3),
        errors=len(failures),
        busiest_sender_gifts=busiest,
        cpu_cores=cpu,
    )


# --- measurement 1 over the room WebSocket -------------------------------------------------


class WsGifter:
    """One sender's room WebSocket: ``gift`` frames out, acks matched back by idempotency key.

    A reader task answers the frames as they come, so a sender can keep several gifts in
    flight; each run hands it fresh lists to record into (``begin``).
    """

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.pending: dict[str, float] = {}  # idempotency key -> send time
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.acked = 0
        self.sent = 0
        self.answered = asyncio.Event()  # set whenever an answer frees a slot
        self.reader = asyncio.create_task(self.read())

    @classmethod
    async def open(cls, base_url: str, sender: Sender) -> WsGifter:
        token = sender.headers["authorization"].removeprefix("Bearer ")
        uri = f"{base_url.replace('http://', 'ws://', 1)}/v1/rooms/{sender.room_id}/ws?token={token}"
        conn = await connect(uri, subprotocols=[Subprotocol(SUBPROTOCOL)], compression=None, max_size=None)
        first = await asyncio.wait_for(conn.recv(), ACK_TIMEOUT_S)
        if not str(first).startswith('{"type":"welcome"'):
            await conn.close()
            raise BenchError(f"{sender.user_id}: the first frame is not a welcome: {str(first)[:200]}")
        return cls(conn)

    def begin(self, latencies: list[float], failures: list[str]) -> None:
        self.latencies, self.failures, self.acked = latencies, failures, 0

    async def read(self) -> None:
        try:
            async for frame in self.conn:
                if isinstance(frame, str) and frame.startswith(IGNORED_FRAMES):
                    continue
                body = orjson.loads(frame)
                kind = body.get("type")
                if kind == "gift_ack":
                    self.answer(body.get("idempotency_key"), None)
                elif kind == "error":
                    self.answer(body.get("idempotency_key"), f"{body.get('code')}: {body.get('message')}")
        except ConnectionClosed as exc:
            self.failures.append(f"connection closed: {exc}")
        self.answered.set()

    def answer(self, key: str | None, failure: str | None) -> None:
        started = self.pending.pop(key, None) if key is not None else None
        if failure is not None:
            self.failures.append(failure)
        elif started is not None:
            self.latencies.append(time.perf_counter() - started)
            self.acked += 1
        self.answered.set()

    async def gift(self, run_tag: str) -> None:
        key = f"{run_tag}-{self.sent}"
        self.sent += 1
        self.pending[key] = time.perf_counter()
        body = {"type": "gift", "gift_id": GIFT_ID, "count": 1, "idempotency_key": key}
        await self.conn.send(orjson.dumps(body).decode())

    async def flood(self, run_tag: str, deadline: float, inflight: int) -> None:
        """Keep ``inflight`` gifts unanswered until ``deadline``."""
        while time.perf_counter() < deadline and not self.reader.done():
            if len(self.pending) >= inflight:
                self.answered.clear()
                try:
                    await asyncio.wait_for(self.answered.wait(), ACK_TIMEOUT_S)
                except TimeoutError:
                    return  # drain() reports what is still unanswered
                continue
            await self.gift(run_tag)

    async def drain(self) -> None:
        """Wait until every gift sent has been answered (or give up after ``ACK_TIMEOUT_S``)."""
        give_up = time.perf_counter() + ACK_TIMEOUT_S
        while self.pending and not self.reader.done() and time.perf_counter() < give_up:
            self.answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.answered.wait(), give_up - time.perf_counter())
        if self.pending:
            self.failures.append(f"{len(self.pending)} gifts unanswered")
            self.pending.clear()

    async def close(self) -> None:
        await self.conn.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


async def measure_ws(
    gifters: list[WsGifter], seconds: float, run_tag: str, inflight: int, meter: CpuMeter
) -> ServerRun:
    """Gifts/s over the room WebSocket with ``inflight`` gifts in flight per sender, until
    ``seconds`` are up and every gift sent has been answered."""
    latencies: list[float] = []
    failures: list[str] = []
    for gifter in gifters:
        gifter.begin(latencies, failures)
    meter.start()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(gifter.flood(f"{run_tag}-{i}", deadline, inflight) for i, gifter in enumerate(gifters))
    )
    await asyncio.gather(*(gifter.drain() for gifter in gifters))
    elapsed = time.perf_counter() - started
    busiest = max(gifter.acked for gifter in gifters)
    return server_run(run_tag, latencies, failures, elapsed, busiest, meter.stop())


async def measure_paced(
    gifters: list[WsGifter], rate: float, seconds: float, run_tag: str, meter: CpuMeter
) -> ServerRun:
    """Ack latency with ``rate`` gifts/s sent round-robin over ``gifters`` on a fixed schedule
    (catching up at once when the loop falls behind), whatever the acks do."""
    latencies: list[float] = []
    failures: list[str] = []
    for gifter in gifters:
        gifter.begin(latencies, failures)
    meter.start()
    started = time.perf_counter()
    await pace(rate, seconds, lambda n: gifters[n % len(gifters)].gift(f"{run_tag}-{n % len(gifters)}"))
    await asyncio.gather(*(gifter.drain() for gifter in gifters))
    elapsed = time.perf_counter() - started
    busiest = max(gifter.acked for gifter in gifters)
    return server_run(run_tag, latencies, failures, elapsed, busiest, meter.stop())


# --- measurement 2: the bare script (the ceiling) ------------------------------------------


@dataclass(frozen=True)
class RawDebits:
    """Calls gift_debit exactly as ``Wallets.debit_gift`` does, for a rose into the demo room."""

    redis: Redis
    sha: str
    users: list[tuple[str, UserKeys]]
    coins: int
    diamonds: int

    @classmethod
    async def prepare(cls, redis: Redis, user_count: int) -> RawDebits:
        """Empty the ceiling's database, fund ``user_count`` wallets, load the script. (A
        cluster has one database: there the earlier runs' keys stay, under their own prefix.)"""
        keys = KeySchema(RAW_PREFIX)
        users = [(f"raw_{i:03d}", keys.user(f"raw_{i:03d}")) for i in range(user_count)]
        if Topology.of(redis).one_connection:
            await redis.flushdb()
        async with redis.pipeline(transaction=False) as pipe:
            for _, user in users:
                pipe.hset(user.wallet, "coins", RAW_COINS)
            await pipe.execute()
        sha: str = await redis.script_load(script_source("gift_debit"))
        price = price_gift(Catalog.load_default().gift(GIFT_ID), 1, Settings.creator_share)
        return cls(redis, sha, users, price.coins, price.diamonds)

    async def worker(self, worker: int, run_tag: str, deadline: float) -> int:
        """Send pipelines of ``PIPELINE_DEPTH`` calls until ``deadline``; return how many ran."""
        fingerprint = gift_fingerprint(ROOM_ID, GIFT_ID, 1)
        done = 0
        while time.perf_counter() < deadline:
            now = time.time_ns() // 1_000_000
            pipe = self.redis.pipeline(transaction=False)
            for n in range(done, done + PIPELINE_DEPTH):
                user_id, user = self.users[(worker + n * PIPELINES) % len(self.users)]
                credit = CreatorCredit(
                    event_id=f"g_{run_tag}_{worker}_{n}",
                    creator_id=CREATOR_ID,
                    room_id=ROOM_ID,
                    sender_id=user_id,
                    gift_id=GIFT_ID,
                    count=1,
                    coins=self.coins,
                    diamonds=self.diamonds,
                    ts=now,
                )
                keys, args = gift_debit_arguments(
                    user,
                    credit,
                    idempotency_key=f"{run_tag}-{worker}-{n}",
                    fingerprint=fingerprint,
                    day=utc_day(now),
                    idempotency_ttl_s=Settings.idempotency_ttl_s,
                    rate_per_s=UNLIMITED,
                    burst=UNLIMITED,
                    clawback_window_ms=Settings().clawback_window_ms,
                )
                pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)  # cluster-safe
            replies = await pipe.execute()
            refused = [reply for reply in replies if reply[0] != b"ok"]
            if refused:
                raise BenchError(f"gift_debit refused {len(refused)} calls; first reply: {refused[0]!r}")
            done += PIPELINE_DEPTH
        return done


async def measure_ceiling(
    redis: Redis, users: int, seconds: float, run_tag: str, meter: CpuMeter
) -> CeilingRun:
    raw = await RawDebits.prepare(redis, users)
    meter.start()
    started = time.perf_counter()
    deadline = started + seconds
    done = await asyncio.gather(*(raw.worker(worker, run_tag, deadline) for worker in range(PIPELINES)))
    elapsed = time.perf_counter() - started
    cpu = meter.stop()
    return CeilingRun(
        scripts=sum(done),
        seconds=round(elapsed, 3),
        scripts_per_s=round(sum(done) / elapsed, 1),
        cpu_cores=cpu,
    )


def url_with_db(url: str, db: int) -> str:
    """``url`` pointing at logical database ``db`` (unix:// takes it as a query, redis:// as the path)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return urlunsplit(parts._replace(query=f"db={db}"))
    return urlunsplit(parts._replace(path=f"/{db}"))


# --- one policy: engine, server, interleaved runs ------------------------------------------


async def bench_policy(args: argparse.Namespace, fsync: str) -> PolicyResult:
    with tempfile.TemporaryDirectory(prefix="bench-gift-") as tmp:
        if args.shards > 1:
            with EmbeddedCluster(
                Path(tmp) / "cluster", masters=args.shards, replicas=args.replicas, fsync=fsync
            ) as cluster:
                pids = tuple(node.process.pid for node in cluster.nodes if node.process is not None)
                # The same client as the server's store (hiredis packing), bytes replies.
                nodes = [("127.0.0.1", node.port) for node in cluster.nodes]
                raw_cluster = connect_cluster(nodes, decode_responses=False)
                return await bench_engine(args, cluster.url, pids, fsync, raw_cluster, Path(tmp))
        engine = EmbeddedEngine(Path(tmp) / "engine", fsync=fsync).start()
        try:
            assert engine.process is not None
            raw = Redis.from_url(url_with_db(engine.url, RAW_DB))
            # The same command packing as the server's store, so the ceiling is not the client's.
            raw.connection_pool.connection_class = hiredis_packing(raw.connection_pool.connection_class)
            if raw.connection_pool.connection_kwargs.get("db") != RAW_DB:
                raise BenchError(f"could not point the ceiling client at database {RAW_DB}")
            return await bench_engine(args, engine.url, (engine.process.pid,), fsync, raw, Path(tmp))
        finally:
            engine.stop()


async def bench_engine(
    args: argparse.Namespace,
    engine_url: str,
    engine_pids: tuple[int, ...],
    fsync: str,
    raw: Redis,
    logs: Path,
) -> PolicyResult:
    """Every measurement on one engine (or cluster) at ``engine_url``; ``raw`` runs the ceiling."""
    try:
        info = await raw.info("server")
        if not Topology.of(raw).one_connection and "redis_version" not in info:
            info = next(iter(info.values()))  # one reply per node: any of them names the version
        engine_version = (
            f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info['redis_version']}"
        )
        async with (
            contextlib.AsyncExitStack() as servers,
            contextlib.AsyncExitStack() as clients,
        ):
            # With --servers N, N processes share the engine (and form one hub); sender i
            # connects to server i mod N, as a load balancer spreading connections would.
            running = [
                await servers.enter_async_context(
                    running_server(engine_url, logs / f"server{n}.log", args.replica_acks)
                )
                for n in range(args.servers)
            ]
            urls = [base_url for base_url, _ in running]
            server_pids = tuple(pid for _, pid in running)
            meter = CpuMeter({"server": server_pids, "engine": engine_pids, "client": None})
            setup = await clients.enter_async_context(http_client(urls[0], args.concurrency))
            rooms = [await open_room(setup, f"bench_creator_{j:03d}") for j in range(args.rooms)]
            senders: list[Sender] = []
            for i in range(args.concurrency):
                gifts = setup
                if args.client_pool == "per-sender" and args.transport == "http":
                    gifts = await clients.enter_async_context(http_client(urls[i % len(urls)], 1))
                senders.append(await new_sender(setup, f"bench_{i:03d}", gifts, rooms[i % len(rooms)]))
            gifters: list[WsGifter] = []
            if args.transport == "ws":
                gifters = [
                    await WsGifter.open(urls[i % len(urls)], sender) for i, sender in enumerate(senders)
                ]
                for gifter in gifters:
                    clients.push_async_callback(gifter.close)
            one_engine = Topology.of(raw).one_connection
            if one_engine:
                await raw.config_set("latency-monitor-threshold", STALL_MS)
            result = await interleaved_runs(args, fsync, engine_version, setup, senders, gifters, raw, meter)
            if one_engine:
                print(f"  [{fsync} engine] {await engine_stalls(raw)}", flush=True)
            return result
    finally:
        await raw.aclose()


async def engine_stalls(raw: Redis) -> str:
    """What held the engine's event loop ``STALL_MS`` or more during the runs (its latency
    monitor: an fsync under ``always``, a fork for the append-only file's rewrite, a slow
    write), and how many times the file was rewritten: the source of the p99 acks' stalls."""
    rewrites, _ = await aof_rewrites(raw)
    events = []
    for event, *_ in await raw.execute_command("LATENCY", "LATEST"):
        name = event.decode() if isinstance(event, bytes) else str(event)
        history = await raw.execute_command("LATENCY", "HISTORY", name)
        worst = max(int(ms) for _, ms in history)
        events.append(f"{name} {len(history)}x (max {worst} ms)")
    stalls = ", ".join(events) or "none"
    return f"AOF rewrites {rewrites}; stalls of {STALL_MS} ms or more: {stalls}"


async def aof_rewrites(raw: Redis) -> tuple[int, int]:
    """The append-only file rewrites the engine has finished, and whether one is running."""
    persistence = await raw.info("persistence")
    return int(persistence.get("aof_rewrites", 0)), int(persistence.get("aof_rewrite_in_progress", 0))


# The engine's latency monitor reports the event-loop stalls at least this long (ms).
STALL_MS = 10


async def interleaved_runs(
    args: argparse.Namespace,
    fsync: str,
    engine_version: str,
    client: httpx.AsyncClient,
    senders: list[Sender],
    gifters: list[WsGifter],
    raw: Redis,
    meter: CpuMeter,
) -> PolicyResult:
    """Server and ceiling runs in turn after a warm-up of each, then (ws) the paced runs."""
    log = progress(fsync)
    # Enough coins for the warm-up; each later run is funded from the busiest sender's pace so far.
    coins = PACKAGE_COINS
    busiest_per_s = 0.0
    server_runs: list[ServerRun] = []
    ceiling_runs: list[CeilingRun] = []
    for rep in range(-1, args.repeat):
        warm_up = rep < 0
        seconds = args.warmup if warm_up else args.seconds
        tag = "w" if warm_up else f"r{rep}"
        await asyncio.gather(*(top_up(client, sender, coins) for sender in senders))
        with collector_off():
            if gifters:
                server = await measure_ws(gifters, seconds, tag, args.inflight, meter)
            else:
                server = await measure_server(senders, seconds, tag, meter)
        with collector_off():
            ceiling = await measure_ceiling(raw, args.concurrency, seconds, tag, meter)
        log(tag, server, ceiling)
        busiest_per_s = max(busiest_per_s, server.busiest_sender_gifts / server.seconds)
        coins = math.ceil(busiest_per_s * args.seconds * 1.5) + 100
        if not warm_up:
            server_runs.append(server)
            ceiling_runs.append(ceiling)
    result = PolicyResult(fsync, engine_version, server_runs, ceiling_runs, args.transport, args.servers)
    if not gifters or not args.paced:
        return result
    rate = round(result.server_gifts_per_s * args.paced, 1)
    # A rewrite of the append-only file slows the fsyncs of `always` while it runs: each paced
    # run says how many overlapped it (the ceiling's writes make them more frequent here).
    one_engine = Topology.of(raw).one_connection
    # Each paced run takes rate * seconds / senders gifts from each sender, well below the top-up.
    paced_runs: list[ServerRun] = []
    for rep in range(args.repeat):
        await asyncio.gather(*(top_up(client, sender, coins) for sender in senders))
        before = await aof_rewrites(raw) if one_engine else None
        with collector_off():
            paced = await measure_paced(gifters, rate, args.seconds, f"p{rep}", meter)
        rewrites = ""
        if before is not None:
            done, running = await aof_rewrites(raw)
            paced = dataclasses.replace(paced, aof_rewrites=done - before[0] + running)
            rewrites = f", {paced.aof_rewrites} AOF rewrite(s) during it"
        print(
            f"  [{fsync} p{rep}] paced at {rate:,.0f} gifts/s: acked {paced.gifts_per_s:,.0f}/s "
            f"(p50 {paced.p50_ms:.1f} ms, p99 {paced.p99_ms:.1f} ms{rewrites})",
            flush=True,
        )
        paced_runs.append(paced)
    return dataclasses.replace(result, paced_rate=rate, paced_runs=paced_runs)


def progress(fsync: str) -> Callable[[str, ServerRun, CeilingRun], None]:
    def log(tag: str, server: ServerRun, ceiling: CeilingRun) -> None:
        print(
            f"  [{fsync} {tag}] server {server.gifts_per_s:,.0f} gifts/s "
            f"(p50 {server.p50_ms:.1f} ms, p99 {server.p99_ms:.1f} ms), "
            f"ceiling {ceiling.scripts_per_s:,.0f} scripts/s",
            flush=True,
        )

    return log


# --- report --------------------------------------------------------------------------------


def cores(cpu: dict[str, float]) -> str:
    return "/".join(f"{cpu[name]:.2f}" for name in ("server", "engine", "client"))


def print_table(results: list[PolicyResult], args: argparse.Namespace) -> None:
    print(
        f"\ngift throughput over {args.transport}: {args.repeat} runs of {args.seconds:g} s each (medians), "
        f"{args.servers} server process{'es' if args.servers > 1 else ''}, concurrency {args.concurrency}"
        + (f" x {args.inflight} in flight" if args.transport == "ws" else "")
        + f", ceiling {PIPELINES} x {PIPELINE_DEPTH}-call pipelines"
    )
    header = f"{'fsync':<9}{'what':<9}{'median/s':>10}  {'runs/s':<24}{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}"
    print(f"{header}  cores srv/eng/client  cpu us/op srv/eng")
    for result in results:
        median = result.summary()
        server_runs = " ".join(f"{run.gifts_per_s:,.0f}" for run in result.server_runs)
        ceiling_runs = " ".join(f"{run.scripts_per_s:,.0f}" for run in result.ceiling_runs)
        print(
            f"{result.fsync:<9}{'server':<9}{median['server_gifts_per_s']:>10,.0f}  {server_runs:<24}"
            f"{median['server_p50_ms']:>8.2f}{median['server_p99_ms']:>8.2f}{median['server_errors']:>8}"
            f"  {cores(median['server_cpu_cores']):<20}"
            f"  {median['server_cpu_us_per_gift']:.0f}/{median['engine_cpu_us_per_gift']:.0f}"
        )
        print(
            f"{result.fsync:<9}{'ceiling':<9}{median['ceiling_scripts_per_s']:>10,.0f}  {ceiling_runs:<24}"
            f"{'-':>8}{'-':>8}{'-':>8}  {cores(median['ceiling_cpu_cores']):<20}"
            f"  -/{median['engine_cpu_us_per_script']:.0f}"
        )
        print(f"{result.fsync:<9}{'ratio':<9}{result.ratio:>10.1%}  server/ceiling")
        if result.paced_runs:
            paced_runs = " ".join(f"{run.gifts_per_s:,.0f}" for run in result.paced_runs)
            print(
                f"{result.fsync:<9}{'paced':<9}{median['paced_gifts_per_s']:>10,.0f}  {paced_runs:<24}"
                f"{median['paced_p50_ms']:>8.2f}{median['paced_p99_ms']:>8.2f}{median['paced_errors']:>8}"
                f"  offered {median['paced_offered_per_s']:,.0f}/s = {args.paced:.0%} of the server median"
            )
    print(f"engine {results[0].engine_version}, python {platform.python_version()}, {os.cpu_count()} CPUs")


def write_json(path: Path, results: list[PolicyResult], args: argparse.Namespace) -> None:
    report = {
        **report_head("bench_gift", args),
        "engine_version": results[0].engine_version,
        "ceiling_pipelines": {"pipelines": PIPELINES, "depth": PIPELINE_DEPTH},
        "results": [result.to_dict() for result in results],
    }
    path.write_text(json.dumps(report, indent=2) + "\n")


# --- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_gift",
        description="Gifts/s through the real server against the bare gift_debit script on the same engine.",
    )
    parser.add_argument(
        "--transport",
        choices=["ws", "http"],
        default="ws",
        help="ws: gift frames over the room WebSocket (default); http: POST /v1/rooms/{room}/gifts",
    )
    parser.add_argument("--seconds", type=positive_float, default=5.0, help="length of each run (default 5)")
    parser.add_argument(
        "--inflight", type=positive_int, default=1, help="unanswered gifts per ws sender (default 1)"
    )
    parser.add_argument(
        "--paced",
        type=fraction,
        default=0.5,
        help="ws: also measure the ack latency at this fraction of the median maximum, sent on a "
        "fixed schedule (default 0.5; 0 skips it)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        help=f"concurrent senders (default {WS_SENDERS} for ws, {HTTP_SENDERS} for http)",
    )
    parser.add_argument(
        "--servers",
        type=positive_int,
        default=1,
        help="server processes on the one engine, senders spread over them (default 1)",
    )
    parser.add_argument(
        "--shards",
        type=positive_int,
        default=1,
        help="1: one engine (default); N: a local cluster of N masters (server/cluster.py), the "
        "server on a redis+cluster:// URL",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="with --shards N: replicas per master (default 0)",
    )
    parser.add_argument(
        "--replica-acks",
        type=int,
        default=0,
        help="replicas the server waits for before acknowledging a money write "
        "(GIFTING_REPLICA_ACKS, default 0)",
    )
    parser.add_argument(
        "--rooms",
        type=positive_int,
        default=ROOMS,
        help=f"live rooms the senders are spread over, round-robin (default {ROOMS})",
    )
    parser.add_argument(
        "--fsync",
        choices=[*FSYNC_POLICIES, "both"],
        default="both",
        help="the engine's appendfsync policy (default both: one engine for each)",
    )
    parser.add_argument("--repeat", type=positive_int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument(
        "--warmup", type=positive_float, default=1.0, help="uncounted warm-up seconds (default 1)"
    )
    parser.add_argument(
        "--client-pool",
        choices=["per-sender", "shared"],
        default="per-sender",
        help="per-sender: one httpx client of one connection per sender (default); shared: one "
        "client whose pool holds --concurrency connections (httpcore's pool bookkeeping then "
        "costs the load generator a core on its own)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.replicas < 0 or (args.replicas and args.shards < 2):
        parser.error("--replicas needs a cluster (--shards 2 or more) and cannot be negative")
    if not 0 <= args.replica_acks <= args.replicas:
        parser.error(f"--replica-acks must be between 0 and --replicas ({args.replicas})")
    if args.concurrency is None:
        args.concurrency = WS_SENDERS if args.transport == "ws" else HTTP_SENDERS
    return args


async def bench(args: argparse.Namespace) -> list[PolicyResult]:
    policies = list(FSYNC_POLICIES) if args.fsync == "both" else [args.fsync]
    return [await bench_policy(args, fsync) for fsync in policies]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run_benchmark("bench_gift", bench(args))
    if results is None:
        return 1
    print_table(results, args)
    if args.json is not None:
        write_json(args.json, results, args)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
