"""A retry loop in an engine outage logs a line now and then, not at every retry."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from server.engine import EmbeddedEngine
from server.logs import Throttled
from tests.support import Api, ServerProcess, running_server, server_env, unique

DEFERRED = "outbox clears deferred"
SWEEP_SKIPPED = "outbox sweep skipped"  # logged every GIFTING_OUTBOX_SWEEP_S (0.2 s) in an outage


def wait_for_lines(server: ServerProcess, text: str, count: int, timeout_s: float) -> list[str] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = [line for line in server.log_path.read_text().splitlines() if text in line]
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    return None


def test_deferred_outbox_clears_log_once_per_interval_in_an_outage(tmp_path: Path, logs: Path) -> None:
    engine = EmbeddedEngine(tmp_path / "engine", fsync="everysec").start()
    # The clears are retried every tick: 5 a second here.
    env = server_env(engine.url, "gifting:", GIFTING_TICK_MS="200")
    viewer = unique("v")
    try:
        with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
            api = Api(http)
            api.buy(viewer)
            # A delivered gift leaves its outbox entry to clear at the next tick; the engine is
            # killed before that tick (a tick that slips in first clears it: go again).
            for _ in range(5):
                assert api.gift(viewer, "demo_carol", "rose").status_code == 200
                engine.kill()
                if wait_for_lines(server, DEFERRED, 1, timeout_s=2) is not None:
                    break
                engine.start()
                server.wait_ready(30)
            else:
                pytest.fail(f"the clears never failed:\n{server.output()}")
            log_text = server.log_path.read_text()
            skipped_before = log_text.count(SWEEP_SKIPPED)
            # Ten more sweeps skipped: two seconds, ten retries of the clears.
            assert wait_for_lines(server, SWEEP_SKIPPED, skipped_before + 10, timeout_s=10), server.output()
            deferred = [line for line in server.log_path.read_text().splitlines() if DEFERRED in line]
            assert len(deferred) == 1, deferred
    finally:
        engine.stop()


def test_a_throttled_line_says_how_many_were_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttled = Throttled(logging.getLogger("test.throttled"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        for step in range(25):  # one try every second for 25 s
            now[0] = float(step)
            throttled.warning("clears deferred (%s)", "down")
    assert [record.getMessage() for record in caplog.records] == [
        "clears deferred (down)",
        "clears deferred (down) (and 9 more like it in the last 10 s)",
        "clears deferred (down) (and 9 more like it in the last 10 s)",
    ]
