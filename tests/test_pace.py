"""The load generators' pacer (``loadtest.harness.pace``): a fixed schedule, without a spin."""

from __future__ import annotations

import asyncio
import time

import pytest

from loadtest import harness
from loadtest.harness import run_async

pytestmark = pytest.mark.pure


def paced(rate: float, seconds: float, monkeypatch: pytest.MonkeyPatch) -> tuple[list[float], int]:
    """When each send of ``pace`` at ``rate`` for ``seconds`` came, and how many times it
    slept, on the event loop the benchmarks run (uvloop)."""
    sends: list[float] = []
    sleeps = 0
    real_sleep = asyncio.sleep

    async def counted_sleep(delay: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await real_sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", counted_sleep)

    async def run() -> int:
        return await harness.pace(rate, seconds, lambda n: sends.append(time.perf_counter()))

    assert run_async(run()) == round(rate * seconds)
    return sends, sleeps


@pytest.mark.parametrize("rate", [500.0, 4_000.0])
def test_pace_sends_on_schedule_and_sleeps_at_most_once_a_timer_tick(
    rate: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above 1,000/s the gap between two sends is shorter than the loop's timers (whole
    milliseconds on uvloop), which return at once for less: the pacer then slept once per
    check, spinning a core the server and engine needed (a whole core from 2,000 gifts/s).
    It sleeps at least one tick now, sending what fell due meanwhile."""
    seconds = 0.5
    sends, sleeps = paced(rate, seconds, monkeypatch)
    assert sends[-1] - sends[0] >= seconds * 0.9  # spread over the run, not sent at once
    # A timer can end a little before its send is due (the loop reads its clock once a
    # turn), so a send may take a second sleep; before, 500/s slept 12 times a send and
    # 4,000/s over 200 times a tick.
    ticks = seconds / harness.PACE_TICK_S
    assert sleeps <= 2 * min(len(sends), ticks) + 5, (sleeps, len(sends))
