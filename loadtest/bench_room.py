"""Live rooms: gift delivery over the room WebSocket, fan-out against a bare broadcaster, idle memory.

Each scenario starts its own embedded engine and a real ``python -m server`` process (demo
mode, through ``loadtest.harness.running_server``, so the per-user gift rate limit is set
out of the way), and measures the server's CPU and RSS from /proc beside the load's own.

storm
    One room (``demo_carol``), ``--storm-viewers`` viewers (2,000) on the JSON subprotocol, and
    ``--storm-rate`` gifts/s (500) for ``--storm-seconds`` (20) sent as ``gift`` frames over
    the WebSocket by ``--storm-gifters`` connections (50 users, each with coins bought
    through the real purchase and sandbox payment). The sends are paced on one schedule, not
    as fast as acks return. It answers "does every viewer see every gift, and how late": for
    every viewer the distinct gift event ids received are compared with the ids the gifters
    got acknowledged (the completeness must be 100 %: the minimum over viewers and the
    number of complete viewers are reported), gift-to-viewer latency is the receive time
    minus the event's ``ts`` (the engine's clock in ms, the same machine clock, so latencies
    are whole-ms-truncated and may read up to 1 ms high) on every ``--sample-every``-th viewer,
    and the ack latency is send to ``gift_ack`` at the gifter. Errors are counted by code.

quiet
    The storm's room at a low gift rate: ``--quiet-viewers`` (2,000) viewers and
    ``--quiet-rate`` gifts/s (25) for ``--quiet-seconds`` (20) from ``--quiet-gifters``
    (10), the rate at which a one-event-per-gift server delivers each gift at once. Target:
    every gift to every viewer, and a p99 gift-to-viewer latency <= 25 ms (a room that has
    sent nothing for half a tick sends its next event at once, so a quiet room's gifts do not
    wait for the next 50 ms tick), with at most two frames per viewer a tick.

fanout
    Frames/s and gift events/s delivered into rooms of ``--fanout-sizes`` viewers (1,000,
    5,000, 10,000), with the server on ``GIFTING_TICK_MS=5`` and ``--fanout-rate`` gifts/s
    (200) so that every tick has a batch to send. The ceiling (``loadtest/bare.py``) is a
    bare ``websockets`` asyncio server in its own process that ``broadcast()``s a frame of
    the same size (a batch frame of the median size seen in the server's first round, byte
    for byte) to the same number of sinks in a tight loop (``broadcast`` then ``await
    asyncio.sleep(0)``): one Python process writing one pre-built frame to every
    connection, nothing else.
    The ratio server/bare is how much of that the hub delivers while it also reads the
    room's stream, refreshes its state and takes gifts. ``broadcast`` has no flow control,
    so when the sinks are slower than the loop it would queue without bound; the loop
    therefore also waits 1 ms while any of 16 probed connections has more than
    ``--bare-inflight`` bytes unsent (kernel send queue + transport buffer), and reports the
    share of its time spent waiting: a high share means the bare figure is the sinks' limit.
    Server and bare rounds alternate (``--fanout-rounds``, medians reported) on the same
    sinks, which stay connected to both throughout (the idle one costs nothing). Target: the
    hub's frames/s >= 90 % of the bare loop's at every size (``targets``), reported beside
    the bare loop's own limits, its waiting share, its cores and the sinks' cores in its
    rounds and in the server's (a round whose bare loop waited on the sinks, or whose sinks
    used most of a core, measured the sinks).

connections
    ``--connections`` (10,000) idle viewers in one room: the server's RSS before and after,
    the memory per connection (RSS delta / N), the connect rate (handshakes
    completed including the ``welcome`` frame, per second, ``--connect-concurrency``
    handshakes in flight per load process) and the server's CPU while they sit idle. The
    connect rate's ceiling is as many handshakes, through the same sinks, into the bare
    handshake server (``loadtest/bare.py``: uvicorn's WebSocket protocol with the server's
    options, no token, limits or room), measured first while the server holds no connection;
    each side's CPU per handshake is beside its rate.

mixed
    The 2,000-viewer room (``--mixed-viewers``) of the storm taking, for ``--mixed-seconds``
    (20), first ``--mixed-gift-rate`` gifts/s (500) alone from ``--mixed-gifters`` (50), then
    the same gifts together with ``--mixed-chat-rate`` chat messages/s (200) and
    ``--mixed-like-rate`` likes/s (5,000, as ``like`` frames of ``--mixed-like-count`` taps,
    5) from ``--mixed-talkers`` other users (500: 0.4 messages/s and 10 likes/s each, within
    the default per-user limits of 1 message/s and 15 likes/s), all three paced on fixed
    schedules over WebSocket frames. The talkers' connections are open in both phases, so
    the server writes to the same sockets in each. For each phase, with its target: every
    viewer's distinct gift and chat event ids against those acknowledged (``gift_ack``,
    ``chat_ack``; 100 %, and none twice), the p99 gift and chat delivery latency on every
    ``--sample-every``-th viewer (<= 250 ms), the room's like total against the likes the
    server accepted (``gifting_likes_accepted_total``; equal), and each viewer's frames
    against the ticks the phase lasted (at most two a tick + 2: a quiet room sends its first
    event at once, and under load one frame a tick). Beside
    them, per tick of the sending window: the server's CPU (ms), the commands the engine ran
    (``INFO commandstats`` deltas, the commands run inside scripts included) and the script
    calls among them, the like flushes and the hub's mean tick work (both from the server's
    metrics), with each figure's ratio mixed / gift-only.

peer
    The highest gift rate a 2,000-viewer room holds (``--peer-viewers``), for this server and
    beside it a one-event-per-gift Node socket.io server (``loadtest/peers/socketio``, installed
    with ``npm ci`` when missing; reported as not run, with the reason, without Node or npm).
    ``--peer-gifters`` connections (20) send gifts on one fixed schedule at each of
    ``--peer-rates`` (25, 50, ... 8,000 gifts/s) for ``--peer-step-seconds`` (5), the two
    servers taking turns at each rate after a ``--peer-warmup`` (2 s) not reported. A rate
    is held when every viewer received every acknowledged gift (counted per viewer) and the
    p99 tap-to-screen latency (the gift sent by the gifter to the event received by a viewer,
    on every ``--sample-every``-th viewer) is at most 250 ms; a rate not held is run again
    (``--peer-attempts``, 2: the machine is shared) and then ends that server's stepping.
    Reported: each server's highest rate held with every lower one held, every step's
    figures, and the target (this server: >= 4,000 gifts/s held) with the ratio of the two.
    The socket.io viewers and gifters (``SioSink``, ``SioGifter``) are raw WebSocket clients
    like the others, speaking Engine.IO v4 / socket.io v5 framing.
reconnect
    A restart under load: ``--reconnect-viewers`` (10,000) viewers in the demo room, spread over
    the server processes of each variant of ``--reconnect-servers`` (1 and 2, sharing one
    engine), while ``--reconnect-rate`` roses/s (200) go in over HTTP from
    ``--reconnect-gifters`` (20). After ``--reconnect-seconds`` / 2 every process is stopped
    with SIGTERM (it closes its sockets with 1012) and started again on its port and engine;
    the gifts go on throughout (those refused while the server is down are not acknowledged),
    for another ``--reconnect-seconds`` / 2 once every viewer is back. The viewers reconnect
    as ``client_demo/js/live.js`` does (``sinks.Resumer``: jittered exponential backoff from
    0.5 s, resuming with ``since`` and ``epoch``). Reported, with targets: the time from the
    stop until every viewer is welcomed again (<= 10 s), the handshakes/s per process in the
    busiest second of the storm (>= 3,000; the mean over the storm's span beside it, which the
    clients' backoff spreads out, and as its ratio the bare handshake server's rate through the
    same sinks, measured once before the variants), and the viewers holding every acknowledged
    gift exactly once (100 %).

The viewers are raw sinks (``loadtest/sinks.py``), not ``websockets`` clients, which would
cost more than the server. A viewer keeps the list of frames it got, so the distinct gift ids
of every viewer are known exactly (viewers with the same frames are grouped). Sinks run in
``--sink-procs`` processes (2) separate from the gifters.

Every scenario's report lists its figures judged against their targets under "targets"
(``loadtest.harness.judged``), each target's number a constant of this module beside the
scenario: the storm's completeness and p99 delivery and ack latency, each room size's fan-out
against the bare loop's, the memory per idle connection and the connect rate of one process,
and each mixed phase's figures above.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from loadtest.bare import SERVER_BUFFER_BYTES, Bare, bare_handshakes
from loadtest.harness import (
    ACK_TIMEOUT_S,
    GIFT_ID,
    ROOM_ID,
    BenchError,
    CpuMeter,
    Sender,
    collector_off,
    cpu_seconds,
    environment,
    expect,
    gather_limited,
    http_client,
    judged,
    new_sender,
    pace,
    percentile,
    positive_float,
    positive_int,
    raise_fd_limit,
    report_head,
    rss_kib,
    run_benchmark,
    running_server,
    top_up,
)
from loadtest.peers import PeerUnavailable, socketio_peer
from loadtest.sinks import (
    SIO_PATH,
    Gifter,
    GiftLedger,
    SinkPool,
    Talker,
    open_gifters,
    open_sio_gifters,
    open_talkers,
    pace_gifts,
    sink_pool,
    ws_path,
)
from server.engine import EmbeddedEngine
from server.settings import Settings

DRAIN_IDLE_S = 5.0
DRAIN_MAX_S = 60.0

# The targets each scenario's report judges its figures against (under "targets").
STORM_P99_TARGET_MS = 250.0
# The storm offers far less than half the gift path's maximum, where its p99 ack target holds.
STORM_ACK_P99_TARGET_MS = 25.0
FANOUT_RATIO_TARGET = 0.90  # of the bare broadcast loop's frames/s
KIB_PER_CONNECTION_TARGET = 20.0
CONNECT_PER_S_TARGET = 3000.0  # handshakes/s of one server process, with the abuse limits on


# --- senders and viewers through the API ---------------------------------------------------


async def funded_senders(client: httpx.AsyncClient, prefix: str, count: int, coins: int) -> list[Sender]:
    """``count`` senders into the demo room, each holding at least ``coins``."""
    senders = [await new_sender(client, f"{prefix}_{i:03d}", client, ROOM_ID) for i in range(count)]
    await gather_limited((top_up(client, sender, coins) for sender in senders), 8)
    return senders


async def viewer_tokens(client: httpx.AsyncClient, prefix: str, first: int, count: int) -> list[str]:
    """``count`` viewer tokens for distinct users, minted by the demo token route."""

    async def mint(i: int) -> str:
        body = {"user_id": f"{prefix}{i:05d}", "role": "viewer"}
        token: str = (await expect(lambda: client.post("/v1/dev/token", json=body), 200))["token"]
        return token

    return await gather_limited((mint(i) for i in range(first, first + count)), 16)


# --- the server under test -----------------------------------------------------------------


@dataclass
class Stack:
    """An engine and a server on it, and the processes whose CPU is reported."""

    base_url: str
    port: int
    pids: dict[str, int | None]
    engine_url: str

    @property
    def server_pid(self) -> int:
        pid = self.pids["server"]
        assert pid is not None
        return pid


@contextlib.asynccontextmanager
async def server_stack(tmp: Path, name: str, **env: str) -> AsyncIterator[Stack]:
    engine = EmbeddedEngine(tmp / f"engine-{name}").start()
    assert engine.process is not None
    try:
        with environment(**env):
            server = running_server(engine.url, tmp / f"server-{name}.log")
            async with server as (base_url, pid):
                port = int(base_url.rsplit(":", 1)[1])
                pids = {"server": pid, "engine": engine.process.pid, "load": None}
                yield Stack(base_url, port, pids, engine.url)
    finally:
        engine.stop()


# --- measuring helpers ---------------------------------------------------------------------


def summarize_cpu(cpu: dict[str, float]) -> dict[str, float]:
    """The meter's cores with the sink processes added up as ``sinks``."""
    out = {name: value for name, value in cpu.items() if not name.startswith("sink")}
    out["sinks"] = round(sum(value for name, value in cpu.items() if name.startswith("sink")), 2)
    return out


