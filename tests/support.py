"""Test support: real engines and real server processes on free ports, and a small API client."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import redis
import redis.asyncio
from redis.cluster import ClusterNode

from server.domain import webhooks
from server.engine import EmbeddedEngine, free_port, stop_process
from server.settings import Settings, cluster_nodes
from server.store import Store
from server.store.records import CreatorCredit
from server.store.store import connect_cluster

# Random-looking, as a server outside demo mode requires (settings.secret_problem).
JWT_SECRET = "test-jwt-Zq3vX9pL2mK8wR4tY7uB1nC6dF0hJ5sA"
WEBHOOK_SECRET = "test-webhook-Hk7Tn2Qw9Lp4Xs6Vb1Md8Rf3Gj5Yc0Ez"
ROOT = Path(__file__).resolve().parent.parent


def unique(kind: str = "u") -> str:
    return f"{kind}{uuid.uuid4().hex[:12]}"


@dataclass
class ServerProcess:
    """``python -m server`` (or ``command``) on a free port, with its output kept for failure
    messages."""

    env: dict[str, str]
    log_path: Path
    port: int = 0
    # Another way to start it, such as with ``--workers 2``, or an installed ``gifting-server``.
    command: tuple[str, ...] = (sys.executable, "-m", "server")
    cwd: Path = ROOT
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        """Start on a free port, or on the same port again after ``stop()`` (so that clients
        can reconnect to a restarted server)."""
        if not self.port:
            self.port = free_port()
        env = {**self.env, "GIFTING_PORT": str(self.port), "GIFTING_HOST": "127.0.0.1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()  # else it runs on, past the test and the suite, holding its port
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout_s} s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        process, self.process = self.process, None
        return None if process is None else stop_process(process, 10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


async def until(condition: Callable[[], bool], wait_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll ``condition`` until it holds, failing after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {wait_s} s: {what}"
        await asyncio.sleep(poll_s)


def server_env(engine_url: str | None, prefix: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIFTING_")}
    env.update(
        GIFTING_JWT_SECRET=JWT_SECRET,
        GIFTING_WEBHOOK_SECRET=WEBHOOK_SECRET,
        GIFTING_DEMO="1",
        GIFTING_KEY_PREFIX=prefix,
        GIFTING_OUTBOX_SWEEP_S="0.2",
        # Every test client is 127.0.0.1: the per-address limit stays on but out of reach
        # (tests/test_limits.py sets it low).
        GIFTING_IP_RATE="100000",
        GIFTING_IP_BURST="100000",
        # The line per socket handshake, whose tokens the log tests check are redacted.
        GIFTING_SOCKET_LOG="1",
    )
    if engine_url:
        env["GIFTING_REDIS_URL"] = engine_url
    env.update(overrides)
    return env


@contextmanager
def stalled(engine: EmbeddedEngine) -> Iterator[None]:
    """The engine stopped (``SIGSTOP``) for the block: it holds every connection open and
    answers nothing."""
    assert engine.process is not None
    os.kill(engine.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(engine.process.pid, signal.SIGCONT)


@contextmanager
def running_server(env: Mapping[str, str], log_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(dict(env), log_dir / f"server-{uuid.uuid4().hex[:6]}.log").start()
    try:
        yield server
    finally:
        server.stop()


async def strand(store: Store, credit: CreatorCredit) -> int:
    """Debit exactly as the gift path does, then stop before the delivery, as a crash would:
    the gift waits in its sender's outbox for a sweeper. The sender's balance after it."""
    debit = await store.wallets.debit_gift(
        credit=credit,
        idempotency_key=unique("k"),
        fingerprint="f",
        day=0,
        idempotency_ttl_s=60,
        rate_per_s=100,
        burst=100,
        clawback_window_ms=Settings().clawback_window_ms,
    )
    return debit.coins


def engine_client(url: str, *, decode_responses: bool = True) -> redis.Redis:
    """A blocking client of the engine at ``url``, a cluster client for a cluster URL."""
    nodes = cluster_nodes(url)
    if nodes is None:
        return redis.Redis.from_url(url, decode_responses=decode_responses)
    cluster = redis.RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes], decode_responses=decode_responses
    )
    return cast(redis.Redis, cluster)


def engine_client_async(url: str) -> redis.asyncio.Redis:
    """The same, for asyncio code."""
    nodes = cluster_nodes(url)
    if nodes is None:
        return redis.asyncio.Redis.from_url(url, decode_responses=True)
    return connect_cluster(nodes)


def delete_prefix(url: str, prefix: str) -> None:
    """Remove the keys a test run wrote under its own prefix, and nothing else."""
    with engine_client(url) as client:
        batch = list(client.scan_iter(match=f"{prefix}*", count=1000))
        while batch:
            client.delete(*batch[:500])
            batch = batch[500:]


@dataclass
class Api:
    """A thin client of the HTTP API, one method per endpoint the tests use."""

    http: httpx.Client
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def token(self, user_id: str, role: str = "viewer") -> str:
        if (user_id, role) not in self.tokens:
            reply = self.http.post("/v1/dev/token", json={"user_id": user_id, "role": role})
            reply.raise_for_status()
            self.tokens[(user_id, role)] = reply.json()["token"]
        return self.tokens[(user_id, role)]

    def auth(self, user_id: str, role: str = "viewer") -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(user_id, role)}"}

    def me(self, user_id: str) -> dict[str, Any]:
        reply = self.http.get("/v1/me", headers=self.auth(user_id))
        assert reply.status_code == 200, reply.text
        me: dict[str, Any] = reply.json()
        return me

    def order(
        self, user_id: str, package_id: str = "us_550", region: str = "US", provider: str | None = None
    ) -> dict[str, Any]:
        body = {"package_id": package_id, "region": region}
        if provider is not None:
            body["provider"] = provider
        reply = self.http.post("/v1/purchases", json=body, headers=self.auth(user_id))
        assert reply.status_code == 201, reply.text
        order: dict[str, Any] = reply.json()
        return order

    def pay(self, user_id: str, order_id: str) -> httpx.Response:
        return self.http.post(f"/v1/sandbox/orders/{order_id}/pay", headers=self.auth(user_id))

    def buy(self, user_id: str, package_id: str = "us_550", region: str = "US") -> dict[str, Any]:
        """An order paid through the sandbox (demo mode)."""
        order = self.order(user_id, package_id, region, "sandbox")
        reply = self.pay(user_id, order["order_id"])
        assert reply.status_code == 200, reply.text
        return order

    def wallet(self, user_id: str) -> dict[str, Any]:
        reply = self.http.get("/v1/wallet", headers=self.auth(user_id))
        assert reply.status_code == 200, reply.text
        wallet: dict[str, Any] = reply.json()
        return wallet

    def coins(self, user_id: str) -> int:
        return int(self.wallet(user_id)["coins"])

    def ledger(self, user_id: str, page: int = 200) -> list[dict[str, Any]]:
        """Every ledger entry of the user, newest first, following cursors."""
        return self._pages("/v1/wallet/ledger", self.auth(user_id), page)

    def earnings(self, creator_id: str) -> dict[str, Any]:
        reply = self.http.get("/v1/creator/earnings", headers=self.auth(creator_id, "creator"))
        assert reply.status_code == 200, reply.text
        earnings: dict[str, Any] = reply.json()
        return earnings

    def earnings_ledger(self, creator_id: str) -> list[dict[str, Any]]:
        return self._pages("/v1/creator/earnings/ledger", self.auth(creator_id, "creator"), 200)

    def open_room(self, creator_id: str, title: str | None = None) -> str:
        body = {} if title is None else {"title": title}
        reply = self.http.post("/v1/rooms", json=body, headers=self.auth(creator_id, "creator"))
        assert reply.status_code == 201, reply.text
        room_id: str = reply.json()["room_id"]
        return room_id

    def end_room(self, creator_id: str, room_id: str) -> httpx.Response:
        return self.http.post(f"/v1/rooms/{room_id}/end", headers=self.auth(creator_id, "creator"))

    def gift(
        self, user_id: str, room_id: str, gift_id: str, count: int = 1, key: str | None = None
    ) -> httpx.Response:
        body = {"gift_id": gift_id, "count": count, "idempotency_key": key or unique("k")}
        return self.http.post(f"/v1/rooms/{room_id}/gifts", json=body, headers=self.auth(user_id))

    def _pages(self, path: str, headers: dict[str, str], page: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": page}
            if cursor:
                params["cursor"] = cursor
            reply = self.http.get(path, params=params, headers=headers)
            assert reply.status_code == 200, reply.text
            body = reply.json()
            entries += body["entries"]
            cursor = body["next_cursor"]
            if cursor is None:
                return entries


def webhook(
    api: Api,
    order: dict[str, Any],
    payment_id: str,
    *,
    amount: int | None = None,
    currency: str | None = None,
    secret: str = WEBHOOK_SECRET,
    at: int | None = None,
    event_type: str = "payment.succeeded",
) -> httpx.Response:
    body = orjson.dumps(
        {
            "id": unique("evt_"),
            "type": event_type,
            "data": {
                "order_id": order["order_id"],
                "payment_id": payment_id,
                "amount_minor": order["price"]["amount_minor"] if amount is None else amount,
                "currency": currency or order["price"]["currency"],
            },
        }
    )
    header = webhooks.sign(body, secret, int(time.time()) if at is None else at)
    return api.http.post("/v1/payments/webhook", content=body, headers={webhooks.HEADER: header})


def start_battle(api: Api, inviter: str, opponent: str, duration_s: int = 60) -> dict[str, Any]:
    """A running battle between two live creators: invited by one and accepted by the other
    through the API (the dashboards do the same with their buttons)."""
    invited = api.http.post(
        "/v1/battles",
        json={"opponent_id": opponent, "duration_s": duration_s},
        headers=api.auth(inviter, "creator"),
    )
    assert invited.status_code == 201, invited.text
    battle_id = invited.json()["battle_id"]
    accepted = api.http.post(f"/v1/battles/{battle_id}/accept", headers=api.auth(opponent, "creator"))
    assert accepted.status_code == 200, accepted.text
    battle: dict[str, Any] = accepted.json()
    assert battle["state"] == "running", battle
    return battle
