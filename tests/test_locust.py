"""Smoke test of loadtest/locustfile.py: a short headless Locust run against a real server.

Locust runs on gevent and monkey-patches the process it runs in, so it runs here as a
subprocess (``python -m locust``), the way an operator runs it, and the test reads the CSV
report it writes. The figures are not checked, only that every kind of event happened and
nothing failed: gifts and chat messages acknowledged, both delivered to viewers, likes sent,
no failure and no exception, the gifts reached the server's books and every like the
viewers sent is in the room's like total.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import Engine
from tests.support import ROOT, Api, running_server, server_env, unique


def read_stats(path: Path) -> dict[str, dict[str, str]]:
    """The ``<prefix>_stats.csv`` rows by name (``Aggregated`` included)."""
    with path.open(newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def locust(server_url: str, tmp_path: Path, run_id: str, *options: str) -> dict[str, dict[str, str]]:
    """Run the locustfile headless against ``server_url`` with ``options``; the CSV stats by
    name, once the run is known to have failed nothing."""
    command = [
        *(sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless", "--only-summary"),
        *options,
        *("--run-id", run_id, "--csv", str(tmp_path / "run"), "--host", server_url),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    stats = read_stats(tmp_path / "run_stats.csv")
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats
    for report in ("run_failures.csv", "run_exceptions.csv"):
        lines = (tmp_path / report).read_text().splitlines()
        assert len(lines) == 1, f"{report}: {lines}"  # the header only
    return stats


def test_battle_scenario_links_two_new_rooms_and_viewers_of_both_get_battle_events(
    engine: Engine, logs: Path, tmp_path: Path
) -> None:
    env = server_env(engine.url, f"{unique('l')}:", GIFTING_GIFT_RATE="100000", GIFTING_GIFT_BURST="100000")
    run_id = unique("")[:6]
    with running_server(env, logs) as server:
        stats = locust(
            server.base_url,
            tmp_path,
            run_id,
            *("--room", "new", "--creators", "2", "--battle", "60", "-u", "12", "-r", "12", "-t", "8s"),
            *("--gifter-weight", "2", "--viewer-weight", "8", "--gift-rate", "10"),
            *("--chat-rate", "0", "--like-rate", "0"),
        )
        # One invitation, accepted, and battle events (new scores) at the viewers of both rooms.
        assert int(stats["/v1/battles"]["Request Count"]) >= 1, stats
        assert int(stats["/v1/battles/[battle_id]/accept"]["Request Count"]) >= 1, stats
        assert int(stats["battle"]["Request Count"]) > 0, stats
        assert int(stats["gift_ack"]["Request Count"]) > 0, stats
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            api = Api(http)
            # The audit checks the battle's scores against the ledgers too (battle_score).
            audit = http.get("/v1/admin/audit", headers=api.auth("boss", "admin"))
            assert audit.status_code == 200, audit.text
            assert audit.json()["ok"], audit.json()["violations"]


def test_headless_run_acknowledges_and_delivers_gifts_chat_and_likes(
    engine: Engine, logs: Path, tmp_path: Path
) -> None:
    env = server_env(engine.url, f"{unique('l')}:", GIFTING_GIFT_RATE="100000", GIFTING_GIFT_BURST="100000")
    run_id = unique("")[:6]
    with running_server(env, logs) as server:
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            "loadtest/locustfile.py",
            "--headless",
            "--only-summary",
            "-u",
            "12",
            "-r",
            "12",
            "-t",
            "6s",
            "--gifter-weight",
            "2",
            "--gift-rate",
            "10",
            # Within the per-user limits: chat 1/s bursts of 5, likes 15/s.
            "--chat-rate",
            "0.5",
            "--like-rate",
            "10",
            "--like-count",
            "5",
            "--run-id",
            run_id,
            "--csv",
            str(tmp_path / "run"),
            # The CSV is written every second; the JSON holds the final counts.
            "--json-file",
            str(tmp_path / "final"),
            "--host",
            server.base_url,
        ]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "Traceback" not in output, output

        stats = read_stats(tmp_path / "run_stats.csv")
        assert int(stats["gift_ack"]["Request Count"]) > 0, stats
        assert int(stats["gift_ack"]["Failure Count"]) == 0, stats
        assert int(stats["gift delivered"]["Request Count"]) > 0, stats
        assert int(stats["batch"]["Request Count"]) > 0, stats
        assert int(stats["connect"]["Request Count"]) == 12, stats
        for name in ("chat_ack", "chat delivered", "like"):
            assert int(stats[name]["Request Count"]) > 0, (name, stats)
            assert int(stats[name]["Failure Count"]) == 0, (name, stats)
        assert int(stats["Aggregated"]["Failure Count"]) == 0, stats
        for report in ("run_failures.csv", "run_exceptions.csv"):
            lines = (tmp_path / report).read_text().splitlines()
            assert len(lines) == 1, f"{report}: {lines}"  # the header only

        # The books agree: this run's gifters are on the room's board and its creator's videos,
        # with the coins they spent, and every ledger still balances.
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            api = Api(http)
            # Every like frame carried 5 taps, all within the rate: the room counts each once.
            final = {entry["name"]: entry for entry in json.loads((tmp_path / "final.json").read_text())}
            likes_sent = final["like"]["num_requests"] * 5
            deadline = time.monotonic() + 10
            while (total := http.get("/v1/rooms/demo_carol").json()["snapshot"]["likes"]) < likes_sent:
                assert time.monotonic() < deadline, f"like total {total}, sent {likes_sent}"
                time.sleep(0.05)
            assert total == likes_sent
            board = http.get("/v1/rooms/demo_carol").json()["snapshot"]["leaderboard"]
            ours = [entry for entry in board if entry["id"].startswith(f"lt{run_id}g")]
            assert ours and all(entry["coins"] > 0 for entry in ours), board
            # A gifter's coins went to the live and now and then to a video of its creator.
            on_videos: dict[str, int] = {}
            for video in http.get("/v1/creators/carol/videos").json()["videos"]:
                for gifter in video["top_gifters"]:
                    on_videos[gifter["user_id"]] = on_videos.get(gifter["user_id"], 0) + gifter["coins"]
            for entry in ours:
                assert api.coins(entry["id"]) == 5450 - entry["coins"] - on_videos.get(entry["id"], 0)
            audit = http.get("/v1/admin/audit", headers=api.auth("boss", "admin"))
            assert audit.status_code == 200, audit.text
            assert audit.json()["ok"], audit.json()["violations"]
