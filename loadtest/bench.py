"""The benchmark suite: every scenario's server figure beside its ceiling, against the targets.

    .venv/bin/python -m loadtest.bench [--quick] [--json out.json] [--plot docs/bench/rooms.png]

It runs, in one process and one event loop, the scenarios of ``loadtest.bench_gift`` and
``loadtest.bench_room`` by calling them (their module docstrings say what each measures and
why its ceiling is the ceiling), then prints one table of the targets and writes one JSON
document holding the summary and both full reports:

gift path (``bench_gift``, ``--transport ws``, with ``appendfsync always`` and ``everysec``)
    The most gifts/s acknowledged over the room WebSocket against the bare ``gift_debit``
    EVALSHA rate on the same engine (target: at least 25 %), and the p99 ack latency with
    half that maximum offered on a fixed schedule (target: at most 25 ms). Then the most
    gifts/s of two server processes on one engine (``--servers 2``, ``always``; target: at
    least 40 %).
fan-out, storm, connections, mixed (``bench_room``)
    Frames/s into rooms of 1,000, 5,000 and 10,000 viewers against a bare ``broadcast()``
    loop; delivery completeness of a 2,000-viewer gift storm (target: 100 %) and its p99
    latency; memory per idle connection at 10,000 viewers (goal: at most 20 KiB) and the
    connect rate; the 2,000-viewer room taking gifts, chat and likes at once against the
    same room taking the gifts alone (targets: every gift and chat message to every viewer
    once, p99 delivery at most 250 ms, the like total equal to the likes accepted, at most
    one frame per tick per viewer), with the server's CPU and the engine's calls per tick.
battle (``bench_battle``)
    Two rooms of 1,000 viewers each taking 500 gifts/s between them, first without a battle,
    then with one between the rooms, in alternating rounds (targets: every gift to every
    viewer of its room, p99 delivery at most 250 ms, every score change in a ``battle`` event
    at most one tick after its gift, the final scores equal to the acknowledged gifts' coins
    in the API and at every viewer, and the server's CPU per gift with the battle within
    15 % of without).

The scenarios run one after another because they share the machine: each needs the cores
the others would take. ``--quick`` runs every scenario at a tiny size, only to show that the
suite still works (the smoke test runs it); its figures mean nothing. The plot (``--plot``)
is drawn by ``loadtest.plot`` from the room figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest import bench_battle, bench_gift, bench_room, harness

GIFT_RATIO_TARGET = 0.25
TWO_PROCESS_RATIO_TARGET = 0.40
PACED_P99_TARGET_MS = 25.0
KIB_PER_CONNECTION_GOAL = 20.0

GIFT_FULL = ["--transport", "ws", "--fsync", "both"]
# Two server processes on one engine, with the server's default policy (always).
GIFT_TWO_FULL = ["--transport", "ws", "--fsync", "always", "--servers", "2", "--paced", "0"]
_GIFT_TINY = ["--seconds", "0.3", "--concurrency", "2", "--rooms", "2", "--repeat", "1", "--warmup", "0.1"]
GIFT_QUICK = [*GIFT_FULL, *_GIFT_TINY]
GIFT_TWO_QUICK = [*GIFT_TWO_FULL, *_GIFT_TINY]
ROOM_FULL: list[str] = []
# The sizes of tests/test_bench_smoke.py's own bench_room run.
ROOM_QUICK = [
    *("--storm-viewers", "20", "--storm-rate", "20", "--storm-seconds", "1", "--storm-gifters", "2"),
    *("--fanout-sizes", "20,40", "--fanout-rate", "20", "--fanout-gifters", "2", "--fanout-seconds", "0.5"),
    *("--fanout-rounds", "1", "--warmup", "0.2", "--connections", "30", "--sink-procs", "1"),
    *("--mixed-viewers", "20", "--mixed-seconds", "1", "--mixed-gift-rate", "20", "--mixed-gifters", "2"),
    *("--mixed-chat-rate", "10", "--mixed-like-rate", "100", "--mixed-talkers", "10"),
    *("--reconnect-viewers", "20", "--reconnect-rate", "20", "--reconnect-gifters", "2"),
    *("--reconnect-seconds", "1", "--reconnect-servers", "1"),
]
BATTLE_FULL: list[str] = []
# The sizes of tests/test_bench_smoke.py's own bench_battle run; the battle is not waited out.
BATTLE_QUICK = [
    *("--viewers", "10", "--rate", "20", "--seconds", "1", "--gifters", "2", "--rounds", "1"),
    *("--no-battle-end", "--sink-procs", "1"),
]


@dataclass(frozen=True)
class Row:
    """One line of the summary: a figure, its ceiling when it has one, and its target."""

    scenario: str
    figure: str
    value: float
    unit: str
    ceiling: float | None = None
    target: str = "-"
    met: bool | None = None  # None: no target

    @property
    def ratio(self) -> float | None:
        return self.value / self.ceiling if self.ceiling else None


def gift_rows(results: list[bench_gift.PolicyResult]) -> list[Row]:
    rows: list[Row] = []
    for result in results:
        median = result.summary()
        scenario = f"gift path, fsync {result.fsync}"
        target = GIFT_RATIO_TARGET
        if result.servers > 1:
            scenario += f", {result.servers} processes"
            target = TWO_PROCESS_RATIO_TARGET
        rows.append(
            Row(
                scenario,
                "gifts/s acked over WS (max)",
                median["server_gifts_per_s"],
                "gifts/s",
                median["ceiling_scripts_per_s"],
                f">= {target:.0%} of ceiling",
                result.ratio >= target,
            )
        )
        rows.append(Row(scenario, "p50 ack at max", median["server_p50_ms"], "ms"))
        if result.paced_runs:
            offered = median["paced_offered_per_s"]
            rows.append(
                Row(
                    scenario,
                    f"p99 ack at {offered:,.0f} gifts/s offered",
                    median["paced_p99_ms"],
                    "ms",
                    target=f"<= {PACED_P99_TARGET_MS:g} ms",
                    met=median["paced_p99_ms"] <= PACED_P99_TARGET_MS,
                )
            )
            rows.append(Row(scenario, "p50 ack at that rate", median["paced_p50_ms"], "ms"))
    return rows


def room_rows(rooms: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for size in rooms.get("fanout", {}).get("sizes", []):
        scenario = f"fan-out, {size['viewers']:,} viewers"
        rows.append(
            Row(
                scenario,
                "frames/s delivered",
                size["server_frames_per_s"],
                "frames/s",
                size["bare_frames_per_s"],
            )
        )
        rows.append(Row(scenario, "gift events/s delivered", size["server_gift_events_per_s"], "events/s"))
        rows.append(Row(scenario, "p50 delivery latency", size["server_p50_ms"], "ms"))
        rows.append(Row(scenario, "p99 delivery latency", size["server_p99_ms"], "ms"))
    storm = rooms.get("storm")
    if storm:
        scenario = f"storm, {storm['viewers']:,} viewers, {storm['rate_target']:g} gifts/s"
        complete = storm["viewers_complete"] == storm["viewers"] and storm["completeness_min_pct"] == 100
        rows.append(
            Row(
                scenario,
                "min delivery completeness",
                storm["completeness_min_pct"],
                "%",
                None,
                "100 %",
                complete,
            )
        )
        rows.append(Row(scenario, "p99 delivery latency", storm["latency_p99_ms"] or 0.0, "ms"))
        rows.append(Row(scenario, "p99 ack latency", storm["ack_p99_ms"] or 0.0, "ms"))
    mixed = rooms.get("mixed")
    if mixed:
        for phase, label in (("gift_only", "gifts only"), ("mixed", "gifts+chat+likes")):
            scenario = f"{label}, {mixed['viewers']:,} viewers"
            for target in mixed["targets"][phase]:
                unit = "ms" if target["figure"].endswith(" ms") else ""
                figure = target["figure"].removesuffix(" ms").removesuffix(" %")
                value = float(target["value"] or 0.0)
                rows.append(Row(scenario, figure, value, unit, None, target["target"], target["met"]))
            figures = mixed[phase]
            rows.append(Row(scenario, "server CPU per tick", figures["server_cpu_ms_per_tick"], "ms"))
            rows.append(Row(scenario, "engine calls per tick", figures["engine_calls_per_tick"], "calls"))
            rows.append(
                Row(
                    scenario, "engine script calls per tick", figures["engine_script_calls_per_tick"], "calls"
                )
            )
    conns = rooms.get("connections")
    if conns:
        scenario = f"connections, {conns['connections']:,} idle viewers"
        kib = conns["kib_per_connection"] or 0.0
        goal = f"<= {KIB_PER_CONNECTION_GOAL:g} KiB"
        rows.append(
            Row(
                scenario,
                "server memory per connection",
                kib,
                "KiB",
                None,
                goal,
                kib <= KIB_PER_CONNECTION_GOAL,
            )
        )
        rows.append(Row(scenario, "connect rate", conns["connect_per_s"], "handshakes/s"))
    return rows


def battle_rows(report: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    scenario = f"battle, 2 x {report['viewers_per_room']:,} viewers"
    for where, target in bench_battle.all_targets(report):
        unit = "ms" if target["figure"].endswith(" ms") else ""
        figure = f"{where}: {target['figure'].removesuffix(' ms')}"
        value = float(target["value"] or 0.0)
        rows.append(Row(scenario, figure, value, unit, None, target["target"], target["met"]))
    cpu = report["server_cpu_us_per_gift"]
    rows.append(Row(scenario, "server CPU per gift, no battle", cpu["plain"], "us"))
    rows.append(Row(scenario, "server CPU per gift, battle", cpu["battle"], "us"))
    return rows


def print_summary(rows: list[Row]) -> None:
    print(f"\n{'scenario':<36}{'figure':<36}{'value':>14}  {'ceiling':>10} {'ratio':>7}  {'target':<20} met")
    for row in rows:
        ceiling = f"{row.ceiling:,.0f}" if row.ceiling else "-"
        ratio = f"{row.ratio:.1%}" if row.ratio is not None else "-"
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        value = f"{row.value:,.1f} {row.unit}" if row.value < 1000 else f"{row.value:,.0f} {row.unit}"
        print(
            f"{row.scenario:<36}{row.figure:<36}{value:>14}  {ceiling:>10} {ratio:>7}  {row.target:<20} {met}"
        )


async def suite(
    gift_args: argparse.Namespace,
    two_args: argparse.Namespace,
    room_args: argparse.Namespace,
    battle_args: argparse.Namespace,
) -> dict[str, Any]:
    """Run the gift path (one process, then two), then the room scenarios, then the battle;
    the wall time of each part."""
    started = time.perf_counter()
    print("gift path...", flush=True)
    gift = await bench_gift.bench(gift_args)
    print("gift path, two server processes...", flush=True)
    gift += await bench_gift.bench(two_args)
    gift_s = time.perf_counter() - started
    rooms = await bench_room.bench(room_args)
    battle = await bench_battle.bench(battle_args)
    return {"gift": gift, "rooms": rooms, "battle": battle, "gift_seconds": round(gift_s, 1)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description="Every benchmark scenario with its ceiling and target, in one run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the suite runs, measures nothing"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    parser.add_argument("--plot", type=Path, default=None, help="write the rooms plot (PNG) to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gift_argv = GIFT_QUICK if args.quick else GIFT_FULL
    two_argv = GIFT_TWO_QUICK if args.quick else GIFT_TWO_FULL
    room_argv = ROOM_QUICK if args.quick else ROOM_FULL
    battle_argv = BATTLE_QUICK if args.quick else BATTLE_FULL
    gift_args = bench_gift.parse_args(gift_argv)
    two_args = bench_gift.parse_args(two_argv)
    room_args = bench_room.parse_args(room_argv)
    battle_args = bench_battle.parse_args(battle_argv)
    harness.raise_fd_limit()
    started = time.perf_counter()
    ran = harness.run_benchmark("bench", suite(gift_args, two_args, room_args, battle_args))
    if ran is None:
        return 1
    gift: list[bench_gift.PolicyResult] = ran["gift"]
    rooms: dict[str, Any] = ran["rooms"]
    battle: dict[str, Any] = ran["battle"]
    bench_gift.print_table(gift[:-1], gift_args)
    bench_gift.print_table(gift[-1:], two_args)
    bench_room.print_report(rooms)
    bench_battle.print_report(battle)
    rows = [*gift_rows(gift), *room_rows(rooms), *battle_rows(battle)]
    print_summary(rows)
    if args.plot is not None:
        from loadtest.plot import plot_rooms

        plot_rooms(rooms, args.plot)
        print(f"wrote {args.plot}")
    if args.json is not None:
        document = {
            **harness.report_head("bench"),
            "quick": args.quick,
            "commands": {
                "gift": ["python", "-m", "loadtest.bench_gift", *gift_argv],
                "gift_two_processes": ["python", "-m", "loadtest.bench_gift", *two_argv],
                "rooms": ["python", "-m", "loadtest.bench_room", *room_argv],
                "battle": ["python", "-m", "loadtest.bench_battle", *battle_argv],
            },
            "engine_version": gift[0].engine_version,
            "wall_seconds": {
                "total": round(time.perf_counter() - started, 1),
                "gift": ran["gift_seconds"],
                **rooms["scenario_seconds"],
                "battle": battle["wall_s"],
            },
            "summary": [{**asdict(row), "ratio": row.ratio} for row in rows],
            "gift": [result.to_dict() for result in gift],
            "rooms": rooms,
            "battle": battle,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
