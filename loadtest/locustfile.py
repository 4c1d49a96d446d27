"""Locust users for a live room: viewers, gifters and creators speaking the room WebSocket protocol.

``bench_room`` answers fixed questions on one machine with hand-made sinks; this file is for
the open-ended kind of load test an operator runs against a deployment, with Locust's
ramp-up, live web UI, CSV/HTML reports and ``--processes`` or master/workers for more cores.

Locust runs on gevent, so the sockets are ``websocket-client`` (plain blocking sockets that
gevent's monkey-patching makes cooperative) rather than an asyncio client. Each connection
has one reader greenlet; the user's own greenlet only sends.

Users (the counts come from ``-u`` and the weights below):

``Creator`` (``--creators``, a fixed count, default 1)
    With ``--room new`` each one goes live in a room of its own and ends it when the test
    stops. With named rooms it takes the room's creator, checks the room is live and stays
    connected like a streamer's dashboard, polling its earnings. With ``--battle <duration_s>``
    the creators pair up (this run's, or the named rooms', in the order of their ids: the
    first invites the second, the third the fourth, ...) and battle, again each time their
    last battle has ended: the invitee finds the invitation on ``GET /v1/me/battle`` and
    accepts it. ``--room new --creators 2 --battle 60`` is the battle scenario: two lives
    linked, viewers and gifters dealt out to both rooms in turn.
``Viewer`` (``--viewer-weight``, default 9)
    Joins a room and reports every frame as Locust request events (request type ``WS``):
    ``gift delivered`` per gift event, its time being ``now - ts`` (``ts`` is the engine's
    clock: the figure is only meaningful with load and server on the same clock, and is
    whole-ms truncated); ``batch`` per batch frame, its size the frame's bytes and its time
    the age of its oldest timestamped event (0 for a batch of only leaderboard, goal or
    viewer changes), so a batch's time is its worst delivery; ``battle`` per ``battle``
    event (a running battle's new scores), its time ``now - server_ms`` (the engine's clock
    when the scores were read), and ``battle_end`` per ``battle_end`` event; ``ping`` the round trip of
    an application ``ping`` every ``--ping-every`` seconds; ``connect`` the handshake up to
    the ``welcome`` frame; ``chat delivered`` per chat event, timed like ``gift delivered``.
    It also talks, each on an open-loop schedule like a Gifter's: ``--chat-rate`` chat
    messages/s, each a ``chat_ack`` event (send to ack; an ``error`` answer is a failure
    whose error is the code, ``ChatRefused: rate_limited``, and unanswered messages are sent
    again with the same ``client_id`` after a reconnect), and ``--like-rate`` likes/s sent
    as ``like`` frames of ``--like-count`` taps, each a ``like`` event (the time to write
    the frame, the taps as its size: the server answers likes only with the room's
    ``likes`` events; a frame that could not be written, or an ``error`` about one, is a
    failure).
``Gifter`` (``--gifter-weight``, default 1)
    Buys ``--coins-package`` through the sandbox (again whenever its balance cannot cover
    the dearest gift of the mix), joins a room and sends ``--gift-rate`` gifts/s picked by
    ``--gift-mix`` as ``gift`` frames, on a fixed schedule rather than waiting for each ack
    (an open loop, so a slow server shows as latency instead of a lower offered rate).
    One send in 21 is instead a gift over HTTP on the newest video of the room's creator
    (``POST /v1/videos/[video_id]/gifts``; each Creator publishes one as it starts).
    ``gift_ack`` is the send-to-ack time; an ``error`` answer is a failure of ``gift_ack``
    whose error is the code (``GiftRefused: rate_limited``), so the failures table counts
    refusals by code.

User ids are ``lt<run><kind><process><n>``, unique per process (pid plus a random tag, for
workers on other machines) so that several processes never share a wallet or a rate limit.
A dropped connection is reported as a ``WS closed`` failure and resumed with
``since``/``epoch``; gifts not yet acknowledged are sent again with the same keys.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless \\
        -u 60 -r 20 -t 1m --csv var/locust --html var/locust.html
        [--room demo_carol | --room a,b | --room new] [--creators 1]
        [--viewer-weight 9] [--gifter-weight 1] [--gift-rate 2]
        [--gift-mix rose:5,finger_heart:3,doughnut:1] [--coins-package us_5450]
        [--ping-every 5] [--chat-rate 0.1] [--like-rate 2] [--like-count 5] [--processes 4]
        [--battle 60]
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import gevent
import websocket
from locust import HttpUser, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import STATE_CLEANUP, STATE_STOPPED, STATE_STOPPING

SUBPROTOCOL = "gifting.v1.json"
# The window a restarting server's 1012 reason names, in ms (docs/PROTOCOL.md, "Resume").
RESTART_WINDOW = re.compile(rb"reconnect within (\d+) ms")
# Close codes after which reconnecting is pointless (docs/PROTOCOL.md, "Resume").
FINAL_CLOSES = {1000, 4401, 4404, 4410}
MAX_PENDING = 1000  # unanswered gifts a Gifter keeps before it counts them lost
WINDING_DOWN = {STATE_STOPPING, STATE_STOPPED, STATE_CLEANUP}
DEFAULT_MIX = "rose:5,finger_heart:3,doughnut:1"
# Per-process part of every user id: the pid tells forked --processes apart, the random
# part tells workers on different machines apart.
_PROCESS_RANDOM = uuid.uuid4().hex[:4]
_COUNTER = itertools.count()
# Each kind of user is dealt out to the rooms in turn, so both rooms of a battle get gifters.
_ROOM_TURNS: dict[str, itertools.count[int]] = {}
# Answers to a Creator's battle calls that are races, not failures: the opponent is not live
# yet or still closing its last battle, the invitation was answered or lapsed meanwhile.
BATTLE_RACES = {"not_live", "already_in_battle", "battle_lapsed", "battle_not_invited"}


# A Gifter sends one gift on a video for every this many gifts in its live.
VIDEO_GIFT_ODDS = 20


class GiftRefused(Exception):
    """A gift answered with an ``error`` frame; its text is the code, so failures group by code."""


class ChatRefused(Exception):
    """A chat message answered with an ``error`` frame; its text is the code."""


class LikeRefused(Exception):
    """A ``like`` frame answered with an ``error`` frame, or that could not be written."""


class ConnectionLost(Exception):
    """The server closed the room socket (or it broke) while the test was running."""


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]  # locust's hooks are untyped
def add_arguments(parser: LocustArgumentParser) -> None:
    group = parser.add_argument_group("gifting room load")
    group.add_argument(
        "--room",
        default="demo_carol",
        help="live room id(s) to load, comma-separated; 'new': each Creator opens a room of its own",
    )
    group.add_argument("--creators", type=int, default=1, help="Creator users (a fixed count, >= 0)")
    group.add_argument("--viewer-weight", type=int, default=9, help="weight of Viewer users")
    group.add_argument("--gifter-weight", type=int, default=1, help="weight of Gifter users")
    group.add_argument("--gift-rate", type=float, default=2.0, help="gifts per second per Gifter")
    group.add_argument("--gift-mix", default=DEFAULT_MIX, help="gift_id:weight,... the Gifters pick from")
    group.add_argument("--gift-count", type=int, default=1, help="count of each gift frame (1-999)")
    group.add_argument("--coins-package", default="us_5450", help="coin package each Gifter buys")
    group.add_argument("--ping-every", type=float, default=5.0, help="Viewer ping interval, s (0: none)")
    group.add_argument(
        "--chat-rate", type=float, default=0.1, help="chat messages per second per Viewer (0: none)"
    )
    group.add_argument("--like-rate", type=float, default=2.0, help="likes per second per Viewer (0: none)")
    group.add_argument("--like-count", type=int, default=5, help="taps in each like frame (1-15)")
    group.add_argument(
        "--battle",
        type=int,
        default=0,
        help="Creators pair up and battle for this many seconds (60-600), again when it ends; 0: no battles",
    )
    group.add_argument(
        "--run-id",
        default=uuid.uuid4().hex[:6],
        help="prefix of this run's user ids; workers get the master's",
    )


@events.init.add_listener  # type: ignore[untyped-decorator]
def apply_counts(environment: Environment, **_: Any) -> None:
    """Turn the user-count options into Locust's class attributes before anything spawns.

    The master's dispatcher reads ``fixed_count`` and ``weight``; a weight of 0 keeps a
    class out entirely, which is how ``--creators 0`` works.
    """
    options = environment.parsed_options
    if options is None:
        return
    Creator.fixed_count = max(0, options.creators)
    Viewer.weight = max(0, options.viewer_weight)
    Gifter.weight = max(0, options.gifter_weight)


def parse_mix(text: str) -> tuple[list[str], list[int]]:
    """``rose:5,doughnut:1`` -> (["rose", "doughnut"], [5, 1]); a bare id weighs 1."""
    gifts: list[str] = []
    weights: list[int] = []
    for part in text.split(","):
        if not part.strip():
            continue
        gift, _, weight = part.strip().partition(":")
        gifts.append(gift)
        weights.append(int(weight) if weight else 1)
    if not gifts or min(weights) < 0 or sum(weights) == 0:
        raise ValueError(f"--gift-mix needs gift_id:weight,... with a positive weight: {text!r}")
    return gifts, weights


def new_user_id(run_id: str, kind: str) -> str:
    return f"lt{run_id}{kind}{os.getpid():x}{_PROCESS_RANDOM}n{next(_COUNTER)}"


class RoomUser(HttpUser):
    """A user with a token and one room socket; subclasses say what each frame means to them.

    HTTP calls go through Locust's client, so tokens, purchases and room calls show in the
    same report as the socket's events.
    """

    abstract = True
    role: ClassVar[str] = "viewer"
    kind: ClassVar[str] = "u"

    def on_start(self) -> None:
        options = self.environment.parsed_options
        assert options is not None
        self.options = options
        self.stopping = False
        self.ws: websocket.WebSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.epoch: str | None = None
        self.offset: str | None = None
        self.pings: list[float] = []
        if not hasattr(self, "user_id"):
            self.user_id = new_user_id(options.run_id, self.kind)
        self.token = self.get_token(self.user_id, self.role)
        self.prepare()
        self.room_id = self.choose_room()
        self.connect()

    def prepare(self) -> None:
        """Anything to do between getting the token and joining (a Gifter buys coins)."""

    def on_stop(self) -> None:
        """Stop the reader first, so that close() is the only greenlet reading the socket."""
        self.stopping = True
        if self.reader is not None:
            self.reader.kill(block=True)
            self.reader = None
        ws, self.ws = self.ws, None
        if ws is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                ws.close(timeout=1)

    # ---- HTTP -------------------------------------------------------------------------

    def get_token(self, user_id: str, role: str) -> str:
        with self.client.post(
            "/v1/dev/token", json={"user_id": user_id, "role": role}, catch_response=True
        ) as reply:
            if reply.status_code != 200:
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")
                raise StopUser()
            return str(reply.json()["token"])

    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def choose_room(self) -> str:
        """A room for this user: each kind of user in turn over the named rooms, or over this
        run's new rooms once every Creator's is live (or 10 s have passed)."""
        turn = next(_ROOM_TURNS.setdefault(self.kind, itertools.count()))
        if self.options.room != "new":
            rooms: list[str] = [room for room in self.options.room.split(",") if room]
            return rooms[turn % len(rooms)]
        prefix = f"lt{self.options.run_id}c"
        started = time.monotonic()
        while time.monotonic() < started + 30 and not self.stopping:
            reply = self.client.get("/v1/rooms")
            if reply.status_code == 200:
                ours = sorted(
                    r["room_id"] for r in reply.json()["rooms"] if r["creator_id"].startswith(prefix)
                )
                if ours and (len(ours) >= self.options.creators or time.monotonic() > started + 10):
                    return str(ours[turn % len(ours)])
            gevent.sleep(0.5)
        self.fire("rooms", 0, error=ConnectionLost("no room of this run went live within 30 s"))
        raise StopUser()

    # ---- the room socket --------------------------------------------------------------

    def fire(self, name: str, response_time: float, length: int = 0, error: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=response_time,
            response_length=length,
            exception=error,
            context={},
        )

    def ws_url(self) -> str:
        parts = urlsplit(self.host or "")
        scheme = "wss" if parts.scheme == "https" else "ws"
        query: dict[str, str] = {"token": self.token}
        if self.epoch and self.offset:
            query.update(since=self.offset, epoch=self.epoch)
        path = f"{parts.path.rstrip('/')}/v1/rooms/{self.room_id}/ws"
        return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))

    def connect(self) -> None:
        """Open the socket, wait for ``welcome`` (reported as ``connect``), start the reader."""
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(
                self.ws_url(), timeout=10, subprotocols=[SUBPROTOCOL], enable_multithread=True
            )
            welcome = json.loads(ws.recv())
        except (OSError, websocket.WebSocketException, ValueError) as error:
            self.fire("connect", (time.perf_counter() - started) * 1000, error=error)
            raise StopUser() from None
        if welcome.get("type") != "welcome":
            self.fire("connect", (time.perf_counter() - started) * 1000, error=ConnectionLost(str(welcome)))
            ws.close(timeout=1)
            raise StopUser()
        ws.settimeout(None)
        self.fire("connect", (time.perf_counter() - started) * 1000)
        self.ws = ws
        self.epoch, self.offset = welcome["epoch"], welcome["offset"]
        self.reader = gevent.spawn(self.read)
        self.connected()

    def connected(self) -> None:
        """Called after each (re)connection."""

    def resend(self, texts: list[str]) -> None:
        """Send ``texts`` again on the new socket, stopping at the first that fails (the
        reader then reports the close and reconnects, which resends them again)."""
        ws = self.ws
        assert ws is not None
        for text in texts:
            try:
                ws.send(text)
            except (OSError, websocket.WebSocketException):
                return

    def read(self) -> None:
        """The reader greenlet: every frame to ``on_frame`` until the socket closes."""
        code: int | None = None
        reason = b""
        ws = self.ws
        assert ws is not None
        try:
            while True:
                opcode, data = ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                    reason = data[2:]
                    break
                self.on_frame(json.loads(data), len(data))
        except (OSError, websocket.WebSocketException, ValueError) as error:
            if not self.winding_down():
                self.fire("WS closed", 0, error=ConnectionLost(f"{type(error).__name__}: {error}"))
        else:
            if not self.winding_down():
                self.fire("WS closed", 0, error=ConnectionLost(f"close {code}"))
        if self.winding_down() or code in FINAL_CLOSES:
            return
        # This greenlet stays self.reader until connect() starts the next one, so that
        # on_stop can still kill it while it waits. A restarting server's 1012 names the
        # window to spread the return over (docs/PROTOCOL.md, "Resume").
        window = RESTART_WINDOW.search(reason) if code == 1012 else None
        gevent.sleep(0.5 + (random.random() * int(window[1]) / 1000 if window else 0.0))
        with contextlib.suppress(StopUser):
            self.connect()

    def winding_down(self) -> bool:
        """True once this user or the whole test is stopping.

        A Creator ends its room in its own on_stop, possibly before the viewers of that room
        have stopped: their close 1000 then is the end of the test, not a failure.
        """
        runner = self.environment.runner
        return self.stopping or (runner is not None and runner.state in WINDING_DOWN)

    def on_frame(self, frame: dict[str, Any], size: int) -> None:
        kind = frame.get("type")
        if kind == "batch":
            self.offset = frame["offset"]
            self.on_batch(frame, size)
        elif kind == "pong" and self.pings:
            self.fire("ping", (time.perf_counter() - self.pings.pop(0)) * 1000)
        elif kind == "welcome":  # after a resync
            self.epoch, self.offset = frame["epoch"], frame["offset"]

    def on_batch(self, frame: dict[str, Any], size: int) -> None:
        """Viewers report batches and deliveries; other users only keep the offset."""

    def send(self, message: dict[str, Any]) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            ws.send(json.dumps(message, separators=(",", ":")))
        except (OSError, websocket.WebSocketException):
            return False  # the reader reports the close and reconnects
        return True


@dataclass
class Every:
    """One action of a Viewer's open-loop schedule: due at ``due``, then every ``interval`` s."""

    interval: float
    action: Callable[[], None]
    due: float


