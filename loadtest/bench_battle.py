"""A LIVE battle under a gift storm: delivery, scores on time and exact, and what the battle costs.

    .venv/bin/python -m loadtest.bench_battle [--viewers 1000] [--rate 500] [--seconds 20]
        [--rounds 2] [--json battle.json]

One engine and one real ``python -m server`` process (demo mode, through
``loadtest.harness.running_server``). Two creators go live through the API, each in a room of
its own, and ``--viewers`` (1,000) raw WebSocket sinks (``loadtest/sinks.py``, in
``--sink-procs`` processes of their own, as in ``bench_room``) watch each room. ``--gifters``
(50) WebSocket gifters, half in each room, send ``--rate`` gifts/s (500: 1-coin roses,
alternately to each side, on one fixed schedule) for ``--seconds`` (20).

Each of ``--rounds`` (2) rounds runs that storm twice on the same server, rooms, viewers and
gifters: first with no battle (``plain``), then with a battle between the two rooms
(``battle``: invited and accepted through the API just before). The battle lasts
``--duration`` s, by default twice as long as the round's plain storm took from its first
send to its last delivery, plus 20 s (at least 60 s, at most 600): time enough for the
storm, its acks and its deliveries even on a busy machine, and no longer, since the next
round waits for its end. The
battle then ends by itself (every round but the last with ``--no-battle-end``), before the
next round's plain storm. Per phase, each judged against its target in the JSON
(``targets``: figure, value, unit, target, ratio, met):

- **completeness**: every viewer's distinct gift event ids against those acknowledged to the
  gifters of its room (``gift_ack``): all of them, none twice, none of the other room's.
- **p99 delivery latency**: receive time minus the gift event's ``ts`` (the engine's clock,
  the same machine) on every ``--sample-every``-th viewer of both rooms: at most 250 ms.
- **gift path CPU per gift**: the server's CPU (from /proc) from the first send until every
  acknowledged gift has reached every viewer, divided by the gifts sent, and the same for the
  engine, with the engine's calls and script calls per gift (``INFO commandstats``) over the
  same time. It is the whole storm's cost: debits, deliveries, the fan-out to 2,000 viewers
  and, in the battle, its scoring and ``battle`` events. The battle's figure against the plain one of the same
  round, and the median of those ratios: within 15 %.

And for the battle phase:

- **score lag** (every score change at most one tick late). A viewer receives its room's gifts
  in batches, at most one a tick, and the ``battle`` events in the same batches. The k-th gift
  event a viewer receives brings its side's coins as the viewer saw them to C; the score
  change it caused is shown by the first ``battle`` event whose score for that side is at
  least C. Its lag is the number of batches from the batch carrying the gift to the batch
  carrying that event: 0 if the same tick read the score, 1 if the next. Target: at most 1
  for every gift at every viewer, and no gift never shown. (During a storm every tick has
  gifts to send, so batches and ticks are one to one; ``frames_per_viewer`` beside the
  ``hub_ticks`` run shows it.) Beside it, in engine time: the battle event's ``server_ms``
  (when its record was read) minus the gift's ``ts``.
- **final scores exact**: each side's score in ``GET /v1/battles/{id}`` after the storm
  equals the coins of the gifts acknowledged to that side's gifters; the last ``battle``
  event every viewer got shows those scores; both rooms got the same ``battle`` events; and
  once it has ended, every viewer got exactly one ``battle_end``, with those scores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loadtest.bare import SERVER_BUFFER_BYTES
from loadtest.bench_room import (
    DRAIN_IDLE_S,
    DRAIN_MAX_S,
    SCRIPT_COMMANDS,
    Stack,
    engine_calls,
    funded_senders,
    metric_total,
    pct,
    print_targets,
    progress,
    server_stack,
    summarize_cpu,
    viewer_tokens,
)
from loadtest.harness import (
    ACK_TIMEOUT_S,
    GIFT_ID,
    BenchError,
    CpuMeter,
    bearer,
    expect,
    http_client,
    judged,
    pace,
    positive_float,
    positive_int,
    raise_fd_limit,
    report_head,
    run_benchmark,
)
from loadtest.sinks import Gifter, GiftLedger, SinkPool, open_gifters, sink_pool, ws_path
from server.settings import Settings

P99_TARGET_MS = 250.0
CPU_RATIO_TARGET = 1.15
SCORE_LAG_TARGET = 1  # batches (ticks)
# The two creators: the inviter (sides[0]) and the opponent (sides[1]).
CREATORS = ("battle_carol", "battle_erin")
GROUPS = ("a", "b")
SETTLE_S = 10.0
# How long a phase waits for its last acks; a phase is judged on those in by then.
ACK_WAIT_S = 4 * ACK_TIMEOUT_S


@dataclass
class Load:
    """The server, its two rooms and everything connected to them."""

    stack: Stack
    pool: SinkPool
    client: httpx.AsyncClient
    creators: list[dict[str, str]]  # each creator's request headers
    rooms: list[str]
    gifters: list[list[Gifter]]  # per side
    meter: CpuMeter
    price: int  # coins of one gift
    last_round: bool = False


async def poll(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    """Call ``check`` until it is true or ``seconds`` pass; whether it became true."""
    deadline = time.monotonic() + seconds
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)


async def wait_gifts(pool: SinkPool, expected: int) -> float:
    """Wait until the sinks of both rooms hold ``expected`` gift events, or none arrive for a
    while; how long."""
    started = time.perf_counter()
    last, last_change = -1, started
    while True:
        gifts = 0
        for group in GROUPS:
            gifts += (await pool.stats(group))["gifts"]
        now = time.perf_counter()
        if gifts >= expected:
            return round(now - started, 3)
        if gifts != last:
            last, last_change = gifts, now
        if now - last_change > DRAIN_IDLE_S or now - started > DRAIN_MAX_S:
            return round(now - started, 3)
        await asyncio.sleep(0.1)


async def hub_ticks(client: httpx.AsyncClient) -> float:
    return metric_total((await client.get("/metrics")).text, "gifting_hub_tick_seconds_count")


async def battle_views(load: Load) -> list[dict[str, Any]]:
    """Per room (side), what its viewers saw of the battle (``SinkHost.op_battle``), merged
    over the sink processes."""
    views = []
    for side, group in enumerate(GROUPS):
        replies = await load.pool.every(op="battle", group=group, side=side, price=load.price)
        lags: Counter[int] = Counter()
        finals: Counter[str] = Counter()
        ends: Counter[str] = Counter()
        seen: Counter[int] = Counter()
        engine_lag: list[float] = []
        union: set[str] = set()
        for reply in replies:
            lags.update({lag: n for lag, n in reply["lags"]})
            finals.update({json.dumps(scores): n for scores, n in reply["finals"]})
            ends.update({json.dumps(end): n for end, n in reply["ends"]})
            seen.update({count: n for count, n in reply["seen_counts"]})
            engine_lag += memoryview(reply["engine_lag_ms"]).cast("d").tolist()
            union |= {json.dumps(event) for event in reply["battle_events"]}
        views.append(
            {
                "lags": dict(sorted(lags.items())),
                "unshown": sum(reply["unshown"] for reply in replies),
                "engine_lag": sorted(engine_lag),
                "finals": dict(finals),
                "ends": dict(ends),
                "seen_counts": dict(seen),
                "battle_events": union,
            }
        )
    return views


async def start_battle(load: Load, duration_s: int) -> str:
    inviter, opponent = load.creators
    body = {"opponent_id": CREATORS[1], "duration_s": duration_s}
    battle = await expect(lambda: load.client.post("/v1/battles", json=body, headers=inviter), 201)
    battle_id = str(battle["battle_id"])
    accept = f"/v1/battles/{battle_id}/accept"
    running = await expect(lambda: load.client.post(accept, headers=opponent), 200)
    if running["state"] != "running":
        raise BenchError(f"battle {battle_id} is {running['state']} after its accept")
    return battle_id


async def read_battle(load: Load, battle_id: str) -> dict[str, Any]:
    return await expect(lambda: load.client.get(f"/v1/battles/{battle_id}", headers=load.creators[0]), 200)


async def phase(args: argparse.Namespace, load: Load, name: str, battle_id: str | None) -> dict[str, Any]:
    """One storm of ``--seconds`` into both rooms; with ``battle_id`` its battle is running."""
    pool, viewers = load.pool, args.viewers
    ledgers = [GiftLedger(), GiftLedger()]
    for side, gifters in enumerate(load.gifters):
        for gifter in gifters:
            gifter.ledger = ledgers[side]
    forgotten = [await pool.every(op="forget", group=group) for group in GROUPS]
    since = min(reply["time"] for replies in forgotten for reply in replies)
    base = sum([(await pool.stats(group))["gifts"] for group in GROUPS])
    ticks_before = await hub_ticks(load.client)
    await pool.every(op="window", active=True)
    calls_before = await engine_calls(load.stack.engine_url)
    # Alternately to each side: half the rate into each room.
    order = [gifter for pair in zip(*load.gifters, strict=True) for gifter in pair]
    load.meter.start()
    started = time.perf_counter()
    sent = await pace(args.rate, args.seconds, lambda n: order[n % len(order)].gift(name))
    sending_s = time.perf_counter() - started
    for ledger in ledgers:
        if ledger.sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ledger.answered.wait(), ACK_WAIT_S)
    acked = [list(ledger.acked_ids) for ledger in ledgers]
    drain_s = await wait_gifts(pool, base + sum(len(ids) for ids in acked) * viewers)
    # The work of the phase's gifts ends when the last is acknowledged and delivered, which on
    # a starved machine is well after the last send.
    work_s = time.perf_counter() - started
    cpu = summarize_cpu(load.meter.stop())
    calls = await engine_calls(load.stack.engine_url)
    calls.subtract(calls_before)
    await pool.every(op="window", active=False)
    latencies = (await pool.latencies())["gift"]
    rooms = []
    frames: list[int] = []
    for side, group in enumerate(GROUPS):
        replies = await pool.every(op="completeness", group=group, acked=acked[side])
        per_viewer = [viewer for reply in replies for viewer in reply["viewers"]]
        frames += [viewer[3] for viewer in per_viewer]
        stats = await pool.stats(group)
        count = len(acked[side])
        rooms.append(
            {
                "gifts_acked": count,
                "viewers": len(per_viewer),
                "viewers_complete": sum(
                    1 for received, distinct, mine, _ in per_viewer if mine == count == distinct == received
                ),
                "completeness_min_pct": round(min(mine / count * 100 for _, _, mine, _ in per_viewer), 3)
                if count and per_viewer
                else 0.0,
                "duplicate_events": sum(received - distinct for received, distinct, _, _ in per_viewer),
                "events_not_acked": sum(distinct - mine for _, distinct, mine, _ in per_viewer),
                "viewers_open_at_end": stats["open"],
                "viewer_closes": stats["closed"],
            }
        )
    window_s = max(reply["time"] for reply in replies) - since
    ticks = await hub_ticks(load.client) - ticks_before
    gifts_acked = sum(len(ids) for ids in acked)
    script_calls = sum(count for command, count in calls.items() if command in SCRIPT_COMMANDS)
    result: dict[str, Any] = {
        "battle_id": battle_id,
        "gifts_sent": sent,
        "sending_s": round(sending_s, 3),
        "work_s": round(work_s, 3),
        "gifts_acked": gifts_acked,
        "gifts_acked_per_side": [len(ids) for ids in acked],
        "unanswered": sum(len(ledger.sent) for ledger in ledgers),
        "errors": dict(sum((ledger.errors for ledger in ledgers), Counter())),
        "retries": dict(sum((ledger.retries for ledger in ledgers), Counter())),
        "gifter_closes": dict(sum((ledger.closed for ledger in ledgers), Counter())),
        "rooms": rooms,
        "drain_s": drain_s,
        "window_s": round(window_s, 3),
        "hub_ticks": ticks,
        "frames_per_viewer_median": statistics.median(frames) if frames else 0,
        "latency_samples": len(latencies),
        "latency_p50_ms": pct(latencies, 50),
        "latency_p99_ms": pct(latencies, 99),
        "latency_max_ms": round(latencies[-1], 2) if latencies else None,
        "ack_p50_ms": pct(sorted(ledgers[0].ack_ms + ledgers[1].ack_ms), 50),
        "ack_p99_ms": pct(sorted(ledgers[0].ack_ms + ledgers[1].ack_ms), 99),
        "cpu_cores": cpu,
        "server_cpu_us_per_gift": round(cpu["server"] * work_s / sent * 1e6, 2) if sent else None,
        "engine_cpu_us_per_gift": round(cpu["engine"] * work_s / sent * 1e6, 2) if sent else None,
        "engine_calls_per_gift": round(sum(calls.values()) / sent, 3) if sent else None,
        "engine_script_calls_per_gift": round(script_calls / sent, 3) if sent else None,
        "engine_calls_by_command": dict(calls.most_common(12)),
    }
    if battle_id is not None:
        result["scores"] = await battle_scores(args, load, battle_id, acked)
    return result


async def battle_scores(
    args: argparse.Namespace, load: Load, battle_id: str, acked: list[list[str]]
) -> dict[str, Any]:
    """The battle's scores against the acknowledged gifts, as the API and every viewer see
    them, and (once it has ended by itself) its ``battle_end`` at every viewer."""
    expected = [len(ids) * load.price for ids in acked]
    record = await read_battle(load, battle_id)
    api_scores = [side["score"] for side in record["sides"]]
    viewers = args.viewers

    async def shown() -> bool:
        views = await battle_views(load)
        return all(view["finals"].get(json.dumps(expected)) == viewers for view in views)

    # The last gifts' score reaches the viewers a tick or so after the gifts themselves.
    await poll(shown, SETTLE_S)
    ended = None
    if not (args.no_battle_end and load.last_round):
        ended = await battle_end(args, load, battle_id)
    views = await battle_views(load)
    lags: Counter[int] = Counter()
    engine_lag: list[float] = []
    for view in views:
        lags.update(view["lags"])
        engine_lag += view["engine_lag"]
    engine_lag.sort()
    result = {
        "expected_from_acks": expected,
        "api_after_storm": api_scores,
        "api_state_after_storm": record["state"],
        "viewers_last_battle_event": [view["finals"] for view in views],
        "battle_events_per_room": [len(view["battle_events"]) for view in views],
        "rooms_saw_same_battle_events": views[0]["battle_events"] == views[1]["battle_events"],
        "viewers_seeing_every_battle_event": sum(
            view["seen_counts"].get(len(view["battle_events"]), 0) for view in views
        ),
        "score_lag_batches": {str(lag): n for lag, n in sorted(lags.items())},
        "score_lag_max_batches": max(lags) if lags else None,
        "gifts_unshown": sum(view["unshown"] for view in views),
        "engine_lag_p50_ms": pct(engine_lag, 50),
        "engine_lag_p99_ms": pct(engine_lag, 99),
        "engine_lag_max_ms": engine_lag[-1] if engine_lag else None,
        "ended": ended,
    }
    if ended is not None:
        result["viewers_battle_end"] = [view["ends"] for view in views]
        result["viewers_one_exact_battle_end"] = sum(
            view["ends"].get(json.dumps([expected]), 0) for view in views
        )
    return result


async def battle_end(args: argparse.Namespace, load: Load, battle_id: str) -> dict[str, Any]:
    """Wait for the battle to end by itself and its ``battle_end`` to reach every viewer."""
    record = await read_battle(load, battle_id)
    wait_s = max(0.0, (record["ends_at"] - time.time() * 1000) / 1000) + SETTLE_S + 5
    progress(f"waiting up to {wait_s:.0f} s for battle {battle_id} to end")

    async def over() -> bool:
        nonlocal record
        record = await read_battle(load, battle_id)
        state: str = record["state"]
        return state == "ended"

    if not await poll(over, wait_s):
        raise BenchError(f"battle {battle_id} did not end: {record}")

    async def announced() -> bool:
        views = await battle_views(load)
        ended = int(sum(n for view in views for end, n in view["ends"].items() if end != "[]"))
        viewers: int = args.viewers
        return ended >= 2 * viewers

    await poll(announced, SETTLE_S)
    return {"scores": [side["score"] for side in record["sides"]], "winner": record["winner"]}


# --- targets -------------------------------------------------------------------------------


def phase_targets(result: dict[str, Any], viewers: int, where: str) -> list[dict[str, Any]]:
    """The targets of one phase, each figure beginning with ``where`` (its round and phase)."""
    targets = []
    for side, room in enumerate(result["rooms"]):
        complete = room["viewers_complete"] == viewers and room["completeness_min_pct"] == 100
        targets.append(
            judged(
                f"{where}: room {GROUPS[side]}: viewers with every gift once",
                room["viewers_complete"],
                f"{viewers} (100 %)",
                complete and room["gifts_acked"] > 0,
            )
        )
    p99 = result["latency_p99_ms"]
    targets.append(
        judged(
            f"{where}: p99 delivery",
            p99,
            f"<= {P99_TARGET_MS:g} ms",
            p99 is not None and p99 <= P99_TARGET_MS,
            unit="ms",
        )
    )
    targets.append(
        judged(
            f"{where}: gifts unanswered or refused",
            result["unanswered"] + sum(result["errors"].values()),
            "0",
            result["unanswered"] == 0 and not result["errors"],
        )
    )
    scores = result.get("scores")
    if scores is None:
        return targets
    expected = scores["expected_from_acks"]
    targets.append(
        judged(
            f"{where}: max score lag (batches)",
            scores["score_lag_max_batches"],
            f"<= {SCORE_LAG_TARGET}",
            scores["score_lag_max_batches"] is not None
            and scores["score_lag_max_batches"] <= SCORE_LAG_TARGET,
        )
    )
    targets.append(
        judged(
            f"{where}: gifts no battle event showed",
            scores["gifts_unshown"],
            "0",
            not scores["gifts_unshown"],
        )
    )
    targets.append(
        judged(
            f"{where}: GET /v1/battles scores - acked coins, both sides (sum of |difference|)",
            sum(abs(got - want) for got, want in zip(scores["api_after_storm"], expected, strict=True)),
            "0",
            scores["api_after_storm"] == expected,
        )
    )
    shown = sum(view.get(json.dumps(expected), 0) for view in scores["viewers_last_battle_event"])
    targets.append(
        judged(
            f"{where}: viewers whose last battle event has those scores",
            shown,
            f"{2 * viewers}",
            shown == 2 * viewers,
        )
    )
    targets.append(
        judged(
            f"{where}: both rooms got the same battle events",
            scores["rooms_saw_same_battle_events"],
            "yes",
            scores["rooms_saw_same_battle_events"],
        )
    )
    if scores["ended"] is not None:
        once = scores["viewers_one_exact_battle_end"]
        targets.append(
            judged(
                f"{where}: viewers with one battle_end, scores exact",
                once,
                f"{2 * viewers}",
                once == 2 * viewers and scores["ended"]["scores"] == expected,
            )
        )
    return targets


# --- the benchmark -------------------------------------------------------------------------


async def connect_viewers(args: argparse.Namespace, load: Load) -> list[dict[str, Any]]:
    outcomes = []
    for side, group in enumerate(GROUPS):
        first = side * args.viewers
        tokens = await viewer_tokens(load.client, "battle_v", first, args.viewers)
        outcome = await load.pool.connect(
            group,
            load.stack.port,
            [ws_path(load.rooms[side], token) for token in tokens],
            welcome=True,
            record=True,
            sample_every=args.sample_every,
            concurrency=args.connect_concurrency,
            base=first,
        )
        progress(f"room {group}: {outcome['opened']} viewers connected ({outcome['per_s']:.0f}/s)")
        if outcome["opened"] != args.viewers:
            raise BenchError(
                f"only {outcome['opened']} of {args.viewers} viewers connected: {outcome['failures']}"
            )
        outcomes.append(outcome)
    return outcomes


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    env = {"GIFTING_WS_BUFFER_BYTES": str(SERVER_BUFFER_BYTES)}
    async with (
        server_stack(tmp, "battle", **env) as stack,
        sink_pool(args.sink_procs) as pool,
        http_client(stack.base_url, 16) as client,
    ):
        creators = [await bearer(client, creator, "creator") for creator in CREATORS]
        rooms = []
        for headers in creators:
            room = await expect(lambda h=headers: client.post("/v1/rooms", json={}, headers=h), 201)  # type: ignore[misc]
            rooms.append(str(room["room_id"]))
        catalog = await expect(lambda: client.get("/v1/catalog/gifts"), 200)
        price = next(int(gift["coins"]) for gift in catalog["gifts"] if gift["id"] == GIFT_ID)
        per_side = max(1, args.gifters // 2)
        # Each gifter sends in both phases of every round.
        coins = math.ceil(args.rate * args.seconds * 2 * args.rounds / (2 * per_side) * price * 1.2) + 10
        gifters = []
        for side, room_id in enumerate(rooms):
            senders = await funded_senders(client, f"battle_g{GROUPS[side]}", per_side, coins)
            gifters.append(await open_gifters(stack.port, room_id, senders, GiftLedger()))
        load = Load(
            stack, pool, client, creators, rooms, gifters, CpuMeter({**stack.pids, **pool.pids}), price
        )
        connect = await connect_viewers(args, load)
        await asyncio.sleep(1.0)
        rounds: list[dict[str, Any]] = []
        for number in range(args.rounds):
            load.last_round = number == args.rounds - 1
            plain = await phase(args, load, f"r{number}plain", None)
            report_phase(f"round {number} plain", plain)
            await asyncio.sleep(1.0)
            duration = args.duration or min(600, max(60, math.ceil(2 * plain["work_s"] + 20)))
            battle_id = await start_battle(load, duration)
            await asyncio.sleep(0.5)
            battle = await phase(args, load, f"r{number}battle", battle_id)
            report_phase(f"round {number} battle", battle)
            ratio = (
                round(battle["server_cpu_us_per_gift"] / plain["server_cpu_us_per_gift"], 3)
                if battle["server_cpu_us_per_gift"] and plain["server_cpu_us_per_gift"]
                else None
            )
            rounds.append(
                {
                    "duration_s": duration,
                    "plain": plain,
                    "battle": battle,
                    "server_cpu_ratio": ratio,
                    "engine_cpu_ratio": round(
                        battle["engine_cpu_us_per_gift"] / plain["engine_cpu_us_per_gift"], 3
                    )
                    if battle["engine_cpu_us_per_gift"] and plain["engine_cpu_us_per_gift"]
                    else None,
                }
            )
            await asyncio.sleep(1.0)
        for room_gifters in gifters:
            for gifter in room_gifters:
                gifter.close()
    ratios = [r["server_cpu_ratio"] for r in rounds if r["server_cpu_ratio"] is not None]
    median_ratio = round(statistics.median(ratios), 3) if ratios else None
    return {
        "viewers_per_room": args.viewers,
        "rate": args.rate,
        "seconds": args.seconds,
        "gifters": 2 * per_side,
        "tick_ms": Settings.tick_ms,
        "connect": connect,
        "rounds": rounds,
        "server_cpu_us_per_gift": {
            "plain": statistics.median(r["plain"]["server_cpu_us_per_gift"] for r in rounds),
            "battle": statistics.median(r["battle"]["server_cpu_us_per_gift"] for r in rounds),
        },
        "server_cpu_ratio_median": median_ratio,
        "targets": [
            *(
                target
                for number, round_ in enumerate(rounds)
                for name in ("plain", "battle")
                for target in phase_targets(round_[name], args.viewers, f"round {number} {name}")
            ),
            judged(
                "all rounds: server CPU per gift, battle / plain (median of rounds)",
                median_ratio,
                f"<= {CPU_RATIO_TARGET:g}",
                median_ratio is not None and median_ratio <= CPU_RATIO_TARGET,
            ),
        ],
    }


def report_phase(label: str, result: dict[str, Any]) -> None:
    scores = result.get("scores")
    extra = ""
    if scores is not None:
        extra = (
            f"; scores {scores['api_after_storm']} (acked {scores['expected_from_acks']}), "
            f"lag {scores['score_lag_batches']}, unshown {scores['gifts_unshown']}"
        )
    progress(
        f"{label}: {result['gifts_acked']}/{result['gifts_sent']} acked, complete "
        f"{[room['viewers_complete'] for room in result['rooms']]}, p99 {result['latency_p99_ms']} ms, "
        f"server {result['cpu_cores']['server']:.2f} cores = {result['server_cpu_us_per_gift']} us/gift, "
        f"{result['engine_script_calls_per_gift']} scripts/gift{extra}"
    )


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-battle-") as tmp:
        print("battle...", flush=True)
        started = time.perf_counter()
        report = await run(args, Path(tmp))
        report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nbattle: 2 rooms x {report['viewers_per_room']:,} viewers, {report['rate']:g} gifts/s split "
        f"between the sides for {report['seconds']:g} s, {len(report['rounds'])} rounds of plain then battle"
    )
    print(
        f"  server CPU per gift (medians): plain {report['server_cpu_us_per_gift']['plain']} us, battle "
        f"{report['server_cpu_us_per_gift']['battle']} us; ratios "
        f"{[r['server_cpu_ratio'] for r in report['rounds']]}"
    )
    print_targets(report["targets"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_battle",
        description="A battle between two rooms under a gift storm, against the same storm without one.",
    )
    parser.add_argument("--viewers", type=positive_int, default=1000, help="per room (default 1000)")
    parser.add_argument(
        "--rate", type=positive_float, default=500.0, help="gifts/s, both sides (default 500)"
    )
    parser.add_argument("--seconds", type=positive_float, default=20.0, help="each phase (default 20)")
    parser.add_argument("--gifters", type=positive_int, default=50, help="half in each room (default 50)")
    parser.add_argument("--rounds", type=positive_int, default=2, help="plain then battle, each (default 2)")
    parser.add_argument(
        "--duration",
        type=int,
        default=0,
        help="battle duration_s, 60-600 (default: twice the plain storm's time + 20 s)",
    )
    parser.add_argument(
        "--no-battle-end",
        action="store_true",
        help="do not wait for the last round's battle to end (no battle_end check)",
    )
    parser.add_argument("--sample-every", type=positive_int, default=10, help="latency on every n-th viewer")
    parser.add_argument("--sink-procs", type=positive_int, default=2, help="load processes for the sinks")
    parser.add_argument(
        "--connect-concurrency", type=positive_int, default=64, help="handshakes in flight per load process"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.duration and not 60 <= args.duration <= 600:
        parser.error("--duration must be 60-600")
    if args.duration and args.seconds + 2 >= args.duration:
        parser.error("--seconds must end well within --duration")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    report = run_benchmark("bench_battle", bench(args))
    if report is None:
        return 1
    print_report(report)
    if args.json is not None:
        document = {**report_head("bench_battle", args), **report}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
