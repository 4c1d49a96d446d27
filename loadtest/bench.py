"""The benchmark suite: every scenario's server figure beside its ceiling, against the targets.

    .venv/bin/python -m loadtest.bench [--quick] [--json out.json] [--plot docs/bench/rooms.png]

It runs, in one process and one event loop, the scenarios of ``loadtest.bench_gift``,
``loadtest.bench_room`` and ``loadtest.bench_battle`` by calling them (their module docstrings
say what each measures and why its ceiling is the ceiling). Every scenario's report lists its
figures judged against their targets under "targets" (``loadtest.harness.judged``: figure,
value, unit, target, ratio to its ceiling or peer, met), each target's number a constant in
the module of the scenario that measures it. The suite prints those of every scenario in one
table and then each target missed, and writes one JSON document: a head (the date, commit,
machine and command line of the run), the summary (every scenario's targets, each under the
scenario's name) and every full report. ``loadtest.tables`` renders the summary into
docs/BENCHMARKS.md. A missed target is reported, not an error: the exit status is 1 only
when a scenario could not run.

gift path (``bench_gift``, ``--transport ws``, with ``appendfsync always`` and ``everysec``)
    The most gifts/s acknowledged over the room WebSocket (64 senders with 4 gifts in flight
    each) against the bare ``gift_debit`` EVALSHA rate on the same engine, the server's and
    the engine's CPU per gift at that maximum (the engine's beside its CPU per bare script),
    and the p99 ack latency with half that maximum offered on a fixed schedule. Then the same
    for two server processes on one engine (``--servers 2``, ``always``).
storm, fanout, connections, mixed and any other scenario of ``bench_room``
    Delivery completeness of a 2,000-viewer gift storm and its p99 delivery and ack latency;
    frames/s into rooms of 1,000, 5,000 and 10,000 viewers against a bare ``broadcast()``
    loop; memory per idle connection at 10,000 viewers and the connect rate; the 2,000-viewer
    room taking gifts, chat and likes at once against the same room taking the gifts alone
    (every gift and chat message to every viewer once, p99 delivery, the like total equal to
    the likes accepted, at most one frame per tick per viewer), with the server's CPU and the
    engine's calls per tick.
battle (``bench_battle``)
    Two rooms of 1,000 viewers each taking 500 gifts/s between them, first without a battle,
    then with one between the rooms, in alternating rounds (every gift to every viewer of its
    room, p99 delivery, every score change in a ``battle`` event at most one tick after its
    gift, the final scores equal to the acknowledged gifts' coins in the API and at every
    viewer, and the server's CPU per gift with the battle against without).

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
from pathlib import Path
from typing import Any

from loadtest import bench_battle, bench_gift, bench_room, harness, tables

# The maximum is taken with 4 gifts in flight per sender: with 1, its 64 senders have at most
# 64 gifts in flight, and the rate is 64 over one gift's round trips, not the most the server
# takes (the ceiling keeps 400 in flight).
_IN_FLIGHT = ["--inflight", "4"]
GIFT_FULL = ["--transport", "ws", "--fsync", "both", *_IN_FLIGHT]
# Two server processes on one engine, with the server's default policy (always).
GIFT_TWO_FULL = ["--transport", "ws", "--fsync", "always", "--servers", "2", "--paced", "0", *_IN_FLIGHT]
_GIFT_TINY = ["--seconds", "0.3", "--concurrency", "2", "--rooms", "2", "--repeat", "1", "--warmup", "0.1"]
GIFT_QUICK = [*GIFT_FULL, *_GIFT_TINY]
GIFT_TWO_QUICK = [*GIFT_TWO_FULL, *_GIFT_TINY]
ROOM_FULL: list[str] = []
# The sizes of tests/test_bench_smoke.py's own bench_room run.
ROOM_QUICK = [
    *("--storm-viewers", "20", "--storm-rate", "20", "--storm-seconds", "1", "--storm-gifters", "2"),
    *("--quiet-viewers", "20", "--quiet-rate", "5", "--quiet-seconds", "1", "--quiet-gifters", "2"),
    *("--fanout-sizes", "20,40", "--fanout-rate", "20", "--fanout-gifters", "2", "--fanout-seconds", "0.5"),
    *("--fanout-rounds", "1", "--warmup", "0.2", "--connections", "30", "--sink-procs", "1"),
    *("--mixed-viewers", "20", "--mixed-seconds", "1", "--mixed-gift-rate", "20", "--mixed-gifters", "2"),
    *("--mixed-chat-rate", "10", "--mixed-like-rate", "100", "--mixed-talkers", "10"),
    *("--peer-viewers", "20", "--peer-rates", "10,20", "--peer-step-seconds", "0.5", "--peer-gifters", "2"),
    *("--peer-warmup", "0.2"),
    *("--reconnect-viewers", "20", "--reconnect-rate", "20", "--reconnect-gifters", "2"),
    *("--reconnect-seconds", "1", "--reconnect-servers", "1"),
]
BATTLE_FULL: list[str] = []
# The sizes of tests/test_bench_smoke.py's own bench_battle run; the battle is not waited out.
BATTLE_QUICK = [
    *("--viewers", "10", "--rate", "20", "--seconds", "1", "--gifters", "2", "--rounds", "1"),
    *("--no-battle-end", "--sink-procs", "1"),
]


def scenario_reports(
    gift: list[bench_gift.PolicyResult], rooms: dict[str, Any], battle: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """Every scenario's report under the name the summary gives it, in the order they ran."""
    return [
        *((result.label, result.to_dict()) for result in gift),
        *((name, rooms[name]) for name in rooms["scenario_seconds"]),
        ("battle", battle),
    ]


def summary_rows(reports: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The judged targets of every scenario (its "targets"), each under the scenario's name."""
    return [{"scenario": name, **target} for name, report in reports for target in report["targets"]]


def print_summary(rows: list[dict[str, Any]]) -> None:
    """The targets as a table, then every one missed."""
    header = ("scenario", "figure", "value", "target", "ratio", "met")
    table = [
        (
            row["scenario"],
            row["figure"],
            tables.format_value(row["value"], row["unit"]),
            row["target"],
            tables.format_ratio(row["ratio"]),
            tables.format_met(row["met"]),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    print()
    for line in [header, *table]:
        print(
            "  ".join(
                text.rjust(w) if i in (2, 4) else text.ljust(w)
                for i, (text, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
    judged = [row for row in rows if row["met"] is not None]
    missed = tables.misses(rows)
    print(f"\n{len(judged) - len(missed)} of {len(judged)} judged targets met, {len(missed)} missed:")
    for row in missed:
        value = tables.format_value(row["value"], row["unit"])
        print(f"  MISSED {row['scenario']}: {row['figure']} = {value} (target {row['target']})")
    if len(judged) < len(rows):
        print(f"{len(rows) - len(judged)} targets could not be judged at this run's sizes")


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
    # Taken before the run: the commit measured, not one dirtied by the run's own outputs.
    head = harness.report_head("bench", argv=argv)
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
    reports = scenario_reports(gift, rooms, battle)
    rows = summary_rows(reports)
    print_summary(rows)
    if args.plot is not None:
        from loadtest.plot import plot_rooms

        plot_rooms(rooms, args.plot)
        print(f"wrote {args.plot}")
    if args.json is not None:
        document = {
            **head,
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
            "summary": rows,
            "gift": [report for _, report in reports[: len(gift)]],
            "rooms": rooms,
            "battle": battle,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