class Viewer(RoomUser):
    """Watches a room, reports every delivery, batch and ping, and chats and likes."""

    weight = 9
    kind = "v"

    def prepare(self) -> None:
        options = self.options
        self.chat_pending: dict[str, tuple[float, str]] = {}
        self.chat_sequence = itertools.count()
        now = time.monotonic()
        rates = (
            (1 / options.ping_every if options.ping_every > 0 else 0.0, self.ping),
            (options.chat_rate, self.send_chat),
            (options.like_rate / max(1, options.like_count), self.send_like),
        )
        # A random first due time, so that the viewers' sends spread over each interval.
        self.schedule = [
            Every(1 / rate, action, now + random.random() / rate) for rate, action in rates if rate > 0
        ]

    def wait_time(self) -> float:
        """Until the next action is due (not catching up more than 1 s, as a Gifter)."""
        if not self.schedule:
            return 3600.0
        return max(0.0, min(entry.due for entry in self.schedule) - time.monotonic())

    @task
    def act(self) -> None:
        now = time.monotonic()
        for entry in self.schedule:
            if entry.due <= now:
                entry.action()
                entry.due = max(entry.due + entry.interval, now - 1)

    def ping(self) -> None:
        if len(self.pings) < 10:
            self.pings.append(time.perf_counter())
            if not self.send({"type": "ping"}):
                self.pings.pop()

    def send_chat(self) -> None:
        if len(self.chat_pending) >= MAX_PENDING:
            self.fire("chat_ack", 0, error=ChatRefused(f"{len(self.chat_pending)} messages unanswered"))
            self.chat_pending.clear()
        number = next(self.chat_sequence)
        client_id = f"{self.user_id}.{number}"
        text = json.dumps(
            {"type": "chat", "text": f"hello from {self.user_id} #{number}", "client_id": client_id},
            separators=(",", ":"),
        )
        self.chat_pending[client_id] = (time.perf_counter(), text)
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                ws.send(text)  # if this fails, connected() sends it again after the reconnect

    def send_like(self) -> None:
        count: int = self.options.like_count
        started = time.perf_counter()
        if self.send({"type": "like", "count": count}):
            self.fire("like", (time.perf_counter() - started) * 1000, count)
        else:
            self.fire("like", 0, count, LikeRefused("socket not open"))

    def connected(self) -> None:
        """Resend the chat messages never answered, with the same ids: each posts once."""
        self.resend([text for _, text in self.chat_pending.values()])

    def on_frame(self, frame: dict[str, Any], size: int) -> None:
        kind = frame.get("type")
        if kind == "chat_ack":
            sent = self.chat_pending.pop(frame["client_id"], None)
            if sent is not None:
                self.fire("chat_ack", (time.perf_counter() - sent[0]) * 1000, size)
        elif kind == "error":
            sent = self.chat_pending.pop(frame.get("client_id") or "", None)
            code = str(frame.get("code"))
            if sent is not None:
                self.fire("chat_ack", (time.perf_counter() - sent[0]) * 1000, size, ChatRefused(code))
            else:  # a like frame (the only other frame a Viewer sends that an error can answer)
                self.fire("like", 0, size, LikeRefused(code))
        else:
            super().on_frame(frame, size)

    def on_batch(self, frame: dict[str, Any], size: int) -> None:
        now_ms = time.time() * 1000
        stamps = [event["ts"] for event in frame["events"] if "ts" in event]
        self.fire("batch", max(0.0, now_ms - min(stamps)) if stamps else 0.0, size)
        for event in frame["events"]:
            kind = event.get("type")
            if kind == "gift":
                self.fire("gift delivered", max(0.0, now_ms - event["ts"]))
            elif kind == "chat":
                self.fire("chat delivered", max(0.0, now_ms - event["ts"]))
            elif kind == "battle":
                self.fire("battle", max(0.0, now_ms - event["server_ms"]))
            elif kind == "battle_end":
                self.fire("battle_end", 0.0)


