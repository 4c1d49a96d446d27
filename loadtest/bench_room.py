"""Live rooms: gift delivery over the room WebSocket, fan-out against a bare broadcaster, idle memory.

Each scenario starts its own embedded engine and a real ``python -m server`` process (demo
mode, through ``loadtest.bench_gift.running_server``, so the per-user gift rate limit is set
out of the way), and measures the server's CPU and RSS from /proc beside the load's own.

storm
    One room (``demo_carol``), ``--storm-viewers`` viewers (2,000) on the JSON subprotocol, and
    ``--storm-rate`` gifts/s (500) for ``--storm-seconds`` (20) sent as ``gift`` frames over
    the WebSocket by ``--storm-gifters`` connections (50 users, each with coins bought
    through the real purchase and sandbox payment). The sends are paced on one schedule, not
    as fast as acks return. It answers "does every viewer see every gift, and how late": for
    every viewer the distinct gift event ids received are compared with the ids the gifters
    got acknowledged (the completeness must be 100 %: the minimum over viewers and the
    number of complete viewers are reported), gift-to-viewer latency is the receive time
    minus the event's ``ts`` (the engine's clock in ms, the same machine clock, so latencies
    are whole-ms-truncated and may read up to 1 ms high) on every ``--sample-every``-th viewer,
    and the ack latency is send to ``gift_ack`` at the gifter. Errors are counted by code.

fanout
    Frames/s and gift events/s delivered into rooms of ``--fanout-sizes`` viewers (1,000,
    5,000, 10,000), with the server on ``GIFTING_TICK_MS=5`` and ``--fanout-rate`` gifts/s
    (200) so that every tick has a batch to send. The ceiling is a bare ``websockets``
    asyncio server in its own process that ``broadcast()``s a frame of the same size (a
    batch frame of the median size seen in the server's first round, byte for byte) to the
    same number of sinks in a tight loop (``broadcast`` then ``await asyncio.sleep(0)``):
    one Python process writing one pre-built frame to every connection, nothing else.
    The ratio server/bare is how much of that the hub delivers while it also reads the
    room's stream, refreshes its state and takes gifts. ``broadcast`` has no flow control,
    so when the sinks are slower than the loop it would queue without bound; the loop
    therefore also waits 1 ms while any of 16 probed connections has more than
    ``--bare-inflight`` bytes unsent (kernel send queue + transport buffer), and reports the
    share of its time spent waiting: a high share means the bare figure is the sinks' limit.
    Server and bare rounds alternate (``--fanout-rounds``, medians reported) on the same
    sinks, which stay connected to both throughout (the idle one costs nothing).

connections
    ``--connections`` (10,000) idle viewers in one room: the server's RSS before and after,
    the memory per connection (RSS delta / N, goal <= 20 KiB), the connect rate (handshakes
    completed including the ``welcome`` frame, per second, ``--connect-concurrency``
    handshakes in flight per load process) and the server's CPU while they sit idle.

The sinks are not ``websockets`` clients (a client object per viewer would cost more than the
server): ``Sink`` is an ``asyncio.Protocol`` (on uvloop) that sends the Upgrade request, reads
the 101 and then only parses frame headers, answers pings and counts frames and bytes.
Server frames are encoded once and written to every viewer as the same bytes, so each
distinct payload is parsed once per load process (``FrameBook``) and a viewer only looks it
up; a viewer keeps the list of frames it got, so the distinct gift ids of every viewer are
known exactly (viewers with the same frames are grouped). Sinks run in ``--sink-procs``
processes (2) separate from the gifters, each socket with a 32 KiB receive buffer (bounding
kernel memory over 10,000 sockets) and closed with RST (no TIME_WAIT left behind).

    .venv/bin/python -m loadtest.bench_room [--scenarios storm,fanout,connections]
        [--storm-viewers 2000] [--storm-rate 500] [--storm-seconds 20] [--storm-gifters 50]
        [--fanout-sizes 1000,5000,10000] [--fanout-rate 200] [--fanout-seconds 5]
        [--fanout-rounds 3] [--connections 10000] [--sink-procs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import datetime as dt
import fcntl
import json
import math
import multiprocessing
import os
import platform
import resource
import socket
import statistics
import struct
import sys
import tempfile
import termios
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import orjson

from loadtest.bench_gift import (
    ROOM_ID,
    BenchError,
    CpuMeter,
    Sender,
    expect,
    http_client,
    new_sender,
    percentile,
    positive_float,
    positive_int,
    running_server,
    skip_missing_sniffio,
    top_up,
)
from server.engine import EmbeddedEngine, free_port

T = TypeVar("T")

SUBPROTOCOL = "gifting.v1.json"
GIFT_ID = "rose"
SINK_RCVBUF = 32 * 1024
SERVER_BUFFER_BYTES = 256 * 1024  # GIFTING_WS_BUFFER_BYTES's default, also given to the bare server
BARE_PROBES = 16
CONNECT_TIMEOUT_S = 60.0
ACK_TIMEOUT_S = 15.0
DRAIN_IDLE_S = 5.0
DRAIN_MAX_S = 60.0


# --- a minimal WebSocket client ------------------------------------------------------------


def upgrade_request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
    ).encode()


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client-to-server frame (FIN set, masked as RFC 6455 requires of clients)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    mask = os.urandom(4)
    if not size:
        return header + mask
    key = (mask * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return header + mask + body


class FrameBook:
    """Every distinct frame payload one load process has received, parsed once.

    The server writes the same bytes to every viewer of a room, so a viewer's frame is looked
    up here by its bytes and only the first viewer to get it pays for parsing it.
    """

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.gifts: list[int] = []
        self.ids: list[tuple[str, ...]] = []
        self.ts: list[tuple[int, ...]] = []
        self.first_seen: list[float] = []
        self.payloads: list[bytes] = []

    def lookup(self, payload: bytes) -> int:
        number = self.index.get(payload)
        if number is None:
            number = self._add(payload)
        return number

    def _add(self, payload: bytes) -> int:
        ids: tuple[str, ...] = ()
        stamps: tuple[int, ...] = ()
        if b'"type":"batch"' in payload[:24]:
            events = [e for e in orjson.loads(payload).get("events", ()) if e.get("type") == "gift"]
            ids = tuple(str(e["event_id"]) for e in events)
            stamps = tuple(int(e["ts"]) for e in events)
        number = len(self.gifts)
        self.index[payload] = number
        self.gifts.append(len(ids))
        self.ids.append(ids)
        self.ts.append(stamps)
        self.first_seen.append(time.time())
        self.payloads.append(payload if ids else b"")
        return number


@dataclass
class Recorder:
    """Arrival times of gift-carrying frames at sampled viewers while a window is open."""

    active: bool = False
    arrivals: list[tuple[int, float]] = field(default_factory=list)


class Sink(asyncio.Protocol):
    """One viewer: Upgrade, then count frames (and the gifts in them) without decoding them."""

    def __init__(
        self,
        request: bytes,
        book: FrameBook,
        recorder: Recorder | None,
        record_frames: bool,
        expect_welcome: bool,
        opened: asyncio.Future[None],
    ) -> None:
        self.request = request
        self.book = book
        self.recorder = recorder
        self.frame_ids: list[int] | None = [] if record_frames else None
        self.welcomed = not expect_welcome
        self.opened = opened
        self.transport: asyncio.Transport | None = None
        self.handshaking = True
        self.pending = b""
        self.frames = 0
        self.bytes = 0
        self.gifts = 0
        self.close_code: int | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SINK_RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(f"connection lost before open: {exc or 'closed'}")

    def _fail(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(BenchError(reason))

    def _open(self) -> None:
        if not self.opened.done():
            self.opened.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.pending:
            data = self.pending + data
            self.pending = b""
        if self.handshaking:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.pending = data
                return
            status = data[: data.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._fail(f"handshake refused: {status.decode(errors='replace')}")
                self.close()
                return
            self.handshaking = False
            data = data[end + 4 :]
            if self.welcomed:
                self._open()
        size = len(data)
        pos = 0
        while size - pos >= 2:
            length = data[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = data[pos] & 0x0F
            if opcode == 1 or opcode == 2:
                self.message(data[start:end])
            elif opcode == 9:
                self.send(0xA, data[start:end])
            elif opcode == 8:
                self.close_code = int.from_bytes(data[start : start + 2], "big") if length >= 2 else 1005
                self._fail(f"closed with {self.close_code}: {data[start + 2 : end].decode(errors='replace')}")
                self.send(0x8, data[start : start + 2])
                self.close()
            pos = end
        if pos < size:
            self.pending = data[pos:]

    def message(self, payload: bytes) -> None:
        if not self.welcomed:
            if not payload.startswith(b'{"type":"welcome"'):
                self._fail(f"first frame is not a welcome: {payload[:200]!r}")
                return
            self.welcomed = True
            self._open()
            return
        self.frames += 1
        self.bytes += len(payload)
        number = self.book.lookup(payload)
        gifts = self.book.gifts[number]
        if gifts:
            self.gifts += gifts
            if self.recorder is not None and self.recorder.active:
                self.recorder.arrivals.append((number, time.time()))
        if self.frame_ids is not None:
            self.frame_ids.append(number)

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_frame(opcode, payload))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_sinks(
    host: str,
    port: int,
    paths: list[str],
    make: Callable[[bytes, asyncio.Future[None], int], Sink],
    concurrency: int,
) -> tuple[list[Sink], Counter[str]]:
    """Open one sink per path, ``concurrency`` handshakes at a time; the sinks that opened and
    the reasons the others did not."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    failures: Counter[str] = Counter()

    async def one(number: int, path: str) -> Sink | None:
        async with gate:
            opened: asyncio.Future[None] = loop.create_future()
            try:
                _, sink = await loop.create_connection(
                    lambda: make(upgrade_request(host, port, path), opened, number), host, port
                )
                await asyncio.wait_for(opened, CONNECT_TIMEOUT_S)
            except (OSError, BenchError, TimeoutError) as exc:
                failures[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                with contextlib.suppress(Exception):
                    opened.exception()
                return None
            return sink

    opened = await asyncio.gather(*(one(number, path) for number, path in enumerate(paths)))
    return [sink for sink in opened if sink is not None], failures


# --- sink processes ------------------------------------------------------------------------


class SinkHost:
    """The sinks of one load process, driven by commands from the benchmark over a pipe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.book = FrameBook()
        self.recorder = Recorder()
        self.groups: dict[str, list[Sink]] = {}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command: dict[str, Any] = await loop.run_in_executor(None, self.conn.recv)
            op = command["op"]
            if op == "quit":
                for sinks in self.groups.values():
                    for sink in sinks:
                        sink.close()
                await asyncio.sleep(0.2)
                self.conn.send({"ok": True})
                return
            try:
                reply = await getattr(self, f"op_{op}")(command)
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            self.conn.send(reply)

    async def op_connect(self, command: dict[str, Any]) -> dict[str, Any]:
        sample_every: int = command["sample_every"]
        # This process holds viewers first, first + stride, ... of all: sample by that number.
        first: int = command["first"]
        stride: int = command["stride"]
        record: bool = command["record"]

        def make(request: bytes, opened: asyncio.Future[None], number: int) -> Sink:
            sampled = sample_every > 0 and (first + number * stride) % sample_every == 0
            recorder = self.recorder if sampled else None
            return Sink(request, self.book, recorder, record, command["welcome"], opened)

        started = time.time()
        sinks, failures = await open_sinks(
            command["host"], command["port"], command["paths"], make, command["concurrency"]
        )
        finished = time.time()
        self.groups.setdefault(command["group"], []).extend(sinks)
        return {"opened": len(sinks), "failures": dict(failures), "started": started, "finished": finished}

    async def op_stats(self, command: dict[str, Any]) -> dict[str, Any]:
        sinks = self.groups.get(command["group"], [])
        codes = Counter(str(s.close_code) for s in sinks if s.close_code is not None or s.lost)
        return {
            "frames": sum(s.frames for s in sinks),
            "bytes": sum(s.bytes for s in sinks),
            "gifts": sum(s.gifts for s in sinks),
            "open": sum(1 for s in sinks if not s.lost and s.close_code is None),
            "closed": dict(codes),
            "time": time.time(),
        }

    async def op_window(self, command: dict[str, Any]) -> dict[str, Any]:
        """Open (clearing earlier arrivals) or close the latency window."""
        self.recorder.active = command["active"]
        if command["active"]:
            self.recorder.arrivals = []
        return {"ok": True}

    async def op_latencies(self, command: dict[str, Any]) -> dict[str, Any]:
        """Gift-to-viewer latencies (ms) at the sampled viewers in the last window."""
        out = array.array("d")
        for number, received in self.recorder.arrivals:
            received_ms = received * 1000
            out.extend(received_ms - ts for ts in self.book.ts[number])
        self.recorder.arrivals = []
        return {"latencies": out.tobytes()}

    async def op_payloads(self, command: dict[str, Any]) -> dict[str, Any]:
        """The distinct gift-carrying payloads first seen between two times."""
        since, until = command["since"], command["until"]
        book = self.book
        return {
            "payloads": [
                book.payloads[n]
                for n in range(len(book.gifts))
                if book.gifts[n] and since <= book.first_seen[n] <= until
            ]
        }

    async def op_completeness(self, command: dict[str, Any]) -> dict[str, Any]:
        """Per viewer: gift events received, distinct ids, distinct acknowledged ids."""
        acked = set(command["acked"])
        by_frames: Counter[tuple[int, ...]] = Counter()
        counted: list[int] = []
        for sink in self.groups.get(command["group"], []):
            frames = tuple(sink.frame_ids or ())
            by_frames[frames] += 1
            counted.append(sink.gifts)
        viewers = []
        for frames, viewers_alike in by_frames.items():
            ids = [event_id for number in frames for event_id in self.book.ids[number]]
            distinct = set(ids)
            viewers += [(len(ids), len(distinct), len(distinct & acked))] * viewers_alike
        return {"viewers": viewers, "counted": counted, "distinct_frame_lists": len(by_frames)}


def sink_process(conn: Connection) -> None:
    """A load process's entry point: serve commands until told to quit."""
    raise_fd_limit()
    run_async(SinkHost(conn).serve())


class SinkPool:
    """``procs`` sink processes; viewers are dealt out to them in turn."""

    def __init__(self, procs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for _ in range(procs):
            ours, theirs = context.Pipe()
            process = context.Process(target=sink_process, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            self.conns.append(ours)
            self.procs.append(process)

    @property
    def pids(self) -> dict[str, int | None]:
        return {f"sink{i}": process.pid for i, process in enumerate(self.procs)}

    async def call(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send one command to each process (in order) and wait for every reply."""
        loop = asyncio.get_running_loop()

        def roundtrip(conn: Connection, command: dict[str, Any]) -> dict[str, Any]:
            conn.send(command)
            reply: dict[str, Any] = conn.recv()
            return reply

        replies = await asyncio.gather(
            *(loop.run_in_executor(None, roundtrip, c, m) for c, m in zip(self.conns, commands, strict=True))
        )
        errors = [reply["error"] for reply in replies if "error" in reply]
        if errors:
            raise BenchError(f"a sink process failed: {errors[0]}")
        return list(replies)

    async def every(self, **command: Any) -> list[dict[str, Any]]:
        return await self.call([command] * len(self.conns))

    async def connect(
        self,
        group: str,
        port: int,
        paths: list[str],
        *,
        welcome: bool,
        record: bool,
        sample_every: int,
        concurrency: int,
        base: int = 0,
    ) -> dict[str, Any]:
        """Open ``paths`` (viewers ``base``, ``base + 1``, ...) as sinks of ``group``; the count,
        failures and handshakes/s. Viewers whose number is a multiple of ``sample_every`` (0:
        none) record latencies."""
        count = len(self.conns)
        commands = [
            {
                "op": "connect",
                "group": group,
                "host": "127.0.0.1",
                "port": port,
                "paths": paths[i::count],
                "first": base + i,
                "stride": count,
                "welcome": welcome,
                "record": record,
                "sample_every": sample_every,
                "concurrency": concurrency,
            }
            for i in range(count)
        ]
        replies = await self.call(commands)
        failures: Counter[str] = Counter()
        for reply in replies:
            failures.update(reply["failures"])
        opened = sum(reply["opened"] for reply in replies)
        seconds = max(r["finished"] for r in replies) - min(r["started"] for r in replies)
        return {
            "opened": opened,
            "failures": dict(failures),
            "seconds": round(seconds, 3),
            "per_s": round(opened / seconds, 1) if seconds > 0 else 0.0,
        }

    async def stats(self, group: str) -> dict[str, Any]:
        replies = await self.every(op="stats", group=group)
        closed: Counter[str] = Counter()
        for reply in replies:
            closed.update(reply["closed"])
        total = {key: sum(reply[key] for reply in replies) for key in ("frames", "bytes", "gifts", "open")}
        return {**total, "closed": dict(closed), "time": max(reply["time"] for reply in replies)}

    async def latencies(self) -> list[float]:
        values = array.array("d")
        for reply in await self.every(op="latencies"):
            values.frombytes(reply["latencies"])
        return sorted(values)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.every(op="quit"), 10)
        for process in self.procs:
            process.join(5)
            if process.is_alive():
                process.kill()


@contextlib.asynccontextmanager
async def sink_pool(procs: int) -> AsyncIterator[SinkPool]:
    pool = SinkPool(procs)
    try:
        yield pool
    finally:
        await pool.close()


# --- gifters -------------------------------------------------------------------------------


@dataclass
class GiftLedger:
    """What the gifters sent and what came back."""

    sent: dict[str, float] = field(default_factory=dict)  # idempotency key -> send time
    ack_ms: list[float] = field(default_factory=list)
    acked_ids: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # set when none is unanswered

    def ack(self, key: str, event_id: str) -> None:
        started = self.sent.pop(key, None)
        if started is not None:
            self.ack_ms.append((time.perf_counter() - started) * 1000)
            self.acked_ids.append(event_id)
        if not self.sent:
            self.answered.set()

    def error(self, key: str | None, code: str) -> None:
        if key is not None:
            self.sent.pop(key, None)
        self.errors[code] += 1
        if not self.sent:
            self.answered.set()


class Gifter(Sink):
    """A sender's connection: sends ``gift`` frames, reads acks, errors and balances."""

    def __init__(self, request: bytes, opened: asyncio.Future[None], ledger: GiftLedger, tag: str) -> None:
        super().__init__(request, FrameBook(), None, False, True, opened)
        self.ledger = ledger
        self.tag = tag
        self.sent = 0
        self.closed_by_us = False

    def message(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"batch"'):
            return
        body = orjson.loads(payload)
        kind = body.get("type")
        if kind == "welcome":
            self.welcomed = True
            self._open()
        elif kind == "gift_ack":
            self.ledger.ack(body["idempotency_key"], body["gift_event_id"])
        elif kind == "error":
            self.ledger.error(body.get("idempotency_key"), body.get("code", "?"))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.closed_by_us:
            self.ledger.closed[str(self.close_code)] += 1

    def close(self) -> None:
        self.closed_by_us = True
        super().close()

    def gift(self, run: str) -> None:
        key = f"{self.tag}-{run}-{self.sent}"
        self.sent += 1
        self.ledger.sent[key] = time.perf_counter()
        self.ledger.answered.clear()
        body = {"type": "gift", "gift_id": GIFT_ID, "count": 1, "idempotency_key": key}
        self.send(0x1, orjson.dumps(body))


async def open_gifters(port: int, room_id: str, senders: list[Sender], ledger: GiftLedger) -> list[Gifter]:
    loop = asyncio.get_running_loop()
    gifters: list[Gifter] = []
    for sender in senders:
        opened: asyncio.Future[None] = loop.create_future()
        gifter = Gifter(
            upgrade_request("127.0.0.1", port, ws_path(room_id, token_of(sender))),
            opened,
            ledger,
            sender.user_id,
        )
        await loop.create_connection(lambda gifter=gifter: gifter, "127.0.0.1", port)  # type: ignore[misc]
        await asyncio.wait_for(opened, CONNECT_TIMEOUT_S)
        gifters.append(gifter)
    return gifters


async def pace_gifts(gifters: list[Gifter], rate: float, seconds: float | None, run: str) -> int:
    """Send ``rate`` gifts/s round-robin over ``gifters`` on a fixed schedule (catching up
    at once if the loop fell behind) for ``seconds`` (None: until cancelled); how many sent."""
    interval = 1 / rate
    total = math.inf if seconds is None else round(rate * seconds)
    started = time.perf_counter()
    sent = 0
    while sent < total:
        due = started + sent * interval
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
            now = time.perf_counter()
        while sent < total and started + sent * interval <= now:
            gifters[sent % len(gifters)].gift(run)
            sent += 1
    return sent


def token_of(sender: Sender) -> str:
    return sender.headers["authorization"].removeprefix("Bearer ")


def ws_path(room_id: str, token: str) -> str:
    return f"/v1/rooms/{room_id}/ws?token={token}"


async def funded_senders(client: httpx.AsyncClient, prefix: str, count: int, coins: int) -> list[Sender]:
    """``count`` senders into the demo room, each holding at least ``coins``."""
    senders = [await new_sender(client, f"{prefix}_{i:03d}", client, ROOM_ID) for i in range(count)]
    await gather_limited((top_up(client, sender, coins) for sender in senders), 8)
    return senders


async def viewer_tokens(client: httpx.AsyncClient, prefix: str, first: int, count: int) -> list[str]:
    """``count`` viewer tokens for distinct users, minted by the demo token route."""

    async def mint(i: int) -> str:
        body = {"user_id": f"{prefix}{i:05d}", "role": "viewer"}
        token: str = (await expect(client.post("/v1/dev/token", json=body), 200))["token"]
        return token

    return await gather_limited((mint(i) for i in range(first, first + count)), 16)


async def gather_limited(coros: Iterator[Coroutine[Any, Any, T]], limit: int) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(coro) for coro in coros))


# --- the server and the bare broadcaster ---------------------------------------------------


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables (read by ``running_server``) for the block's duration."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Stack:
    """An engine and a server on it, and the processes whose CPU is reported."""

    base_url: str
    port: int
    pids: dict[str, int | None]

    @property
    def server_pid(self) -> int:
        pid = self.pids["server"]
        assert pid is not None
        return pid


@contextlib.asynccontextmanager
async def server_stack(tmp: Path, name: str, **env: str) -> AsyncIterator[Stack]:
    engine = EmbeddedEngine(tmp / f"engine-{name}").start()
    assert engine.process is not None
    try:
        with environment(**env):
            server = running_server(engine.url, tmp / f"server-{name}.log")
            async with server as (base_url, pid):
                port = int(base_url.rsplit(":", 1)[1])
                yield Stack(base_url, port, {"server": pid, "engine": engine.process.pid, "load": None})
    finally:
        engine.stop()


def bare_process(conn: Connection, port: int, inflight: int) -> None:
    """The ceiling's process: a bare websockets server that broadcasts on command."""
    raise_fd_limit()
    run_async(bare_serve(conn, port, inflight))


def unsent_bytes(connection: Any) -> int:
    """Bytes a connection has not handed to the peer yet: transport buffer + kernel send queue."""
    transport = connection.transport
    queued = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        buffer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        queued += struct.unpack("i", buffer)[0]
    return int(queued)


async def bare_serve(conn: Connection, port: int, inflight: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.typing import Subprotocol

    connections: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:  # as the server's outlet does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SERVER_BUFFER_BYTES)
        connections.add(connection)
        try:
            await connection.wait_closed()
        finally:
            connections.discard(connection)

    counters = {"loops": 0, "waits": 0, "wait_s": 0.0}

    async def blast(message: str) -> None:
        probes: list[ServerConnection] = []
        probed_count = -1
        while True:
            broadcast(connections, message)
            await asyncio.sleep(0)
            counters["loops"] += 1
            if probed_count != len(connections):
                probed_count = len(connections)
                everyone = list(connections)
                probes = everyone[:: max(1, len(everyone) // BARE_PROBES)]
            started = time.perf_counter()
            while any(unsent_bytes(probe) > inflight for probe in probes):
                counters["waits"] += 1
                await asyncio.sleep(0.001)
            counters["wait_s"] += time.perf_counter() - started

    loop = asyncio.get_running_loop()
    task: asyncio.Task[None] | None = None
    async with serve(
        handler,
        "127.0.0.1",
        port,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        ping_interval=None,
        compression=None,
        backlog=4096,
    ):
        conn.send({"ready": True})
        while True:
            command: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
            if command["op"] == "start":
                counters.update(loops=0, waits=0, wait_s=0.0)
                task = asyncio.create_task(blast(command["message"]))
                conn.send({"ok": True})
            elif command["op"] == "stop":
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                conn.send({"connections": len(connections), **counters})
            else:
                conn.send({"ok": True})
                return


class Bare:
    def __init__(self, inflight: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.port = free_port()
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=bare_process, args=(theirs, self.port, inflight), daemon=True)
        self.process.start()
        theirs.close()

    async def call(self, **command: Any) -> dict[str, Any]:
        def roundtrip() -> dict[str, Any]:
            if command:
                self.conn.send(command)
            reply: dict[str, Any] = self.conn.recv()
            return reply

        return await asyncio.get_running_loop().run_in_executor(None, roundtrip)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call(op="quit"), 10)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


# --- measuring helpers ---------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def summarize_cpu(cpu: dict[str, float]) -> dict[str, float]:
    """The meter's cores with the sink processes added up as ``sinks``."""
    out = {name: value for name, value in cpu.items() if not name.startswith("sink")}
    out["sinks"] = round(sum(value for name, value in cpu.items() if name.startswith("sink")), 2)
    return out


def pct(ordered: list[float], q: float) -> float | None:
    return round(percentile(ordered, q), 2) if ordered else None


def progress(message: str) -> None:
    print(f"  {message}", flush=True)


# --- scenario 1: storm ---------------------------------------------------------------------


async def storm(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    viewers, rate, seconds = args.storm_viewers, args.storm_rate, args.storm_seconds
    env = {"GIFTING_WS_BUFFER_BYTES": str(SERVER_BUFFER_BYTES)}
    async with (
        server_stack(tmp, "storm", **env) as stack,
        sink_pool(args.sink_procs) as pool,
        http_client(stack.base_url, 16) as client,
    ):
        coins = math.ceil(rate * seconds / args.storm_gifters * 1.2) + 10
        senders = await funded_senders(client, "storm_gifter", args.storm_gifters, coins)
        tokens = await viewer_tokens(client, "storm_v", 0, viewers)
        connect = await pool.connect(
            "room",
            stack.port,
            [ws_path(ROOM_ID, token) for token in tokens],
            welcome=True,
            record=True,
            sample_every=args.sample_every,
            concurrency=args.connect_concurrency,
        )
        progress(f"storm: {connect['opened']} viewers connected ({connect['per_s']:.0f}/s)")
        if connect["opened"] != viewers:
            raise BenchError(
                f"only {connect['opened']} of {viewers} viewers connected: {connect['failures']}"
            )
        ledger = GiftLedger()
        gifters = await open_gifters(stack.port, ROOM_ID, senders, ledger)
        await asyncio.sleep(1.0)
        meter = CpuMeter({**stack.pids, **pool.pids})
        await pool.every(op="window", active=True)
        rss_before = rss_kib(stack.server_pid)
        meter.start()
        started = time.perf_counter()
        sent = await pace_gifts(gifters, rate, seconds, "storm")
        sending_s = time.perf_counter() - started
        cpu = summarize_cpu(meter.stop())
        rss_after = rss_kib(stack.server_pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ledger.answered.wait(), ACK_TIMEOUT_S)
        acked = len(ledger.acked_ids)
        drain_s = await wait_delivered(pool, acked * viewers)
        await pool.every(op="window", active=False)
        latencies = await pool.latencies()
        stats = await pool.stats("room")
        replies = await pool.every(op="completeness", group="room", acked=ledger.acked_ids)
        per_viewer = [viewer for reply in replies for viewer in reply["viewers"]]
        for gifter in gifters:
            gifter.close()
    ack_ms = sorted(ledger.ack_ms)
    complete = sum(1 for received, distinct, mine in per_viewer if mine == acked and received == distinct)
    return {
        "viewers": viewers,
        "gifters": args.storm_gifters,
        "rate_target": rate,
        "seconds": seconds,
        "gifts_sent": sent,
        "sending_s": round(sending_s, 3),
        "gifts_sent_per_s": round(sent / sending_s, 1),
        "gifts_acked": acked,
        "unanswered": len(ledger.sent),
        "errors": dict(ledger.errors),
        "gifter_closes": dict(ledger.closed),
        "viewers_complete": complete,
        "completeness_min_pct": round(
            min((mine / acked * 100 if acked else 0.0) for _, _, mine in per_viewer), 3
        )
        if per_viewer
        else 0.0,
        "duplicate_events": sum(received - distinct for received, distinct, _ in per_viewer),
        "events_not_acked": sum(distinct - mine for _, distinct, mine in per_viewer),
        "viewers_open_at_end": stats["open"],
        "viewer_closes": stats["closed"],
        "frames_per_viewer": round(stats["frames"] / viewers, 1),
        "drain_s": drain_s,
        "latency_sampled_viewers": math.ceil(viewers / args.sample_every),
        "latency_samples": len(latencies),
        "latency_p50_ms": pct(latencies, 50),
        "latency_p99_ms": pct(latencies, 99),
        "latency_max_ms": round(latencies[-1], 2) if latencies else None,
        "ack_p50_ms": pct(ack_ms, 50),
        "ack_p99_ms": pct(ack_ms, 99),
        "cpu_cores": cpu,
        "server_rss_kib": {"before": rss_before, "after": rss_after},
        "connect": connect,
    }


async def wait_delivered(pool: SinkPool, expected: int) -> float:
    """Wait until the sinks hold ``expected`` gift events, or none arrive for a while; how long."""
    started = time.perf_counter()
    last, last_change = -1, started
    while True:
        gifts = (await pool.stats("room"))["gifts"]
        now = time.perf_counter()
        if gifts >= expected:
            return round(now - started, 3)
        if gifts != last:
            last, last_change = gifts, now
        if now - last_change > DRAIN_IDLE_S or now - started > DRAIN_MAX_S:
            return round(now - started, 3)
        await asyncio.sleep(0.1)


# --- scenario 2: fanout --------------------------------------------------------------------


@dataclass
class Window:
    """What the sinks of one group counted over one measurement window."""

    frames_per_s: float
    gifts_per_s: float
    bytes_per_s: float
    cpu_cores: dict[str, float]
    p50_ms: float | None = None
    p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def measure_window(
    pool: SinkPool, group: str, seconds: float, meter: CpuMeter, latency: bool
) -> tuple[Window, float, float]:
    if latency:
        await pool.every(op="window", active=True)
    before = await pool.stats(group)
    meter.start()
    await asyncio.sleep(seconds)
    after = await pool.stats(group)
    cpu = summarize_cpu(meter.stop())
    if latency:
        await pool.every(op="window", active=False)
    elapsed = after["time"] - before["time"]
    window = Window(
        frames_per_s=round((after["frames"] - before["frames"]) / elapsed, 1),
        gifts_per_s=round((after["gifts"] - before["gifts"]) / elapsed, 1),
        bytes_per_s=round((after["bytes"] - before["bytes"]) / elapsed, 1),
        cpu_cores=cpu,
    )
    if latency:
        latencies = await pool.latencies()
        window.p50_ms, window.p99_ms = pct(latencies, 50), pct(latencies, 99)
    window.extra["open"] = after["open"]
    window.extra["closed"] = after["closed"]
    return window, before["time"], after["time"]


async def fanout(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sizes: list[int] = args.fanout_sizes
    env = {"GIFTING_TICK_MS": "5", "GIFTING_WS_BUFFER_BYTES": str(SERVER_BUFFER_BYTES)}
    bare = Bare(args.bare_inflight)
    results: list[dict[str, Any]] = []
    try:
        async with (
            server_stack(tmp, "fanout", **env) as stack,
            sink_pool(args.sink_procs) as pool,
            http_client(stack.base_url, 16) as client,
        ):
            await bare.call()  # ready
            per_window = args.fanout_rate * (args.fanout_seconds + args.warmup + 1)
            coins = math.ceil(per_window * args.fanout_rounds * len(sizes) / args.fanout_gifters * 1.2) + 10
            senders = await funded_senders(client, "fan_gifter", args.fanout_gifters, coins)
            ledger = GiftLedger()
            gifters = await open_gifters(stack.port, ROOM_ID, senders, ledger)
            meter = CpuMeter({**stack.pids, **pool.pids, "bare": bare.process.pid})
            connected = 0
            for size in sizes:
                if size > connected:
                    tokens = await viewer_tokens(client, "fan_v", connected, size - connected)
                    paths = [ws_path(ROOM_ID, token) for token in tokens]
                    outcomes = {}
                    for group, port in (("server", stack.port), ("bare", bare.port)):
                        outcomes[group] = await pool.connect(
                            group,
                            port,
                            paths,
                            welcome=group == "server",
                            record=False,
                            # about 200 latency-sampled viewers in each room size
                            sample_every=max(1, size // 200) if group == "server" else 0,
                            concurrency=args.connect_concurrency,
                            base=connected,
                        )
                    for what, outcome in outcomes.items():
                        if outcome["failures"]:
                            raise BenchError(f"{what} sinks failed to connect: {outcome['failures']}")
                    connected = size
                    await asyncio.sleep(1.0)
                results.append(await fanout_size(args, size, pool, bare, gifters, ledger, meter))
            for gifter in gifters:
                gifter.close()
            errors = dict(ledger.errors)
    finally:
        await bare.close()
    return {"sizes": results, "gift_errors": errors}


async def fanout_size(
    args: argparse.Namespace,
    size: int,
    pool: SinkPool,
    bare: Bare,
    gifters: list[Gifter],
    ledger: GiftLedger,
    meter: CpuMeter,
) -> dict[str, Any]:
    server_runs: list[Window] = []
    bare_runs: list[Window] = []
    message: str | None = None
    frame_bytes = 0
    for round_no in range(args.fanout_rounds):
        pacer = asyncio.create_task(pace_gifts(gifters, args.fanout_rate, None, f"f{size}r{round_no}"))
        try:
            await asyncio.sleep(args.warmup)
            window, since, until = await measure_window(pool, "server", args.fanout_seconds, meter, True)
        finally:
            pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pacer
        server_runs.append(window)
        if message is None:
            payloads = (
                await pool.call([{"op": "payloads", "since": since, "until": until}] * len(pool.conns))
            )[0]["payloads"]
            if not payloads:
                raise BenchError(f"no gift batch reached the {size} sinks")
            payloads.sort(key=len)
            median = payloads[len(payloads) // 2]
            message, frame_bytes = median.decode(), len(median)
        await asyncio.sleep(0.5)
        await bare.call(op="start", message=message)
        try:
            await asyncio.sleep(args.warmup)
            window, _, _ = await measure_window(pool, "bare", args.fanout_seconds, meter, False)
        finally:
            loop_stats = await bare.call(op="stop")
        loops = max(1, loop_stats["loops"])
        elapsed = args.warmup + args.fanout_seconds
        window.extra.update(
            loops=loop_stats["loops"],
            wait_share=round(loop_stats["wait_s"] / elapsed, 3),
            connections=loop_stats["connections"],
            loop_ms=round(elapsed / loops * 1000, 3),
        )
        bare_runs.append(window)
        progress(
            f"fanout {size} round {round_no}: server {server_runs[-1].frames_per_s:,.0f} frames/s "
            f"(p50 {server_runs[-1].p50_ms} ms, p99 {server_runs[-1].p99_ms} ms, "
            f"server {server_runs[-1].cpu_cores['server']:.2f} cores, sinks "
            f"{server_runs[-1].cpu_cores['sinks']:.2f}), bare {window.frames_per_s:,.0f} frames/s "
            f"(bare {window.cpu_cores['bare']:.2f} cores, sinks {window.cpu_cores['sinks']:.2f}, "
            f"waiting {window.extra['wait_share']:.0%})"
        )
        await asyncio.sleep(0.5)
    server_fps = statistics.median(run.frames_per_s for run in server_runs)
    bare_fps = statistics.median(run.frames_per_s for run in bare_runs)
    # CPU per delivered frame, which a busy machine disturbs less than the rate.
    server_us = statistics.median(
        run.cpu_cores["server"] / run.frames_per_s * 1e6 for run in server_runs if run.frames_per_s
    )
    bare_us = statistics.median(
        run.cpu_cores["bare"] / run.frames_per_s * 1e6 for run in bare_runs if run.frames_per_s
    )
    return {
        "viewers": size,
        "frame_bytes": frame_bytes,
        "server_frames_per_s": server_fps,
        "server_gift_events_per_s": statistics.median(run.gifts_per_s for run in server_runs),
        "server_p50_ms": statistics.median(run.p50_ms or 0 for run in server_runs),
        "server_p99_ms": statistics.median(run.p99_ms or 0 for run in server_runs),
        "bare_frames_per_s": bare_fps,
        "ratio": round(server_fps / bare_fps, 4) if bare_fps else None,
        "server_cpu_us_per_frame": round(server_us, 2),
        "bare_cpu_us_per_frame": round(bare_us, 2),
        "server_runs": [vars(run) for run in server_runs],
        "bare_runs": [vars(run) for run in bare_runs],
        "gifts_acked_total": len(ledger.acked_ids),
    }


# --- scenario 3: idle connections ----------------------------------------------------------


async def connections(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    count = args.connections
    async with (
        server_stack(tmp, "conns") as stack,
        sink_pool(args.sink_procs) as pool,
        http_client(stack.base_url, 16) as client,
    ):
        minted = time.perf_counter()
        tokens = await viewer_tokens(client, "idle_v", 0, count)
        mint_s = time.perf_counter() - minted
        await asyncio.sleep(2.0)
        before = rss_kib(stack.server_pid)
        connect = await pool.connect(
            "idle",
            stack.port,
            [ws_path(ROOM_ID, token) for token in tokens],
            welcome=True,
            record=False,
            sample_every=0,
            concurrency=args.connect_concurrency,
        )
        progress(f"connections: {connect['opened']} opened at {connect['per_s']:,.0f}/s")
        await asyncio.sleep(3.0)
        meter = CpuMeter(stack.pids)
        meter.start()
        await asyncio.sleep(5.0)
        idle_cpu = meter.stop()
        after = rss_kib(stack.server_pid)
        stats = await pool.stats("idle")
    opened = connect["opened"]
    return {
        "connections": count,
        "opened": opened,
        "failures": connect["failures"],
        "open_after_idle": stats["open"],
        "closed": stats["closed"],
        "connect_s": connect["seconds"],
        "connect_per_s": connect["per_s"],
        "server_rss_kib": {"before": before, "after": after},
        "kib_per_connection": round((after - before) / opened, 2) if opened else None,
        "idle_cpu_cores": idle_cpu,
        "token_mint_s": round(mint_s, 2),
    }


# --- report --------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    storm_result = report.get("storm")
    if storm_result:
        s = storm_result
        print(
            f"\nstorm: {s['viewers']:,} viewers, {s['rate_target']} gifts/s for {s['seconds']:g} s "
            f"by {s['gifters']} gifters over the WebSocket"
        )
        print(
            f"  gifts sent {s['gifts_sent']:,} ({s['gifts_sent_per_s']:,.0f}/s), acked {s['gifts_acked']:,}, "
            f"unanswered {s['unanswered']}, errors {s['errors'] or 'none'}"
        )
        print(
            f"  completeness: {s['viewers_complete']:,}/{s['viewers']:,} viewers complete, "
            f"min {s['completeness_min_pct']:.3f} %, duplicates {s['duplicate_events']}, "
            f"viewer closes {s['viewer_closes'] or 'none'}, drained {s['drain_s']} s after the last send"
        )
        print(
            f"  gift->viewer latency ({s['latency_sampled_viewers']} viewers, {s['latency_samples']:,} "
            f"samples): p50 {s['latency_p50_ms']} ms, p99 {s['latency_p99_ms']} ms, max "
            f"{s['latency_max_ms']} ms; ack p50 {s['ack_p50_ms']} ms, p99 {s['ack_p99_ms']} ms"
        )
        cpu = s["cpu_cores"]
        print(
            f"  cores: server {cpu['server']:.2f}, engine {cpu['engine']:.2f}, sinks {cpu['sinks']:.2f}, "
            f"gifters {cpu['load']:.2f}; server RSS {s['server_rss_kib']['after'] / 1024:.0f} MiB"
        )
    fanout_result = report.get("fanout")
    if fanout_result:
        print("\nfanout (GIFTING_TICK_MS=5, medians of rounds):")
        print(
            f"  {'viewers':>8} {'frame B':>8} {'server f/s':>11} {'gifts/s':>10} {'p50 ms':>7} {'p99 ms':>7}"
            f" {'bare f/s':>10} {'ratio':>7}  cores srv/sinks | bare/sinks, bare waiting;"
            " cpu us/frame srv/bare"
        )
        for row in fanout_result["sizes"]:
            srv = row["server_runs"][len(row["server_runs"]) // 2]["cpu_cores"]
            bare = row["bare_runs"][len(row["bare_runs"]) // 2]
            print(
                f"  {row['viewers']:>8,} {row['frame_bytes']:>8,} {row['server_frames_per_s']:>11,.0f}"
                f" {row['server_gift_events_per_s']:>10,.0f}"
                f" {row['server_p50_ms']:>7} {row['server_p99_ms']:>7}"
                f" {row['bare_frames_per_s']:>10,.0f} {row['ratio']:>7.1%}"
                f"  {srv['server']:.2f}/{srv['sinks']:.2f}"
                f" | {bare['cpu_cores']['bare']:.2f}/{bare['cpu_cores']['sinks']:.2f},"
                f" {bare['extra']['wait_share']:.0%};"
                f" {row['server_cpu_us_per_frame']}/{row['bare_cpu_us_per_frame']}"
            )
    conns = report.get("connections")
    if conns:
        rss = conns["server_rss_kib"]
        print(
            f"\nconnections: {conns['opened']:,}/{conns['connections']:,} idle viewers, "
            f"{conns['connect_per_s']:,.0f} handshakes/s; server RSS {rss['before'] / 1024:.1f} -> "
            f"{rss['after'] / 1024:.1f} MiB = {conns['kib_per_connection']} KiB per connection; "
            f"idle server {conns['idle_cpu_cores']['server']:.2f} cores; "
            f"open after idling {conns['open_after_idle']:,}"
        )
    print("scenario wall times (s):", report["scenario_seconds"])


# --- command line --------------------------------------------------------------------------


def raise_fd_limit() -> None:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed, else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], Coroutine[Any, Any, dict[str, Any]]]] = {
    "storm": storm,
    "fanout": fanout,
    "connections": connections,
}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"scenario_seconds": {}}
    with tempfile.TemporaryDirectory(prefix="bench-room-") as tmp:
        for name in args.scenarios:
            print(f"{name}...", flush=True)
            started = time.perf_counter()
            report[name] = await SCENARIOS[name](args, Path(tmp))
            report["scenario_seconds"][name] = round(time.perf_counter() - started, 1)
    return report


def comma_ints(raw: str) -> list[int]:
    return [positive_int(part) for part in raw.split(",") if part]


def scenario_list(raw: str) -> list[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_room",
        description="Live-room delivery, fan-out against a bare websockets broadcaster, idle memory.",
    )
    parser.add_argument("--scenarios", type=scenario_list, default=list(SCENARIOS), help="default: all")
    parser.add_argument("--storm-viewers", type=positive_int, default=2000)
    parser.add_argument("--storm-rate", type=positive_float, default=500.0, help="gifts/s (default 500)")
    parser.add_argument("--storm-seconds", type=positive_float, default=20.0)
    parser.add_argument("--storm-gifters", type=positive_int, default=50)
    parser.add_argument(
        "--sample-every",
        type=positive_int,
        default=10,
        help="storm latency on every n-th viewer (default 10)",
    )
    parser.add_argument("--fanout-sizes", type=comma_ints, default=[1000, 5000, 10000])
    parser.add_argument("--fanout-rate", type=positive_float, default=200.0, help="gifts/s (default 200)")
    parser.add_argument("--fanout-gifters", type=positive_int, default=20)
    parser.add_argument("--fanout-seconds", type=positive_float, default=5.0)
    parser.add_argument("--fanout-rounds", type=positive_int, default=3)
    parser.add_argument("--warmup", type=positive_float, default=1.0, help="seconds before each window")
    parser.add_argument(
        "--bare-inflight",
        type=positive_int,
        default=16384,
        help="the bare loop waits while a probed connection has more unsent bytes (default 16384)",
    )
    parser.add_argument("--connections", type=positive_int, default=10000)
    parser.add_argument("--sink-procs", type=positive_int, default=2, help="load processes for the sinks")
    parser.add_argument(
        "--connect-concurrency", type=positive_int, default=64, help="handshakes in flight per load process"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.fanout_sizes = sorted(args.fanout_sizes)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    skip_missing_sniffio()
    try:
        report = run_async(bench(args))
    except BenchError as exc:
        print(f"bench_room: FAILED: {exc}", file=sys.stderr)
        return 1
    print_report(report)
    if args.json is not None:
        document = {
            "benchmark": "loadtest.bench_room",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "python": sys.version,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            **report,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
