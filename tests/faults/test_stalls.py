"""A stalled engine: ``SIGSTOP`` of the engine under a storm of gifts, reads and probes.

The engine stays stopped for ``STALL_S`` (far longer than the bound), then gets ``SIGCONT``.
While it is stopped, every request that needs it must answer ``503 engine_unavailable``
within ``GIFTING_ENGINE_TIMEOUT_MS`` (plus a little for a loaded 2-core machine), never
hang for the length of the stall; a gift whose debit met the stall says that its outcome is
unknown. Afterwards every refused gift is retried with its key and the books must be exact:
each gift debited, credited and published once, and the audit clean.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx
import pytest

from server.engine import EmbeddedEngine
from tests.faults.storm import GIFTS, Gift, Storm, error_code, wait_for_empty_outbox
from tests.faults.test_crashes import check_audit, check_exactly_once, open_room
from tests.support import Api, running_server, server_env, stalled, unique
from tests.wsclient import RoomSocket

pytestmark = [pytest.mark.anyio, pytest.mark.embedded_only]

PREFIX = "crash:"
USERS = 8
TIMEOUT_MS = 2_000
# What a loaded machine may add to the bound: scheduling, the HTTP round trip.
SLACK_S = 1.0
STALL_S = 30.0
NOT_CHARGED = "the engine is unavailable; retry shortly"
UNKNOWN = "may or may not have been charged; retry with the same idempotency_key"


async def test_a_stalled_engine_answers_503_within_the_bound_and_the_books_are_exact_after(
    tmp_path: Path, logs: Path
) -> None:
    engine = EmbeddedEngine(tmp_path / "engine", fsync="always").start()
    env = server_env(engine.url, PREFIX, GIFTING_ENGINE_TIMEOUT_MS=str(TIMEOUT_MS))
    try:
        with running_server(env, logs) as server:
            creator, room_id = open_room(server.base_url)
            storm = await Storm.prepare([server.base_url], room_id, USERS)
            # (what answered, how long it took) of every request sent while the engine is stopped
            answers: list[tuple[str, float]] = []
            messages: set[str] = set()

            async def timed(http: httpx.AsyncClient, label: str, call: object) -> None:
                started = time.monotonic()
                reply = await call  # type: ignore[misc]
                elapsed = time.monotonic() - started
                answers.append((f"{label} {reply.status_code} {error_code(reply)}", elapsed))
                if label != "readyz" and reply.status_code == 503:
                    messages.add(reply.json()["error"]["message"])

            async def gifter(user: str, until: float) -> None:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
                    n = 0
                    while time.monotonic() < until:
                        gift_id, cost = GIFTS[n % len(GIFTS)]
                        gift = Gift(user, unique("k"), gift_id, cost)
                        started = time.monotonic()
                        await storm.gift(http, gift)
                        status = "ok" if gift.key in storm.acked else "refused"
                        answers.append((f"gift {status}", time.monotonic() - started))
                        n += 1

            # A room socket's gift frames are bounded the same way.
            socket_user = unique("v")
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                api = Api(http)
                api.buy(socket_user)
                sock = await RoomSocket.open(server.base_url, room_id, api.token(socket_user))
            await sock.welcome()
            socket_keys: list[str] = []
            socket_messages: set[str] = set()

            async def socket_gifter(until: float) -> None:
                while time.monotonic() < until:
                    socket_keys.append(unique("k"))
                    started = time.monotonic()
                    answer = await sock.gift("rose", key=socket_keys[-1])
                    elapsed = time.monotonic() - started
                    answers.append((f"socket {answer['type']} {answer.get('code')}", elapsed))
                    socket_messages.add(answer.get("message", ""))

            async def prober(until: float) -> None:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
                    auth = storm.auth(storm.users[0])
                    while time.monotonic() < until:
                        await timed(http, "readyz", http.get("/readyz"))
                        await timed(http, "wallet", http.get("/v1/wallet", headers=auth))

            with stalled(engine):
                until = time.monotonic() + STALL_S - 2 * (TIMEOUT_MS / 1000 + SLACK_S)
                async with anyio.create_task_group() as tasks:
                    for user in storm.users:
                        tasks.start_soon(gifter, user, until)
                    tasks.start_soon(prober, until)
                    tasks.start_soon(socket_gifter, until)

            slowest = max(elapsed for _, elapsed in answers)
            assert slowest <= TIMEOUT_MS / 1000 + SLACK_S, sorted(answers, key=lambda a: -a[1])[:5]
            assert {label for label, _ in answers} == {
                "gift refused",
                "readyz 503 ?",
                "wallet 503 engine_unavailable",
                "socket error engine_unavailable",
            }, answers
            assert set(storm.refusals) == {"gift 503 engine_unavailable"}, storm.refusals
            # Refused before its debit: nothing charged; refused in it: it says it may have been.
            assert all(m == NOT_CHARGED or UNKNOWN in m for m in messages), messages
            # A socket's gift checks the room in the engine first, as an HTTP one does.
            assert socket_messages and all(m == NOT_CHARGED or UNKNOWN in m for m in socket_messages), (
                socket_messages
            )
            refused = len(storm.failed)
            assert refused >= USERS * 2

            # The engine back: every refused gift retried with its key, each applied once.
            await storm.settle(server.base_url)
            check_exactly_once(storm, await wait_for_empty_outbox(engine.url, PREFIX, storm, creator))
            for key in socket_keys:  # the same keys again: each charged once
                assert (await sock.gift("rose", key=key))["type"] == "gift_ack"
            await sock.close()
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                assert Api(http).coins(socket_user) == 550 - len(socket_keys)
            check_audit(engine.url)
            print(
                f"\nengine stalled {STALL_S:.0f} s: {len(answers)} requests answered in at most "
                f"{slowest:.2f} s (bound {TIMEOUT_MS / 1000:.1f} s), {refused} gifts refused and "
                f"retried, {len(storm.acked)} gifts applied once; audit ok"
            )
    finally:
        engine.stop()