def pct(ordered: list[float], q: float) -> float | None:
    return round(percentile(ordered, q), 2) if ordered else None


def progress(message: str) -> None:
    print(f"  {message}", flush=True)


async def room_viewers(
    args: argparse.Namespace, pool: SinkPool, stack: Stack, tokens: list[str], scenario: str
) -> dict[str, Any]:
    """Every token's viewer in the demo room as a recording sink (every ``--sample-every``-th
    timing latencies); what ``SinkPool.connect`` says, or BenchError if any failed."""
    connect = await pool.connect(
        "room",
        stack.port,
        [ws_path(ROOM_ID, token) for token in tokens],
        welcome=True,
        record=True,
        sample_every=args.sample_every,
        concurrency=args.connect_concurrency,
    )
    progress(f"{scenario}: {connect['opened']} viewers connected ({connect['per_s']:.0f}/s)")
    if connect["opened"] != len(tokens):
        raise BenchError(
            f"only {connect['opened']} of {len(tokens)} viewers connected: {connect['failures']}"
        )
    return connect


# --- scenario 1: storm ---------------------------------------------------------------------


async def storm(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    viewers, rate, seconds = args.storm_viewers, args.storm_rate, args.storm_seconds
    env = {"GIFTING_WS_BUFFER_BYTES": str(SERVER_BUFFER_BYTES)}
    async with (
        server_stack(tmp, "storm", **env) as stack,
        sink_pool(args.sink_procs) as pool,
        http_client(stack.base_url, 16) as client,
    ):
        coins = math.ceil(rate * seconds / args.storm_gifters * 1.2) + 10
        senders = await funded_senders(client, "storm_gifter", args.storm_gifters, coins)
        tokens = await viewer_tokens(client, "storm_v", 0, viewers)
        connect = await room_viewers(args, pool, stack, tokens, "storm")
        ledger = GiftLedger()
        gifters = await open_gifters(stack.port, ROOM_ID, senders, ledger)
        await asyncio.sleep(1.0)
        meter = CpuMeter({**stack.pids, **pool.pids})
        await pool.every(op="window", active=True)
        rss_before = rss_kib(stack.server_pid)
        meter.start()
        started = time.perf_counter()
        sent = await pace_gifts(gifters, rate, seconds, "storm")
        sending_s = time.perf_counter() - started
        cpu = summarize_cpu(meter.stop())
        rss_after = rss_kib(stack.server_pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ledger.answered.wait(), ACK_TIMEOUT_S)
        acked = len(ledger.acked_ids)
        drain_s = await wait_delivered(pool, acked * viewers)
        await pool.every(op="window", active=False)
        latencies = (await pool.latencies())["gift"]
        stats = await pool.stats("room")
        replies = await pool.every(op="completeness", group="room", acked=ledger.acked_ids)
        per_viewer = [viewer for reply in replies for viewer in reply["viewers"]]
        for gifter in gifters:
            gifter.close()
    ack_ms = sorted(ledger.ack_ms)
    complete = sum(1 for received, distinct, mine, _ in per_viewer if mine == acked and received == distinct)
    report: dict[str, Any] = {
        "viewers": viewers,
        "gifters": args.storm_gifters,
        "rate_target": rate,
        "seconds": seconds,
        "gifts_sent": sent,
        "sending_s": round(sending_s, 3),
        "gifts_sent_per_s": round(sent / sending_s, 1),
        "gifts_acked": acked,
        "unanswered": len(ledger.sent),
        "errors": dict(ledger.errors),
        "retries": dict(ledger.retries),
        "gifter_closes": dict(ledger.closed),
        "viewers_complete": complete,
        "completeness_min_pct": round(
            min((mine / acked * 100 if acked else 0.0) for _, _, mine, _ in per_viewer), 3
        )
        if per_viewer
        else 0.0,
        "duplicate_events": sum(received - distinct for received, distinct, _, _ in per_viewer),
        "events_not_acked": sum(distinct - mine for _, distinct, mine, _ in per_viewer),
        "viewers_open_at_end": stats["open"],
        "viewer_closes": stats["closed"],
        "frames_per_viewer": round(stats["frames"] / viewers, 1),
        "drain_s": drain_s,
        "latency_sampled_viewers": math.ceil(viewers / args.sample_every),
        "latency_samples": len(latencies),
        "latency_p50_ms": pct(latencies, 50),
        "latency_p99_ms": pct(latencies, 99),
        "latency_max_ms": round(latencies[-1], 2) if latencies else None,
        "ack_p50_ms": pct(ack_ms, 50),
        "ack_p99_ms": pct(ack_ms, 99),
        "cpu_cores": cpu,
        "server_rss_kib": {"before": rss_before, "after": rss_after},
        "connect": connect,
    }
    report["targets"] = storm_targets(report)
    return report


def at_most(value: float | None, bound: float) -> bool | None:
    """Whether ``value`` is within ``bound``; None when there is no value to judge."""
    return None if value is None else value <= bound


def storm_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    complete = report["viewers_complete"] == report["viewers"] and report["completeness_min_pct"] == 100
    return [
        judged("min delivery completeness", report["completeness_min_pct"], "100 %", complete, unit="%"),
        judged(
            "p99 delivery latency",
            report["latency_p99_ms"],
            f"<= {STORM_P99_TARGET_MS:g} ms",
            at_most(report["latency_p99_ms"], STORM_P99_TARGET_MS),
            unit="ms",
        ),
        judged(
            "p99 ack latency",
            report["ack_p99_ms"],
            f"<= {STORM_ACK_P99_TARGET_MS:g} ms",
            at_most(report["ack_p99_ms"], STORM_ACK_P99_TARGET_MS),
            unit="ms",
        ),
    ]


async def wait_delivered(pool: SinkPool, expected: int, group: str = "room") -> float:
    """Wait until the sinks of ``group`` hold ``expected`` gift and chat events, or none arrive
    for a while; how long."""
    started = time.perf_counter()
    last, last_change = -1, started
    while True:
        stats = await pool.stats(group)
        gifts = stats["gifts"] + stats["chats"]
        now = time.perf_counter()
        if gifts >= expected:
            return round(now - started, 3)
        if gifts != last:
            last, last_change = gifts, now
        if now - last_change > DRAIN_IDLE_S or now - started > DRAIN_MAX_S:
            return round(now - started, 3)
        await asyncio.sleep(0.1)


# --- scenario 1b: quiet --------------------------------------------------------------------

QUIET_P99_TARGET_MS = 25.0


async def quiet(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The storm at a low rate, judged against a one-event-per-gift server's latency."""
    storm_args = argparse.Namespace(
        **{
            **vars(args),
            "storm_viewers": args.quiet_viewers,
            "storm_rate": args.quiet_rate,
            "storm_seconds": args.quiet_seconds,
            "storm_gifters": args.quiet_gifters,
        }
    )
    own = tmp / "quiet"
    own.mkdir(exist_ok=True)
    result = await storm(storm_args, own)
    p99 = result["latency_p99_ms"]
    acked = result["gifts_acked"]
    complete = result["viewers_complete"] == result["viewers"] and result["completeness_min_pct"] == 100
    ticks = result["sending_s"] * 1000 / Settings.tick_ms
    frames_bound = 2 * math.ceil(ticks) + FRAME_SLACK_TICKS
    result["targets"] = [
        judged("min gift completeness", result["completeness_min_pct"], "100 %", complete, unit="%"),
        judged(
            "events received twice or never acked",
            result["duplicate_events"] + result["events_not_acked"],
            "0",
            result["duplicate_events"] == 0 and result["events_not_acked"] == 0 and acked > 0,
        ),
        judged(
            "p99 gift delivery",
            p99,
            f"<= {QUIET_P99_TARGET_MS:g} ms",
            p99 is not None and p99 <= QUIET_P99_TARGET_MS,
            round(p99 / QUIET_P99_TARGET_MS, 3) if p99 is not None else None,
            "ms",
        ),
        judged(
            "frames per viewer",
            result["frames_per_viewer"],
            f"<= {frames_bound} (two a tick)",
            result["frames_per_viewer"] <= frames_bound,
        ),
    ]
    return result


# --- scenario 2: fanout --------------------------------------------------------------------


@dataclass
class Window:
    """What the sinks of one group counted over one measurement window."""

    frames_per_s: float
    gifts_per_s: float
    bytes_per_s: float
    cpu_cores: dict[str, float]
    p50_ms: float | None = None
    p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def measure_window(
    pool: SinkPool, group: str, seconds: float, meter: CpuMeter, latency: bool
) -> tuple[Window, float, float]:
    if latency:
        await pool.every(op="window", active=True)
    before = await pool.stats(group)
    meter.start()
    await asyncio.sleep(seconds)
    after = await pool.stats(group)
    cpu = summarize_cpu(meter.stop())
    if latency:
        await pool.every(op="window", active=False)
    elapsed = after["time"] - before["time"]
    window = Window(
        frames_per_s=round((after["frames"] - before["frames"]) / elapsed, 1),
        gifts_per_s=round((after["gifts"] - before["gifts"]) / elapsed, 1),
        bytes_per_s=round((after["bytes"] - before["bytes"]) / elapsed, 1),
        cpu_cores=cpu,
    )
    if latency:
        latencies = (await pool.latencies())["gift"]
        window.p50_ms, window.p99_ms = pct(latencies, 50), pct(latencies, 99)
    window.extra["open"] = after["open"]
    window.extra["closed"] = after["closed"]
    return window, before["time"], after["time"]


async def fanout(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sizes: list[int] = args.fanout_sizes
    env = {"GIFTING_TICK_MS": "5", "GIFTING_WS_BUFFER_BYTES": str(SERVER_BUFFER_BYTES)}
    bare = Bare(args.bare_inflight)
    results: list[dict[str, Any]] = []
    try:
        async with (
            server_stack(tmp, "fanout", **env) as stack,
            sink_pool(args.sink_procs) as pool,
            http_client(stack.base_url, 16) as client,
        ):
            await bare.call()  # ready
            per_window = args.fanout_rate * (args.fanout_seconds + args.warmup + 1)
            coins = math.ceil(per_window * args.fanout_rounds * len(sizes) / args.fanout_gifters * 1.2) + 10
            senders = await funded_senders(client, "fan_gifter", args.fanout_gifters, coins)
            ledger = GiftLedger()
            gifters = await open_gifters(stack.port, ROOM_ID, senders, ledger)
            meter = CpuMeter({**stack.pids, **pool.pids, "bare": bare.process.pid})
            connected = 0
            for size in sizes:
                if size > connected:
                    tokens = await viewer_tokens(client, "fan_v", connected, size - connected)
                    paths = [ws_path(ROOM_ID, token) for token in tokens]
                    outcomes = {}
                    for group, port in (("server", stack.port), ("bare", bare.port)):
                        outcomes[group] = await pool.connect(
                            group,
                            port,
                            paths,
                            welcome=group == "server",
                            record=False,
                            # about 200 latency-sampled viewers in each room size
                            sample_every=max(1, size // 200) if group == "server" else 0,
                            concurrency=args.connect_concurrency,
                            base=connected,
                        )
                    for what, outcome in outcomes.items():
                        if outcome["failures"]:
                            raise BenchError(f"{what} sinks failed to connect: {outcome['failures']}")
                    connected = size
                    await asyncio.sleep(1.0)
                results.append(await fanout_size(args, size, pool, bare, gifters, ledger, meter))
            for gifter in gifters:
                gifter.close()
            errors = dict(ledger.errors)
    finally:
        await bare.close()
    return {"sizes": results, "gift_errors": errors, "targets": fanout_targets(results)}


def fanout_targets(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each room size's frames/s against the bare loop's."""
    return [
        judged(
            f"frames/s delivered, {size['viewers']:,} viewers",
            size["server_frames_per_s"],
            f">= {FANOUT_RATIO_TARGET * 100:g} % of bare loop ({size['bare_frames_per_s']:,.0f})",
            None if size["ratio"] is None else size["ratio"] >= FANOUT_RATIO_TARGET,
            ratio=size["ratio"],
            unit="frames/s",
        )
        for size in sizes
    ]


async def fanout_size(
    args: argparse.Namespace,
    size: int,
    pool: SinkPool,
    bare: Bare,
    gifters: list[Gifter],
    ledger: GiftLedger,
    meter: CpuMeter,
) -> dict[str, Any]:
    server_runs: list[Window] = []
    bare_runs: list[Window] = []
    message: str | None = None
    frame_bytes = 0
    for round_no in range(args.fanout_rounds):
        pacer = asyncio.create_task(pace_gifts(gifters, args.fanout_rate, None, f"f{size}r{round_no}"))
        try:
            await asyncio.sleep(args.warmup)
            window, since, until = await measure_window(pool, "server", args.fanout_seconds, meter, True)
        finally:
            pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pacer
        server_runs.append(window)
        if message is None:
            payloads = (
                await pool.call([{"op": "payloads", "since": since, "until": until}] * len(pool.conns))
            )[0]["payloads"]
            if not payloads:
                raise BenchError(f"no gift batch reached the {size} sinks")
            payloads.sort(key=len)
            median = payloads[len(payloads) // 2]
            message, frame_bytes = median.decode(), len(median)
        await asyncio.sleep(0.5)
        await bare.call(op="start", message=message)
        try:
            await asyncio.sleep(args.warmup)
            window, _, _ = await measure_window(pool, "bare", args.fanout_seconds, meter, False)
        finally:
            loop_stats = await bare.call(op="stop")
        loops = max(1, loop_stats["loops"])
        elapsed = args.warmup + args.fanout_seconds
        window.extra.update(
            loops=loop_stats["loops"],
            wait_share=round(loop_stats["wait_s"] / elapsed, 3),
            connections=loop_stats["connections"],
            loop_ms=round(elapsed / loops * 1000, 3),
        )
        bare_runs.append(window)
        progress(
            f"fanout {size} round {round_no}: server {server_runs[-1].frames_per_s:,.0f} frames/s "
            f"(p50 {server_runs[-1].p50_ms} ms, p99 {server_runs[-1].p99_ms} ms, "
            f"server {server_runs[-1].cpu_cores['server']:.2f} cores, sinks "
            f"{server_runs[-1].cpu_cores['sinks']:.2f}), bare {window.frames_per_s:,.0f} frames/s "
            f"(bare {window.cpu_cores['bare']:.2f} cores, sinks {window.cpu_cores['sinks']:.2f}, "
            f"waiting {window.extra['wait_share']:.0%})"
        )
        await asyncio.sleep(0.5)
    server_fps = statistics.median(run.frames_per_s for run in server_runs)
    bare_fps = statistics.median(run.frames_per_s for run in bare_runs)
    ratio = round(server_fps / bare_fps, 4) if bare_fps else None
    # CPU per delivered frame, which a busy machine disturbs less than the rate.
    server_us = statistics.median(
        run.cpu_cores["server"] / run.frames_per_s * 1e6 for run in server_runs if run.frames_per_s
    )
    bare_us = statistics.median(
        run.cpu_cores["bare"] / run.frames_per_s * 1e6 for run in bare_runs if run.frames_per_s
    )
    return {
        "viewers": size,
        "frame_bytes": frame_bytes,
        "server_frames_per_s": server_fps,
        "server_gift_events_per_s": statistics.median(run.gifts_per_s for run in server_runs),
        "server_p50_ms": statistics.median(run.p50_ms or 0 for run in server_runs),
        "server_p99_ms": statistics.median(run.p99_ms or 0 for run in server_runs),
        "bare_frames_per_s": bare_fps,
        "ratio": ratio,
        "server_cpu_us_per_frame": round(server_us, 2),
        "bare_cpu_us_per_frame": round(bare_us, 2),
        # The bare loop's own limits: its share of time waiting for the sinks to read (high:
        # the round measured the sinks, not the loop), its cores and the sinks' beside it.
        "bare_wait_share": statistics.median(run.extra["wait_share"] for run in bare_runs),
        "bare_cores": statistics.median(run.cpu_cores["bare"] for run in bare_runs),
        "bare_sinks_cores": statistics.median(run.cpu_cores["sinks"] for run in bare_runs),
        "server_cores": statistics.median(run.cpu_cores["server"] for run in server_runs),
        "server_sinks_cores": statistics.median(run.cpu_cores["sinks"] for run in server_runs),
        "server_runs": [vars(run) for run in server_runs],
        "bare_runs": [vars(run) for run in bare_runs],
        "gifts_acked_total": len(ledger.acked_ids),
    }


# --- scenario 3: idle connections ----------------------------------------------------------


async def bare_handshake_rate(
    args: argparse.Namespace, pool: SinkPool, count: int
) -> tuple[dict[str, Any], float]:
    """The connect rate's ceiling: ``count`` handshakes through ``pool``'s sinks into the bare
    handshake server (``loadtest/bare.py``), ``--connect-concurrency`` in flight per load
    process; what ``pool.connect`` reports, and the CPU seconds the bare server used."""
    async with bare_handshakes() as (port, pid):
        cpu_s = cpu_seconds(pid)
        bare = await pool.connect(
            "bare",
            port,
            [f"/bare/{number}" for number in range(count)],
            welcome=True,
            record=False,
            sample_every=0,
            concurrency=args.connect_concurrency,
        )
        cpu_s = cpu_seconds(pid) - cpu_s
        await pool.drop("bare")
    if bare["opened"] != count:
        raise BenchError(f"the bare handshake server took {bare['opened']} of {count}: {bare['failures']}")
    return bare, cpu_s


async def connections(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    count = args.connections
    async with (
        server_stack(tmp, "conns") as stack,
        sink_pool(args.sink_procs) as pool,
        http_client(stack.base_url, 16) as client,
    ):
        minted = time.perf_counter()
        tokens = await viewer_tokens(client, "idle_v", 0, count)
        mint_s = time.perf_counter() - minted
        # The ceiling first, while the server holds no connection.
        bare, bare_cpu_s = await bare_handshake_rate(args, pool, count)
        progress(f"connections: the bare handshake server took {count} at {bare['per_s']:,.0f}/s")
        await asyncio.sleep(2.0)
        before = rss_kib(stack.server_pid)
        server_cpu_s = cpu_seconds(stack.server_pid)
        connect = await pool.connect(
            "idle",
            stack.port,
            [ws_path(ROOM_ID, token) for token in tokens],
            welcome=True,
            record=False,
            sample_every=0,
            concurrency=args.connect_concurrency,
        )
        server_cpu_s = cpu_seconds(stack.server_pid) - server_cpu_s
        progress(f"connections: {connect['opened']} opened at {connect['per_s']:,.0f}/s")
        await asyncio.sleep(3.0)
        meter = CpuMeter(stack.pids)
        meter.start()
        await asyncio.sleep(5.0)
        idle_cpu = meter.stop()
        after = rss_kib(stack.server_pid)
        stats = await pool.stats("idle")
    opened = connect["opened"]
    kib = round((after - before) / opened, 2) if opened else None
    per_s = connect["per_s"] if opened else None
    bare_per_s = bare["per_s"]
    return {
        "connections": count,
        "opened": opened,
        "failures": connect["failures"],
        "open_after_idle": stats["open"],
        "closed": stats["closed"],
        "connect_s": connect["seconds"],
        "connect_per_s": connect["per_s"],
        "connect_cpu_us_per_handshake": cpu_us_each(server_cpu_s, connect["opened"]),
        "bare_handshakes": {
            "per_s": bare_per_s,
            "seconds": bare["seconds"],
            "cpu_us_per_handshake": cpu_us_each(bare_cpu_s, bare["opened"]),
        },
        "server_rss_kib": {"before": before, "after": after},
        "kib_per_connection": kib,
        "idle_cpu_cores": idle_cpu,
        "token_mint_s": round(mint_s, 2),
        "targets": [
            judged(
                "server memory per idle connection",
                kib,
                f"<= {KIB_PER_CONNECTION_TARGET:g} KiB",
                at_most(kib, KIB_PER_CONNECTION_TARGET),
                unit="KiB",
            ),
            judged(
                "connect rate",
                per_s,
                f">= {CONNECT_PER_S_TARGET:,.0f} handshakes/s",
                None if per_s is None else per_s >= CONNECT_PER_S_TARGET,
                ratio=None if per_s is None else round(per_s / bare_per_s, 3),
                unit="handshakes/s",
            ),
        ],
    }


def cpu_us_each(cpu_s: float, handshakes: int) -> int | None:
    """CPU microseconds per handshake of a process that used ``cpu_s`` for ``handshakes``."""
    return round(cpu_s * 1e6 / handshakes) if handshakes else None


# --- scenario 4: mixed storm (gifts, chat and likes) against the gift-only storm -----------

MIXED_P99_TARGET_MS = 250.0
# Each phase's name in the report, and how its figures are labelled among the targets.
MIXED_PHASES = {"gift_only": "gifts only", "mixed": "gifts+chat+likes"}
# A viewer's frames may exceed the ticks counted by this many: the window's two ends each cut a tick.
FRAME_SLACK_TICKS = 2
LIKES_SETTLE_S = 10.0


@dataclass
class Load:
    """The connections of the mixed scenario and what each phase offers."""

    stack: Stack
    pool: SinkPool
    client: httpx.AsyncClient
    gifters: list[Gifter]
    talkers: list[Talker]
    meter: CpuMeter
    tick_ms: int


# Commands a client sends to run a script; the commands the script runs are counted apart.
SCRIPT_COMMANDS = frozenset({"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"})


async def engine_calls(url: str) -> Counter[str]:
    """Commands the engine has run so far by name (``INFO commandstats``: those run by a script
    included), the INFO calls left out."""
    engine = aioredis.Redis.from_url(url)
    try:
        stats: dict[str, Any] = await engine.info("commandstats")
    finally:
        await engine.aclose()
    calls: Counter[str] = Counter()
    for name, value in stats.items():
        command = name.removeprefix("cmdstat_").lower()
        if isinstance(value, dict) and command != "info":
            calls[command] = int(value["calls"])
    return calls


def metric_total(exposition: str, name: str) -> float:
    """The sum of a metric's samples (every label set) in a Prometheus text exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def like_figures(client: httpx.AsyncClient) -> dict[str, float]:
    """The room's like total and the server's like and hub tick counters."""
    room = await expect(lambda: client.get(f"/v1/rooms/{ROOM_ID}"), 200)
    exposition = (await client.get("/metrics")).text
    return {
        "total": room["snapshot"]["likes"],
        "accepted": metric_total(exposition, "gifting_likes_accepted_total"),
        "dropped": metric_total(exposition, "gifting_likes_dropped_total"),
        "flushes": metric_total(exposition, "gifting_like_flushes_total"),
        "ticks": metric_total(exposition, "gifting_hub_tick_seconds_count"),
        "tick_seconds": metric_total(exposition, "gifting_hub_tick_seconds_sum"),
    }


async def settled_like_total(client: httpx.AsyncClient, expected: float) -> float:
    """The room's like total once it reaches ``expected`` or stops moving for a while."""
    started = time.perf_counter()
    last, last_change = -1.0, started
    while True:
        total = float((await like_figures(client))["total"])
        now = time.perf_counter()
        if total >= expected:
            return total
        if total != last:
            last, last_change = total, now
        if now - last_change > DRAIN_IDLE_S or now - started > LIKES_SETTLE_S:
            return total
        await asyncio.sleep(0.1)


async def mixed_phase(args: argparse.Namespace, load: Load, name: str, talk: bool) -> dict[str, Any]:
    """One phase of ``--mixed-seconds``: gifts, and with ``talk`` chat and likes at once."""
    viewers, seconds = args.mixed_viewers, args.mixed_seconds
    gift_ledger, chat_ledger = GiftLedger(), GiftLedger()
    for gifter in load.gifters:
        gifter.ledger = gift_ledger
    for talker in load.talkers:
        talker.ledger = chat_ledger
    pool, talkers = load.pool, load.talkers
    since = min(reply["time"] for reply in await pool.every(op="forget", group="room"))
    base = await pool.stats("room")
    figures_before = await like_figures(load.client)
    await pool.every(op="window", active=True)
    calls_before = await engine_calls(load.stack.engine_url)
    load.meter.start()
    started = time.perf_counter()
    sends = [pace_gifts(load.gifters, args.mixed_gift_rate, seconds, name)]
    if talk:
        like_count = args.mixed_like_count
        sends.append(pace(args.mixed_chat_rate, seconds, lambda n: talkers[n % len(talkers)].chat(name)))
        sends.append(
            pace(
                args.mixed_like_rate / like_count,
                seconds,
                lambda n: talkers[n % len(talkers)].like(like_count),
            )
        )
    likes_sent_before = sum(talker.likes_sent for talker in talkers)
    sent = await asyncio.gather(*sends)
    sending_s = time.perf_counter() - started
    cpu = summarize_cpu(load.meter.stop())
    calls = await engine_calls(load.stack.engine_url)
    calls.subtract(calls_before)
    figures_sent = await like_figures(load.client)
    likes_sent = sum(talker.likes_sent for talker in talkers) - likes_sent_before
    for ledger in (gift_ledger, chat_ledger):
        if ledger.sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ledger.answered.wait(), ACK_TIMEOUT_S)
    # What was answered by now is what the phase is judged on: an ack arriving later would
    # not be matched by the deliveries waited for.
    gift_ids, chat_ids = list(gift_ledger.acked_ids), list(chat_ledger.acked_ids)
    unanswered = len(gift_ledger.sent) + len(chat_ledger.sent)
    gifts_acked, chats_acked = len(gift_ids), len(chat_ids)
    delivered_before = base["gifts"] + base["chats"]
    drain_s = await wait_delivered(pool, delivered_before + (gifts_acked + chats_acked) * viewers)
    await pool.every(op="window", active=False)
    latencies = await pool.latencies()
    stats = await pool.stats("room")
    acked = gift_ids + chat_ids
    replies = await pool.every(op="completeness", group="room", acked=acked)
    per_viewer = [viewer for reply in replies for viewer in reply["viewers"]]
    by_kind = {}
    for kind, ids in (("gift", gift_ids), ("chat", chat_ids)):
        kind_replies = await pool.every(op="completeness", group="room", acked=ids)
        mine = [viewer[2] for reply in kind_replies for viewer in reply["viewers"]]
        by_kind[kind] = {
            "acked": len(ids),
            "viewers_complete": sum(1 for count in mine if count == len(ids)),
            "completeness_min_pct": round(min(count / len(ids) * 100 for count in mine), 3)
            if ids and mine
            else (100.0 if mine else 0.0),
        }
    window_s = max(reply["time"] for reply in replies) - since
    ticks = window_s * 1000 / load.tick_ms
    frames = [viewer[3] for viewer in per_viewer]
    likes_after = await like_figures(load.client)
    accepted = likes_after["accepted"] - figures_before["accepted"]
    like_total = await settled_like_total(load.client, figures_before["total"] + accepted)
    ticks_sending = sending_s * 1000 / load.tick_ms
    all_calls = sum(calls.values())
    script_calls = sum(count for command, count in calls.items() if command in SCRIPT_COMMANDS)
    hub_ticks = figures_sent["ticks"] - figures_before["ticks"]
    hub_tick_s = figures_sent["tick_seconds"] - figures_before["tick_seconds"]
    gift_p, chat_p = latencies["gift"], latencies["chat"]
    return {
        "gifts_sent": sent[0],
        "chats_sent": sent[1] if talk else 0,
        "like_frames_sent": sent[2] if talk else 0,
        "likes_sent": likes_sent,
        "sending_s": round(sending_s, 3),
        "gifts_acked": gifts_acked,
        "chats_acked": chats_acked,
        "unanswered": unanswered,
        "gift_errors": dict(gift_ledger.errors),
        "chat_errors": dict(chat_ledger.errors),
        "gift_retries": dict(gift_ledger.retries),
        "chat_retries": dict(chat_ledger.retries),
        "sender_closes": dict(gift_ledger.closed + chat_ledger.closed),
        "viewers_complete": sum(
            1 for received, distinct, mine, _ in per_viewer if mine == len(acked) and received == distinct
        ),
        "by_kind": by_kind,
        "duplicate_events": sum(received - distinct for received, distinct, _, _ in per_viewer),
        "events_not_acked": sum(distinct - mine for _, distinct, mine, _ in per_viewer),
        "viewers_open_at_end": stats["open"],
        "viewer_closes": stats["closed"],
        "drain_s": drain_s,
        "window_s": round(window_s, 3),
        "ticks_in_window": round(ticks, 1),
        "frames_per_viewer_max": max(frames) if frames else 0,
        "frames_per_viewer_median": statistics.median(frames) if frames else 0,
        "gift_latency_samples": len(gift_p),
        "gift_p50_ms": pct(gift_p, 50),
        "gift_p99_ms": pct(gift_p, 99),
        "gift_max_ms": round(gift_p[-1], 2) if gift_p else None,
        "chat_latency_samples": len(chat_p),
        "chat_p50_ms": pct(chat_p, 50),
        "chat_p99_ms": pct(chat_p, 99),
        "chat_max_ms": round(chat_p[-1], 2) if chat_p else None,
        "likes_accepted": accepted,
        "likes_dropped": likes_after["dropped"] - figures_before["dropped"],
        "like_total_before": figures_before["total"],
        "like_total_after": like_total,
        "cpu_cores": cpu,
        "server_cpu_ms_per_tick": round(cpu["server"] * load.tick_ms, 3),
        "engine_cpu_ms_per_tick": round(cpu["engine"] * load.tick_ms, 3),
        "engine_calls": all_calls,
        "engine_calls_per_tick": round(all_calls / ticks_sending, 2),
        "engine_script_calls_per_tick": round(script_calls / ticks_sending, 2),
        "engine_calls_by_command": dict(calls.most_common(12)),
        "like_flushes_per_tick": round(
            (figures_sent["flushes"] - figures_before["flushes"]) / ticks_sending, 2
        ),
        "hub_ticks": hub_ticks,
        # Per tick the hub actually ran: ticks stretch past --tick-ms when the server is short of CPU.
        "server_cpu_ms_per_hub_tick": round(cpu["server"] * sending_s * 1000 / hub_ticks, 3)
        if hub_ticks
        else None,
        "engine_calls_per_hub_tick": round(all_calls / hub_ticks, 2) if hub_ticks else None,
        "hub_tick_work_mean_ms": round(hub_tick_s / hub_ticks * 1000, 3) if hub_ticks else None,
    }


def mixed_targets(phase: dict[str, Any], viewers: int, label: str) -> list[dict[str, Any]]:
    """The targets of one phase (each figure begins with ``label``), each with whether it was met."""
    targets = []
    for kind in ("gift", "chat"):
        figures = phase["by_kind"][kind]
        if not figures["acked"]:
            continue
        complete = figures["viewers_complete"] == viewers and figures["completeness_min_pct"] == 100
        targets.append(
            judged(
                f"{label}: min {kind} completeness",
                figures["completeness_min_pct"],
                "100 %",
                complete,
                unit="%",
            )
        )
    exactly_once = phase["duplicate_events"] == 0 and phase["events_not_acked"] == 0
    targets.append(
        judged(
            f"{label}: events received twice or never acked",
            phase["duplicate_events"] + phase["events_not_acked"],
            "0",
            exactly_once,
        )
    )
    for kind in ("gift", "chat"):
        p99 = phase[f"{kind}_p99_ms"]
        if p99 is not None:
            targets.append(
                judged(
                    f"{label}: p99 {kind} delivery",
                    p99,
                    f"<= {MIXED_P99_TARGET_MS:g} ms",
                    p99 <= MIXED_P99_TARGET_MS,
                    unit="ms",
                )
            )
    if phase["likes_sent"]:
        added = phase["like_total_after"] - phase["like_total_before"]
        targets.append(
            judged(
                f"{label}: like total added - likes accepted",
                added - phase["likes_accepted"],
                "0",
                added == phase["likes_accepted"],
            )
        )
    # A quiet room sends its first event at once: at most two frames a tick.
    bound = 2 * math.floor(phase["ticks_in_window"]) + FRAME_SLACK_TICKS
    targets.append(
        judged(
            f"{label}: max frames per viewer",
            phase["frames_per_viewer_max"],
            f"<= {bound} (two a tick + {FRAME_SLACK_TICKS})",
            phase["frames_per_viewer_max"] <= bound,
        )
    )
    return targets


async def mixed(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    viewers, seconds = args.mixed_viewers, args.mixed_seconds
    tick_ms = Settings.tick_ms
    env = {"GIFTING_WS_BUFFER_BYTES": str(SERVER_BUFFER_BYTES), "GIFTING_TICK_MS": str(tick_ms)}
    async with (
        server_stack(tmp, "mixed", **env) as stack,
        sink_pool(args.sink_procs) as pool,
        http_client(stack.base_url, 16) as client,
    ):
        # Both phases send gifts at the same rate.
        coins = math.ceil(2 * args.mixed_gift_rate * seconds / args.mixed_gifters * 1.2) + 10
        senders = await funded_senders(client, "mixed_gifter", args.mixed_gifters, coins)
        talker_tokens = await viewer_tokens(client, "mixed_t", 0, args.mixed_talkers)
        tokens = await viewer_tokens(client, "mixed_v", 0, viewers)
        connect = await room_viewers(args, pool, stack, tokens, "mixed")
        gifters = await open_gifters(stack.port, ROOM_ID, senders, GiftLedger())
        talkers = await open_talkers(stack.port, ROOM_ID, talker_tokens, GiftLedger())
        await asyncio.sleep(1.0)
        load = Load(stack, pool, client, gifters, talkers, CpuMeter({**stack.pids, **pool.pids}), tick_ms)
        phases: dict[str, dict[str, Any]] = {}
        for name, talk in (("gift_only", False), ("mixed", True)):
            phases[name] = await mixed_phase(args, load, name, talk)
            phase = phases[name]
            progress(
                f"{name}: {phase['gifts_acked']} gifts, {phase['chats_acked']} chats acked, "
                f"{phase['likes_accepted']:.0f} likes accepted; p99 gift {phase['gift_p99_ms']} ms, "
                f"chat {phase['chat_p99_ms']} ms; server {phase['cpu_cores']['server']:.2f} cores"
            )
            await asyncio.sleep(1.0)
        for sender in (*gifters, *talkers):
            sender.close()
    gift_only, storm_phase = phases["gift_only"], phases["mixed"]

    def ratio(key: str) -> float | None:
        value, base = storm_phase[key], gift_only[key]
        return round(value / base, 3) if value is not None and base else None

    return {
        "viewers": viewers,
        "seconds": seconds,
        "tick_ms": tick_ms,
        "gifters": args.mixed_gifters,
        "talkers": args.mixed_talkers,
        "gift_rate": args.mixed_gift_rate,
        "chat_rate": args.mixed_chat_rate,
        "like_rate": args.mixed_like_rate,
        "like_count": args.mixed_like_count,
        "latency_sampled_viewers": math.ceil(viewers / args.sample_every),
        "connect": connect,
        "gift_only": gift_only,
        "mixed": storm_phase,
        "targets": [
            *mixed_targets(gift_only, viewers, MIXED_PHASES["gift_only"]),
            *mixed_targets(storm_phase, viewers, MIXED_PHASES["mixed"]),
        ],
        "ratios": {
            key: ratio(key)
            for key in (
                "server_cpu_ms_per_tick",
                "engine_cpu_ms_per_tick",
                "engine_calls_per_tick",
                "engine_script_calls_per_tick",
                "server_cpu_ms_per_hub_tick",
                "engine_calls_per_hub_tick",
                "like_flushes_per_tick",
                "hub_tick_work_mean_ms",
                "gift_p50_ms",
                "gift_p99_ms",
            )
        },
    }


# --- scenario 5: the highest gift rate held, beside a socket.io peer -----------------------

PEER_P99_TARGET_MS = 250.0
PEER_TARGET_RATE = 4000.0
PEER_TARGET_VIEWERS = 2000


@dataclass
class TapLedger(GiftLedger):
    """A gift ledger that also keeps, per acknowledged event id, when its gift was sent (epoch
    seconds), for the tap-to-screen latency."""

    sent_at: dict[str, float] = field(default_factory=dict)
    epoch_offset: float = field(default_factory=lambda: time.time() - time.perf_counter())

    def ack(self, key: str, event_id: str) -> None:
        started = self.sent.get(key)
        if started is not None:
            self.sent_at[event_id] = started + self.epoch_offset
        super().ack(key, event_id)


@dataclass
class Target:
    """One server of the step-up, its connections and its steps so far."""

    name: str
    group: str
    gifters: list[Gifter]
    meter: CpuMeter
    steps: list[dict[str, Any]] = field(default_factory=list)
    stepping: bool = True

    @property
    def held(self) -> float:
        """The highest rate held with every lower rate held too (0: none); a rate is held when
        one of its attempts was."""
        held = {step["rate"] for step in self.steps if step["held"]}
        rate = 0.0
        for step in self.steps:
            if step["rate"] not in held:
                break
            rate = step["rate"]
        return rate


async def peer_viewers(
    args: argparse.Namespace, pool: SinkPool, group: str, port: int, paths: list[str], sio_room: str | None
) -> dict[str, Any]:
    """One counting sink per path as ``group`` (every ``--sample-every``-th timing latencies);
    what ``SinkPool.connect`` says, or BenchError if any failed."""
    connect = await pool.connect(
        group,
        port,
        paths,
        welcome=True,
        record=False,
        sample_every=args.sample_every,
        concurrency=args.connect_concurrency,
        sio_room=sio_room,
    )
    progress(f"peer: {connect['opened']} {group} viewers connected ({connect['per_s']:.0f}/s)")
    if connect["opened"] != len(paths):
        raise BenchError(
            f"only {connect['opened']} of {len(paths)} {group} viewers connected: {connect['failures']}"
        )
    return connect


async def gift_counts(pool: SinkPool, group: str) -> list[int]:
    return [count for reply in await pool.every(op="gift_counts", group=group) for count in reply["counts"]]


async def peer_step(
    args: argparse.Namespace, pool: SinkPool, target: Target, rate: float, run: str, seconds: float
) -> dict[str, Any]:
    """``rate`` gifts/s for ``seconds`` into ``target``'s room: what every viewer received and
    the tap-to-screen latency (gift sent to event received) at the sampled ones."""
    viewers = args.peer_viewers
    ledger = TapLedger()
    for gifter in target.gifters:
        gifter.ledger = ledger
    before = await gift_counts(pool, target.group)
    base = await pool.stats(target.group)
    await pool.every(op="window", active=True)
    target.meter.start()
    started = time.perf_counter()
    sent = await pace_gifts(target.gifters, rate, seconds, run)
    sending_s = time.perf_counter() - started
    cpu = summarize_cpu(target.meter.stop())
    if ledger.sent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ledger.answered.wait(), ACK_TIMEOUT_S)
    acked = len(ledger.acked_ids)
    drain_s = await wait_delivered(pool, base["gifts"] + acked * viewers, target.group)
    await pool.every(op="window", active=False)
    replies = await pool.every(op="tap_latencies", sent=ledger.sent_at)
    tap = array_ms(replies)
    unknown = sum(reply["unknown"] for reply in replies)
    received = [after - was for after, was in zip(await gift_counts(pool, target.group), before, strict=True)]
    ack_ms = sorted(ledger.ack_ms)
    complete = sum(1 for count in received if count == acked)
    p99 = pct(tap, 99)
    held = (
        acked == sent
        and not ledger.errors
        and complete == viewers
        and p99 is not None
        and p99 <= PEER_P99_TARGET_MS
    )
    return {
        "rate": rate,
        "gifts_sent": sent,
        "gifts_sent_per_s": round(sent / sending_s, 1),
        "gifts_acked": acked,
        "unanswered": len(ledger.sent),
        "errors": dict(ledger.errors),
        "viewers_complete": complete,
        "delivered_min_pct": round(min(received) / acked * 100, 3) if acked and received else 0.0,
        "events_over": sum(max(0, count - acked) for count in received),
        "drain_s": drain_s,
        "events_per_s": round(acked * viewers / (sending_s + drain_s), 1),
        "tap_samples": len(tap),
        "tap_unmatched": unknown,
        "tap_p50_ms": pct(tap, 50),
        "tap_p99_ms": p99,
        "tap_max_ms": round(tap[-1], 2) if tap else None,
        "ack_p50_ms": pct(ack_ms, 50),
        "ack_p99_ms": pct(ack_ms, 99),
        "cpu_cores": cpu,
        "held": held,
    }


def array_ms(replies: list[dict[str, Any]]) -> list[float]:
    values = array.array("d")
    for reply in replies:
        values.frombytes(reply["ms"])
    return sorted(values)


async def peer(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    viewers, rates, seconds = args.peer_viewers, args.peer_rates, args.peer_step_seconds
    env = {"GIFTING_WS_BUFFER_BYTES": str(SERVER_BUFFER_BYTES)}
    not_run: str | None = None
    async with contextlib.AsyncExitStack() as stack_of:
        stack = await stack_of.enter_async_context(server_stack(tmp, "peer", **env))
        pool = await stack_of.enter_async_context(sink_pool(args.sink_procs))
        client = await stack_of.enter_async_context(http_client(stack.base_url, 16))
        gifts = rates[0] * args.peer_warmup + sum(rates) * seconds * args.peer_attempts
        coins = math.ceil(gifts / args.peer_gifters * 1.2) + 10
        senders = await funded_senders(client, "peer_gifter", args.peer_gifters, coins)
        tokens = await viewer_tokens(client, "peer_v", 0, viewers)
        paths = [ws_path(ROOM_ID, token) for token in tokens]
        connect = {"server": await peer_viewers(args, pool, "server", stack.port, paths, None)}
        gifters: list[Gifter] = await open_gifters(stack.port, ROOM_ID, senders, GiftLedger())
        targets = [Target("server", "server", gifters, CpuMeter({**stack.pids, **pool.pids}))]
        try:
            node = await stack_of.enter_async_context(socketio_peer(tmp / "peer-socketio.log"))
        except PeerUnavailable as exc:
            not_run = str(exc)
            progress(f"peer: the socket.io peer is not run: {not_run}")
        else:
            connect["socketio"] = await peer_viewers(
                args, pool, "socketio", node.port, [SIO_PATH] * viewers, ROOM_ID
            )
            tags = [f"peer_gifter_{i:03d}" for i in range(args.peer_gifters)]
            sio_gifters = await open_sio_gifters(node.port, ROOM_ID, tags, GiftLedger())
            pids = {"peer": node.pid, **pool.pids, "load": None}
            targets.append(Target("socketio", "socketio", list(sio_gifters), CpuMeter(pids)))
        await asyncio.sleep(1.0)
        for target in targets:
            # Not reported: the first gifts of a connection pay for what is done once.
            await peer_step(args, pool, target, rates[0], f"{target.name}w", args.peer_warmup)
        for number, rate in enumerate(rates):
            # The targets take turns at each rate, so that both meet the same machine.
            for attempt in range(args.peer_attempts):
                for target in targets:
                    if not target.stepping or target.held == rate:
                        continue
                    run = f"{target.name}{number}a{attempt}"
                    step = await peer_step(args, pool, target, rate, run, seconds)
                    step["attempt"] = attempt + 1
                    target.steps.append(step)
                    progress(
                        f"peer: {target.name} {rate:g} gifts/s (attempt {attempt + 1}): sent "
                        f"{step['gifts_sent_per_s']:,.0f}/s, {step['viewers_complete']}/{viewers} viewers "
                        f"complete, tap-to-screen p99 {step['tap_p99_ms']} ms, drained {step['drain_s']} s: "
                        f"{'held' if step['held'] else 'NOT held'}"
                    )
                    await asyncio.sleep(0.5)
            for target in targets:
                target.stepping = target.stepping and target.held == rate
        for target in targets:
            for gifter in target.gifters:
                gifter.close()
    ours = targets[0]
    theirs = targets[1] if len(targets) > 1 else None
    ratio = round(ours.held / theirs.held, 2) if theirs is not None and theirs.held else None
    judgeable = viewers >= PEER_TARGET_VIEWERS and max(rates) >= PEER_TARGET_RATE
    held_target = (
        f">= {PEER_TARGET_RATE:g} gifts/s (100 % delivered, p99 tap-to-screen <= {PEER_P99_TARGET_MS:g} ms)"
    )
    return {
        "viewers": viewers,
        "gifters": args.peer_gifters,
        "rates": rates,
        "step_seconds": seconds,
        "attempts": args.peer_attempts,
        "latency_sampled_viewers": math.ceil(viewers / args.sample_every),
        "connect": connect,
        "peer_not_run": not_run,
        "held": {target.name: target.held for target in targets},
        "ratio": ratio,
        "steps": {target.name: target.steps for target in targets},
        "targets": [
            judged(
                f"gifts/s held at {viewers:,} viewers",
                ours.held,
                held_target,
                ours.held >= PEER_TARGET_RATE if judgeable else None,
                ratio,
                "gifts/s",
            ),
            judged(
                f"socket.io peer: gifts/s held at {viewers:,} viewers",
                theirs.held if theirs is not None else None,
                "beside the server" if theirs is not None else f"not run: {not_run}",
                None,
                None,
                "gifts/s",
            ),
        ],
    }


# --- report --------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    for variant in report.get("reconnect", {}).get("variants", []):
        v = variant
        print(
            f"\nreconnect: {v['viewers']:,} viewers on {v['servers']} process(es), "
            f"{v['gift_rate']:g} gifts/s; first back {v['first_back_s']} s after the stop, "
            f"all back {v['all_back_after_stop_s']} s after it "
            f"({v['all_back_after_first_s']} s after the first), {v['back']:,} back"
        )
        print(
            f"  handshakes/s per process: mean {v['handshakes_per_s_per_process']}, busiest second "
            f"{v['handshakes_peak_1s_per_process']}; attempts {v['reconnect_attempts']:,}, resumed "
            f"{v['resumed']:,}; complete {v['viewers_complete']:,} ({v['completeness_pct']} %), "
            f"duplicates {v['duplicate_events']}, gifts acked {v['gifts_acked']:,} "
            f"(failed {v['gift_failures']})"
        )
    storm_result = report.get("storm")
    if storm_result:
        s = storm_result
        print(
            f"\nstorm: {s['viewers']:,} viewers, {s['rate_target']} gifts/s for {s['seconds']:g} s "
            f"by {s['gifters']} gifters over the WebSocket"
        )
        print(
            f"  gifts sent {s['gifts_sent']:,} ({s['gifts_sent_per_s']:,.0f}/s), acked {s['gifts_acked']:,}, "
            f"unanswered {s['unanswered']}, errors {s['errors'] or 'none'}"
        )
        print(
            f"  completeness: {s['viewers_complete']:,}/{s['viewers']:,} viewers complete, "
            f"min {s['completeness_min_pct']:.3f} %, duplicates {s['duplicate_events']}, "
            f"viewer closes {s['viewer_closes'] or 'none'}, drained {s['drain_s']} s after the last send"
        )
        print(
            f"  gift->viewer latency ({s['latency_sampled_viewers']} viewers, {s['latency_samples']:,} "
            f"samples): p50 {s['latency_p50_ms']} ms, p99 {s['latency_p99_ms']} ms, max "
            f"{s['latency_max_ms']} ms; ack p50 {s['ack_p50_ms']} ms, p99 {s['ack_p99_ms']} ms"
        )
        cpu = s["cpu_cores"]
        print(
            f"  cores: server {cpu['server']:.2f}, engine {cpu['engine']:.2f}, sinks {cpu['sinks']:.2f}, "
            f"gifters {cpu['load']:.2f}; server RSS {s['server_rss_kib']['after'] / 1024:.0f} MiB"
        )
    quiet_result = report.get("quiet")
    if quiet_result:
        q = quiet_result
        print(
            f"\nquiet: {q['viewers']:,} viewers, {q['rate_target']} gifts/s for {q['seconds']:g} s: "
            f"{q['viewers_complete']:,} viewers complete, gift->viewer p50 {q['latency_p50_ms']} ms, "
            f"p99 {q['latency_p99_ms']} ms; {q['frames_per_viewer']} frames per viewer; "
            f"server {q['cpu_cores']['server']:.2f} cores"
        )
    fanout_result = report.get("fanout")
    if fanout_result:
        print("\nfanout (GIFTING_TICK_MS=5, medians of rounds):")
        print(
            f"  {'viewers':>8} {'frame B':>8} {'server f/s':>11} {'gifts/s':>10} {'p50 ms':>7} {'p99 ms':>7}"
            f" {'bare f/s':>10} {'ratio':>7}  cores srv/sinks | bare/sinks, bare waiting;"
            " cpu us/frame srv/bare"
        )
        for row in fanout_result["sizes"]:
            srv = row["server_runs"][len(row["server_runs"]) // 2]["cpu_cores"]
            bare = row["bare_runs"][len(row["bare_runs"]) // 2]
            print(
                f"  {row['viewers']:>8,} {row['frame_bytes']:>8,} {row['server_frames_per_s']:>11,.0f}"
                f" {row['server_gift_events_per_s']:>10,.0f}"
                f" {row['server_p50_ms']:>7} {row['server_p99_ms']:>7}"
                f" {row['bare_frames_per_s']:>10,.0f} {row['ratio']:>7.1%}"
                f"  {srv['server']:.2f}/{srv['sinks']:.2f}"
                f" | {bare['cpu_cores']['bare']:.2f}/{bare['cpu_cores']['sinks']:.2f},"
                f" {bare['extra']['wait_share']:.0%};"
                f" {row['server_cpu_us_per_frame']}/{row['bare_cpu_us_per_frame']}"
            )
        for target in fanout_result["targets"]:
            met = "met" if target["met"] else "NOT MET"
            print(f"  {target['figure']} = {target['value']:,.0f}, {target['ratio']:.1%} of bare: {met}")
    conns = report.get("connections")
    if conns:
        rss = conns["server_rss_kib"]
        bare_hs = conns["bare_handshakes"]
        print(
            f"\nconnections: {conns['opened']:,}/{conns['connections']:,} idle viewers, "
            f"{conns['connect_per_s']:,.0f} handshakes/s ({conns['connect_cpu_us_per_handshake']} us of "
            f"server CPU each; bare handshake server {bare_hs['per_s']:,.0f}/s, "
            f"{bare_hs['cpu_us_per_handshake']} us each); server RSS {rss['before'] / 1024:.1f} -> "
            f"{rss['after'] / 1024:.1f} MiB = {conns['kib_per_connection']} KiB per connection; "
            f"idle server {conns['idle_cpu_cores']['server']:.2f} cores; "
            f"open after idling {conns['open_after_idle']:,}"
        )
    mixed_result = report.get("mixed")
    if mixed_result:
        print_mixed(mixed_result)
    peer_result = report.get("peer")
    if peer_result:
        print_peer(peer_result)
    for name in report["scenario_seconds"]:
        print(f"\n{name}, judged:")
        print_targets(report[name]["targets"])
    print("scenario wall times (s):", report["scenario_seconds"])


def print_mixed(m: dict[str, Any]) -> None:
    print(
        f"\nmixed: {m['viewers']:,} viewers, {m['seconds']:g} s of {m['gift_rate']:g} gifts/s alone, "
        f"then with {m['chat_rate']:g} chat messages/s and {m['like_rate']:g} likes/s "
        f"(frames of {m['like_count']}) from {m['talkers']} users"
    )
    print(
        f"  {'':<10}{'gifts':>7}{'chats':>7}{'likes':>8}{'gift p50/p99':>16}{'chat p50/p99':>16}"
        f"{'frames/viewer':>15}{'ticks':>7}{'srv ms/tick':>12}{'calls/tick':>11}{'scripts/tick':>13}"
        f"{'tick work ms':>13}"
    )
    for name in ("gift_only", "mixed"):
        ph = m[name]
        gift = f"{ph['gift_p50_ms']}/{ph['gift_p99_ms']}"
        chat = f"{ph['chat_p50_ms']}/{ph['chat_p99_ms']}"
        print(
            f"  {name:<10}{ph['gifts_acked']:>7,}{ph['chats_acked']:>7,}{ph['likes_accepted']:>8,.0f}"
            f"{gift:>16}{chat:>16}{ph['frames_per_viewer_max']:>15}{ph['ticks_in_window']:>7}"
            f"{ph['server_cpu_ms_per_tick']:>12}{ph['engine_calls_per_tick']:>11}"
            f"{ph['engine_script_calls_per_tick']:>13}{ph['hub_tick_work_mean_ms']!s:>13}"
        )
    print(f"  mixed / gift-only: {m['ratios']}")


def print_targets(targets: list[dict[str, Any]]) -> None:
    """Each judged figure of a scenario on a line of its own."""
    for target in targets:
        met = {True: "met", False: "NOT MET", None: "not judged"}[target["met"]]
        value = f"{target['value']} {target['unit']}".rstrip()
        print(f"  {target['figure']} = {value} (target {target['target']}): {met}")


def print_peer(p: dict[str, Any]) -> None:
    print(
        f"\npeer: {p['viewers']:,} viewers, {p['gifters']} gifters, {p['step_seconds']:g} s per step; "
        f"held = 100 % delivered and p99 tap-to-screen <= {PEER_P99_TARGET_MS:g} ms"
    )
    if p["peer_not_run"]:
        print(f"  socket.io peer NOT RUN: {p['peer_not_run']}")
    print(
        f"  {'server':<9}{'gifts/s':>8}{'sent/s':>9}{'acked':>8}{'complete':>10}{'tap p50/p99 ms':>17}"
        f"{'ack p99':>9}{'drain s':>8}{'events/s':>11}{'cores':>7}  held"
    )
    for name, steps in p["steps"].items():
        for st in steps:
            cores = st["cpu_cores"].get("server", st["cpu_cores"].get("peer", 0.0))
            tap = f"{st['tap_p50_ms']}/{st['tap_p99_ms']}"
            print(
                f"  {name:<9}{st['rate']:>8g}{st['gifts_sent_per_s']:>9,.0f}{st['gifts_acked']:>8,}"
                f"{st['viewers_complete']:>10,}{tap:>17}{st['ack_p99_ms']!s:>9}{st['drain_s']:>8}"
                f"{st['events_per_s']:>11,.0f}{cores:>7.2f}  {'yes' if st['held'] else 'NO'}"
            )
    print(f"  highest rate held: {p['held']}; server / socket.io: {p['ratio']}")


# --- command line --------------------------------------------------------------------------


# --- scenario 5: a reconnect storm --------------------------------------------------------

RECONNECT_BACK_TARGET_S = 10.0
RECONNECT_HANDSHAKES_TARGET = 3000.0
BACK_MAX_S = 180.0
GIFTS_IN_FLIGHT = 64


async def gift_flow(
    senders: list[Sender], rate: float, run: str, acked: set[str], failed: Counter[str]
) -> None:
    """Roses over HTTP at ``rate`` a second until cancelled, each sender in turn; an answer
    lost to the restart is counted as failed (only acknowledged gifts must reach the viewers)."""

    async def send(number: int) -> None:
        sender = senders[number % len(senders)]
        body = {"gift_id": GIFT_ID, "count": 1, "idempotency_key": f"{run}-{number}"}
        try:
            reply = await sender.client.post(f"/v1/rooms/{ROOM_ID}/gifts", json=body, headers=sender.headers)
        except httpx.HTTPError as exc:
            failed[type(exc).__name__] += 1
            return
        if reply.status_code == 200:
            acked.add(reply.json()["gift_event_id"])
        else:
            failed[f"HTTP {reply.status_code}"] += 1

    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    number = 0
    try:
        while True:
            if len(tasks) < GIFTS_IN_FLIGHT:
                task = asyncio.create_task(send(number))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:  # the schedule goes on; a server too busy to answer gets no backlog
                failed["not sent: too many in flight"] += 1
            number += 1
            await asyncio.sleep(max(0.0, started + number / rate - time.perf_counter()))
    finally:
        if tasks:
            await asyncio.wait(tasks)


async def reconnect(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    # The handshakes/s ceiling: as many handshakes, through the same sinks, into the bare server.
    async with sink_pool(args.sink_procs) as pool:
        bare, _ = await bare_handshake_rate(args, pool, args.reconnect_viewers)
    progress(f"reconnect: the bare handshake server took them at {bare['per_s']:,.0f}/s")
    variants = [
        await reconnect_variant(args, tmp, servers, bare["per_s"]) for servers in args.reconnect_servers
    ]
    return {
        "bare_handshakes_per_s": bare["per_s"],
        "variants": variants,
        "targets": [target for v in variants for target in v["targets"]],
    }


async def reconnect_variant(
    args: argparse.Namespace, tmp: Path, servers: int, bare_per_s: float
) -> dict[str, Any]:
    """``--reconnect-viewers`` resuming viewers spread over ``servers`` processes on one engine,
    gifts flowing; every process stopped with SIGTERM (close 1012) and started again on its port."""
    viewers, rate = args.reconnect_viewers, args.reconnect_rate
    engine = EmbeddedEngine(tmp / f"engine-reconnect-{servers}").start()
    logs = [tmp / f"server-reconnect-{servers}-{i}.log" for i in range(servers)]
    try:
        async with contextlib.AsyncExitStack() as running, sink_pool(args.sink_procs) as pool:
            urls = [await running.enter_async_context(running_server(engine.url, log)) for log in logs]
            ports = [int(url.rsplit(":", 1)[1]) for url, _ in urls]
            async with http_client(urls[0][0], 16) as client:
                senders = await funded_senders(
                    client,
                    "rc_gifter",
                    args.reconnect_gifters,
                    10 + math.ceil(rate * args.reconnect_seconds * 1.5 / args.reconnect_gifters),
                )
                tokens = await viewer_tokens(client, "rc_v", 0, viewers)
                paths = [ws_path(ROOM_ID, token) for token in tokens]
                connect = await pool.resume("reconnect", ports, paths, args.connect_concurrency)
                if connect["opened"] != viewers:
                    raise BenchError(
                        f"only {connect['opened']} of {viewers} viewers connected: {connect['failures']}"
                    )
                progress(f"reconnect x{servers}: {viewers} viewers connected ({connect['per_s']:.0f}/s)")
                acked: set[str] = set()
                failed: Counter[str] = Counter()
                flow = asyncio.create_task(gift_flow(senders, rate, f"rc{servers}", acked, failed))
                try:
                    await asyncio.sleep(args.reconnect_seconds / 2)
                    stopped_at = time.time()
                    await running.aclose()  # SIGTERM: each process closes its sockets with 1012
                    restarting = contextlib.AsyncExitStack()
                    await restarting.__aenter__()
                    running.push_async_exit(restarting.__aexit__)
                    for log, port in zip(logs, ports, strict=True):
                        server = running_server(engine.url, log, port=port, ready=False)
                        await restarting.enter_async_context(server)
                    back = await wait_back(pool, stopped_at, viewers)
                    await asyncio.sleep(args.reconnect_seconds / 2)
                finally:
                    flow.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await flow
                drain_s = await wait_delivered(pool, len(acked) * viewers, "reconnect")
                replies = await pool.every(op="completeness", group="reconnect", acked=sorted(acked))
                stats = await pool.stats("reconnect")
    finally:
        engine.stop()
    per_viewer = [viewer for reply in replies for viewer in reply["viewers"]]
    complete = sum(
        1 for received, distinct, mine, _ in per_viewer if mine == len(acked) and received == distinct
    )
    times = [t for _, t in back["back"] if t is not None]
    in_order = sorted(times)
    # Serving again: the first viewer welcomed after the stop.
    ready_at = min(times, default=stopped_at)
    all_back_s = round(max(times) - stopped_at, 3) if len(times) == viewers else None
    # Per process: the welcomes over the span they took, and the most in any one second (the
    # clients' jittered backoff spreads them out, so the span's mean is a floor).
    rates, peaks = [], []
    for port in ports:
        mine = sorted(t for p, t in back["back"] if p == port and t is not None)
        if len(mine) > 1 and mine[-1] > mine[0]:
            rates.append(round((len(mine) - 1) / (mine[-1] - mine[0]), 1))
            peaks.append(max(Counter(int(t - mine[0]) for t in mine).values()))
    handshakes = min(peaks) if len(peaks) == servers else None
    completeness = round(complete / viewers * 100, 3)
    return {
        "servers": servers,
        "viewers": viewers,
        "gift_rate": rate,
        "gifts_acked": len(acked),
        "gift_failures": dict(failed),
        "first_back_s": round(ready_at - stopped_at, 3),
        "all_back_after_stop_s": all_back_s,
        "all_back_after_first_s": round(max(times) - ready_at, 3) if all_back_s is not None else None,
        # How the return spread: the seconds after the stop by which each share was back.
        "back_after_stop_s": {
            f"p{q}": round(in_order[min(len(times) - 1, len(times) * q // 100)] - stopped_at, 3)
            for q in (50, 90, 99)
        }
        if times
        else None,
        "back": len(times),
        "handshakes_per_s_per_process": rates,
        "handshakes_peak_1s_per_process": peaks,
        "reconnect_attempts": back["attempts"],
        # Why each attempt after a viewer's first was needed (a refused dial, a close code).
        "reconnect_retried": back["retried"],
        "resumed": back["resumed"],
        "stopped_for_good": back["stopped"],
        "viewers_complete": complete,
        "completeness_pct": completeness,
        "duplicate_events": sum(received - distinct for received, distinct, _, _ in per_viewer),
        "open_at_end": stats["open"],
        "drain_s": drain_s,
        "connect": connect,
        "targets": [
            judged(
                f"all {viewers} viewers back after the restart ({servers} process(es))",
                all_back_s,
                f"<= {RECONNECT_BACK_TARGET_S:g} s",
                all_back_s is not None and all_back_s <= RECONNECT_BACK_TARGET_S,
                unit="s",
            ),
            judged(
                f"handshakes/s per process, busiest second of the storm ({servers} process(es))",
                handshakes,
                f">= {RECONNECT_HANDSHAKES_TARGET:g}",
                handshakes is not None and handshakes >= RECONNECT_HANDSHAKES_TARGET,
                # Over the bare handshake server's rate through the same sinks.
                ratio=round(handshakes / bare_per_s, 3) if handshakes else None,
                unit="/s",
            ),
            judged(
                f"viewers holding every acknowledged gift once ({servers} process(es))",
                completeness,
                "100 %",
                completeness == 100.0,
                unit="%",
            ),
        ],
    }


async def wait_back(pool: SinkPool, since: float, viewers: int) -> dict[str, Any]:
    """Wait until every resuming viewer has been welcomed again since ``since`` (or
    ``BACK_MAX_S`` passed); where each one came back, and when."""
    deadline = time.monotonic() + BACK_MAX_S
    while True:
        replies = await pool.every(op="returns", group="reconnect", since=since)
        back = [entry for reply in replies for entry in reply["back"]]
        summary = {
            "back": back,
            "attempts": sum(reply["attempts"] for reply in replies),
            "retried": dict(sum((Counter(reply["retried"]) for reply in replies), Counter())),
            "resumed": sum(reply["resumed"] for reply in replies),
            "stopped": sum(reply["stopped"] for reply in replies),
        }
        if sum(1 for _, t in back if t is not None) >= viewers or time.monotonic() > deadline:
            return summary
        await asyncio.sleep(0.1)


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], Coroutine[Any, Any, dict[str, Any]]]] = {
    "storm": storm,
    "quiet": quiet,
    "fanout": fanout,
    "connections": connections,
    "mixed": mixed,
    "peer": peer,
    "reconnect": reconnect,
}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"scenario_seconds": {}}
    with tempfile.TemporaryDirectory(prefix="bench-room-") as tmp:
        for name in args.scenarios:
            print(f"{name}...", flush=True)
            started = time.perf_counter()
            with collector_off():
                report[name] = await SCENARIOS[name](args, Path(tmp))
            report["scenario_seconds"][name] = round(time.perf_counter() - started, 1)
    return report


def comma_ints(raw: str) -> list[int]:
    return [positive_int(part) for part in raw.split(",") if part]


def comma_floats(raw: str) -> list[float]:
    return [positive_float(part) for part in raw.split(",") if part]


def scenario_list(raw: str) -> list[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_room",
        description="Live-room delivery, fan-out against a bare websockets broadcaster, idle memory.",
    )
    parser.add_argument("--scenarios", type=scenario_list, default=list(SCENARIOS), help="default: all")
    parser.add_argument("--storm-viewers", type=positive_int, default=2000)
    parser.add_argument("--storm-rate", type=positive_float, default=500.0, help="gifts/s (default 500)")
    parser.add_argument("--storm-seconds", type=positive_float, default=20.0)
    parser.add_argument("--storm-gifters", type=positive_int, default=50)
    parser.add_argument(
        "--sample-every",
        type=positive_int,
        default=10,
        help="storm latency on every n-th viewer (default 10)",
    )
    parser.add_argument("--quiet-viewers", type=positive_int, default=2000)
    parser.add_argument("--quiet-rate", type=positive_float, default=25.0, help="gifts/s (default 25)")
    parser.add_argument("--quiet-seconds", type=positive_float, default=20.0)
    parser.add_argument("--quiet-gifters", type=positive_int, default=10)
    parser.add_argument("--fanout-sizes", type=comma_ints, default=[1000, 5000, 10000])
    parser.add_argument("--fanout-rate", type=positive_float, default=200.0, help="gifts/s (default 200)")
    parser.add_argument("--fanout-gifters", type=positive_int, default=20)
    parser.add_argument("--fanout-seconds", type=positive_float, default=5.0)
    parser.add_argument("--fanout-rounds", type=positive_int, default=3)
    parser.add_argument("--warmup", type=positive_float, default=1.0, help="seconds before each window")
    parser.add_argument(
        "--bare-inflight",
        type=positive_int,
        default=16384,
        help="the bare loop waits while a probed connection has more unsent bytes (default 16384)",
    )
    parser.add_argument("--connections", type=positive_int, default=10000)
    parser.add_argument("--mixed-viewers", type=positive_int, default=2000)
    parser.add_argument("--mixed-seconds", type=positive_float, default=20.0, help="each phase (default 20)")
    parser.add_argument("--mixed-gift-rate", type=positive_float, default=500.0, help="gifts/s (default 500)")
    parser.add_argument("--mixed-gifters", type=positive_int, default=50)
    parser.add_argument(
        "--mixed-chat-rate", type=positive_float, default=200.0, help="chat messages/s (default 200)"
    )
    parser.add_argument(
        "--mixed-like-rate", type=positive_float, default=5000.0, help="likes/s (default 5000)"
    )
    parser.add_argument(
        "--mixed-like-count", type=positive_int, default=5, help="likes per like frame, 1-15 (default 5)"
    )
    parser.add_argument(
        "--mixed-talkers",
        type=positive_int,
        default=500,
        help="users sending the chat and likes (default 500)",
    )
    parser.add_argument("--peer-viewers", type=positive_int, default=PEER_TARGET_VIEWERS)
    parser.add_argument(
        "--peer-rates",
        type=comma_floats,
        default=[25, 50, 100, 250, 500, 1000, 2000, 3000, 4000, 6000, 8000],
        help="the gift rates stepped through, gifts/s (default 25,50,...,4000,6000,8000)",
    )
    parser.add_argument("--peer-step-seconds", type=positive_float, default=5.0, help="each step (default 5)")
    parser.add_argument("--peer-gifters", type=positive_int, default=20)
    parser.add_argument(
        "--peer-attempts",
        type=positive_int,
        default=2,
        help="runs of a rate before it counts as not held (default 2: the machine is shared)",
    )
    parser.add_argument(
        "--peer-warmup", type=positive_float, default=2.0, help="seconds at the first rate, not reported"
    )
    parser.add_argument("--reconnect-viewers", type=positive_int, default=10000)
    parser.add_argument("--reconnect-rate", type=positive_float, default=200.0, help="gifts/s (default 200)")
    parser.add_argument("--reconnect-gifters", type=positive_int, default=20)
    parser.add_argument(
        "--reconnect-seconds",
        type=positive_float,
        default=10.0,
        help="gifts flow this long around the restart",
    )
    parser.add_argument(
        "--reconnect-servers",
        type=comma_ints,
        default=[1, 2],
        help="server processes of each variant (default 1,2)",
    )
    parser.add_argument("--sink-procs", type=positive_int, default=2, help="load processes for the sinks")
    parser.add_argument(
        "--connect-concurrency", type=positive_int, default=64, help="handshakes in flight per load process"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.fanout_sizes = sorted(args.fanout_sizes)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    report = run_benchmark("bench_room", bench(args))
    if report is None:
        return 1
    print_report(report)
    if args.json is not None:
        document = {**report_head("bench_room", args), **report}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