class Gifter(RoomUser):
    """Buys coins, then sends gifts over its room socket at a fixed rate."""

    weight = 1
    kind = "g"

    def prepare(self) -> None:
        self.gifts, self.mix = parse_mix(self.options.gift_mix)
        catalog = self.client.get("/v1/catalog/gifts").json()["gifts"]
        prices = {gift["id"]: int(gift["coins"]) for gift in catalog}
        unknown = [gift for gift in self.gifts if gift not in prices]
        if unknown:
            self.fire("gift mix", 0, error=GiftRefused(f"unknown gifts {unknown}"))
            raise StopUser()
        self.dearest = max(prices[gift] for gift in self.gifts) * self.options.gift_count
        self.coins = 0
        self.sequence = itertools.count()
        self.pending: dict[str, tuple[float, str]] = {}
        self.next_send = time.monotonic()
        self.video_id: str | None = None
        self.buy()

    def buy(self) -> None:
        package: str = self.options.coins_package
        region = package.partition("_")[0].upper()
        reply = self.client.post(
            "/v1/purchases",
            # Paid through the demo sandbox below, whichever provider the server takes on the web.
            json={"package_id": package, "region": region, "provider": "sandbox"},
            headers=self.auth(),
        )
        if reply.status_code == 201:
            order_id = reply.json()["order_id"]
            self.client.post(
                f"/v1/sandbox/orders/{order_id}/pay",
                headers=self.auth(),
                name="/v1/sandbox/orders/[order_id]/pay",
            )
        wallet = self.client.get("/v1/wallet", headers=self.auth())
        if wallet.status_code == 200:
            self.coins = int(wallet.json()["coins"])

    def wait_time(self) -> float:
        """The open-loop schedule: one gift every 1/rate s, not catching up more than 1 s."""
        self.next_send += 1 / self.options.gift_rate
        now = time.monotonic()
        if self.next_send < now - 1:
            self.next_send = now
        return max(0.0, self.next_send - now)

    @task(VIDEO_GIFT_ODDS)
    def send_gift(self) -> None:
        if self.coins < self.dearest:
            self.buy()
        if len(self.pending) >= MAX_PENDING:
            # Answers that never come (an error without a key, a server that stopped
            # answering) must not pile up to be resent on the next reconnect.
            self.fire("gift_ack", 0, error=GiftRefused(f"{len(self.pending)} gifts unanswered"))
            self.pending.clear()
        key = f"{self.user_id}.{next(self.sequence)}"
        gift_id = random.choices(self.gifts, self.mix)[0]
        message = {
            "type": "gift",
            "gift_id": gift_id,
            "count": self.options.gift_count,
            "idempotency_key": key,
        }
        text = json.dumps(message, separators=(",", ":"))
        self.pending[key] = (time.perf_counter(), text)
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                ws.send(text)  # if this fails, connected() sends it again after the reconnect

    @task(1)
    def send_video_gift(self) -> None:
        """Now and then a gift on a video of the room's creator instead, over HTTP: the same
        debit and credit as a gift in the live, answered with the same body."""
        video_id = self.video()
        if video_id is None:
            return  # the creator has published none yet
        if self.coins < self.dearest:
            self.buy()
        body = {
            "gift_id": random.choices(self.gifts, self.mix)[0],
            "count": self.options.gift_count,
            "idempotency_key": f"{self.user_id}.{next(self.sequence)}",
        }
        with self.client.post(
            f"/v1/videos/{video_id}/gifts",
            json=body,
            headers=self.auth(),
            name="/v1/videos/[video_id]/gifts",
            catch_response=True,
        ) as reply:
            if reply.status_code == 200:
                self.coins = int(reply.json()["coins"])
            else:
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")

    def video(self) -> str | None:
        """The newest video of the room's creator, looked up once it exists."""
        if self.video_id is None:
            room = self.client.get(f"/v1/rooms/{self.room_id}", name="/v1/rooms/[room_id]")
            if room.status_code != 200:
                return None
            creator_id = room.json()["creator_id"]
            path = f"/v1/creators/{creator_id}/videos"
            reply = self.client.get(path, name="/v1/creators/[creator_id]/videos")
            videos = reply.json()["videos"] if reply.status_code == 200 else []
            self.video_id = str(videos[0]["id"]) if videos else None
        return self.video_id

    def connected(self) -> None:
        """Resend what was never answered, with the same keys: the server charges each once."""
        self.resend([text for _, text in self.pending.values()])

    def on_frame(self, frame: dict[str, Any], size: int) -> None:
        kind = frame.get("type")
        if kind == "gift_ack":
            sent = self.pending.pop(frame["idempotency_key"], None)
            self.coins = int(frame["coins"])
            if sent is not None:
                self.fire("gift_ack", (time.perf_counter() - sent[0]) * 1000, size)
        elif kind == "error":
            sent = self.pending.pop(frame.get("idempotency_key") or "", None)
            elapsed = 0.0 if sent is None else (time.perf_counter() - sent[0]) * 1000
            if frame.get("code") == "insufficient_coins":
                self.coins = 0  # buy before the next gift
            self.fire("gift_ack" if sent else "WS error", elapsed, size, GiftRefused(str(frame.get("code"))))
        elif kind == "balance":
            self.coins = int(frame["coins"])
        else:
            super().on_frame(frame, size)


