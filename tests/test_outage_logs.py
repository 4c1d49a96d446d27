"""A retry loop in an engine outage logs a line now and then, not at every retry."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from server.domain.catalog import Catalog
from server.domain.requests import GiftRequest
from server.engine import EmbeddedEngine
from server.gifting import GiftService
from server.keys import KeySchema
from server.logs import Throttled
from server.settings import Settings
from server.store import Store
from tests.support import stalled, unique

DEFERRED = "outbox clears deferred"


@pytest.mark.anyio
async def test_deferred_outbox_clears_log_once_per_interval_in_an_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each gift's clear goes out in the turn after its delivery; three turns' clears fail in
    a stall, one line says so, and the sweeper finishes what they left, crediting once."""
    engine = EmbeddedEngine(tmp_path / "engine").start()
    catalog = Catalog.load_default()
    viewer, creator, room_id = unique("v"), unique("c"), unique("r")
    try:
        async with Store.from_url(engine.url, KeySchema("t:"), timeout_ms=300) as store:
            service = GiftService(store, catalog, Settings())
            package = catalog.package("US", "us_550")
            now_ms = int(time.time() * 1000)
            await store.payments.create_order(viewer, "o1", package, now_ms, ttl_s=60, max_pending=20)
            paid = await store.payments.credit_payment(
                "sandbox", "o1", "p1", package.amount_minor, package.currency, 0
            )
            assert paid.coins == 550
            await store.rooms.create(creator, room_id, "", int(time.time() * 1000))
            with caplog.at_level(logging.WARNING, logger="server.gifting"):
                for i in range(3):
                    request = GiftRequest(gift_id="doughnut", count=1, idempotency_key=f"k{i}")
                    assert (await service.send(viewer, room_id, request, int(time.time() * 1000))).cost == 30
                    # The clear is queued for the next turn: the engine stalls before it.
                    with stalled(engine):
                        await service.flush_clears()
            deferred = [r.getMessage() for r in caplog.records if DEFERRED in r.getMessage()]
            assert len(deferred) == 1, deferred
            # A stalled engine runs the clears it was sent once it wakes; whatever it ran, the
            # sweeper leaves nothing behind and credits nothing twice.
            assert await service.sweep(older_than_ms=int(time.time() * 1000) + 1) == 0
            assert await store.outbox.pending(viewer) == []
            assert (await store.earnings.get(creator, int(time.time() * 1000))).pending == 3 * 15
            assert (await store.wallets.get(viewer, 0)).coins == 550 - 3 * 30
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