class Creator(RoomUser):
    """Goes live (``--room new``) or takes a named room's creator, and stays connected."""

    fixed_count = 1
    weight = 0
    role = "creator"
    kind = "c"

    def on_start(self) -> None:
        options = self.environment.parsed_options
        assert options is not None
        self.opened: str | None = None
        if options.room != "new":
            rooms: list[str] = [room for room in options.room.split(",") if room]
            self.named: str = rooms[next(_COUNTER) % len(rooms)]
            reply = self.client.get(f"/v1/rooms/{self.named}", name="/v1/rooms/[room_id]")
            if reply.status_code != 200 or reply.json()["state"] != "live":
                self.fire("room", 0, error=ConnectionLost(f"room {self.named} is not live"))
                raise StopUser()
            self.user_id = str(reply.json()["creator_id"])
        super().on_start()

    def choose_room(self) -> str:
        if self.options.room != "new":
            return self.named
        with self.client.post(
            "/v1/rooms", json={"title": "load test"}, headers=self.auth(), catch_response=True
        ) as reply:
            if reply.status_code != 201:
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")
                raise StopUser()
            self.opened = str(reply.json()["room_id"])
            return self.opened

    def prepare(self) -> None:
        """Publish a video, for the Gifters to send an occasional gift on."""
        body = {"title": "load test video", "url": "https://videos.example/load-test.mp4"}
        self.client.post("/v1/videos", json=body, headers=self.auth())

    def wait_time(self) -> float:
        return 1.0 if self.options.battle else 5.0

    @task
    def act(self) -> None:
        """Poll the earnings every 5 s and, with ``--battle``, keep a battle going."""
        now = time.monotonic()
        if now >= getattr(self, "next_earnings", 0.0):
            self.next_earnings = now + 5.0
            self.client.get("/v1/creator/earnings", headers=self.auth())
        if self.options.battle:
            self.battle()

    def battle(self) -> None:
        """Accept an invitation waiting for this creator, or invite this creator's pair (the
        next in the order of ids, if this one is first of its pair) when neither is in one."""
        reply = self.client.get("/v1/me/battle", headers=self.auth())
        if reply.status_code != 200:
            return
        battle = reply.json()["battle"]
        if battle is not None:
            if battle["state"] == "invited" and battle["inviter"] != self.user_id:
                self.battle_call(f"/v1/battles/{battle['battle_id']}/accept", None)
            return
        peers = self.peers()
        if self.user_id in peers:
            mine = peers.index(self.user_id)
            if mine % 2 == 0 and mine + 1 < len(peers):
                self.battle_call(
                    "/v1/battles", {"opponent_id": peers[mine + 1], "duration_s": self.options.battle}
                )

    def peers(self) -> list[str]:
        """The creators that pair up, live now, in the order of their ids."""
        reply = self.client.get("/v1/rooms")
        if reply.status_code != 200:
            return []
        rooms = reply.json()["rooms"]
        if self.options.room == "new":
            prefix = f"lt{self.options.run_id}c"
            return sorted(r["creator_id"] for r in rooms if r["creator_id"].startswith(prefix))
        named = set(self.options.room.split(","))
        return sorted(r["creator_id"] for r in rooms if r["room_id"] in named)

    def battle_call(self, path: str, body: dict[str, Any] | None) -> None:
        name = path if body is not None else "/v1/battles/[battle_id]/accept"
        with self.client.post(path, json=body, headers=self.auth(), name=name, catch_response=True) as reply:
            if reply.status_code == 409 and reply.json()["error"]["code"] in BATTLE_RACES:
                reply.success()
            elif reply.status_code not in (200, 201):
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")

    def on_stop(self) -> None:
        """End only a room this user opened; a named room (the demo's) stays live."""
        super().on_stop()
        if self.opened is not None:
            self.client.post(
                f"/v1/rooms/{self.opened}/end", headers=self.auth(), name="/v1/rooms/[room_id]/end"
            )
