"""The load's raw WebSocket clients: viewers that count frames without decoding them, gifters
that send ``gift`` frames, talkers that send ``chat`` and ``like`` frames, and the processes
that host them.

The sinks are not ``websockets`` clients (a client object per viewer would cost more than the
server): ``Sink`` is an ``asyncio.Protocol`` (on uvloop) that sends the Upgrade request, reads
the 101 and then only parses frame headers, answers pings and counts frames and bytes.
Server frames are encoded once and written to every viewer as the same bytes, so each
distinct payload is parsed once per load process (``FrameBook``) and a viewer only looks it
up. Sinks run in processes of their own (``SinkPool``), each socket with a 32 KiB receive
buffer (bounding kernel memory over 10,000 sockets) and closed with RST (no TIME_WAIT).
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import multiprocessing
import os
import random
import re
import socket
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, ClassVar, TypeVar, cast

import orjson

from loadtest.harness import (
    GIFT_ID,
    SUBPROTOCOL,
    BenchError,
    Sender,
    collector_off,
    pace,
    raise_fd_limit,
    run_async,
)

SINK_RCVBUF = 32 * 1024
CONNECT_TIMEOUT_S = 60.0


# --- a minimal WebSocket client ------------------------------------------------------------


def upgrade_request(host: str, port: int, path: str, protocol: str | None = SUBPROTOCOL) -> bytes:
    """The Upgrade request, asking for ``protocol`` (None: no subprotocol)."""
    key = base64.b64encode(os.urandom(16)).decode()
    offer = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
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


def token_of(sender: Sender) -> str:
    return sender.headers["authorization"].removeprefix("Bearer ")


def ws_path(room_id: str, token: str) -> str:
    return f"/v1/rooms/{room_id}/ws?token={token}"


# The socket.io peer (loadtest/peers/socketio) is spoken to as Engine.IO v4 / socket.io v5 over
# a plain WebSocket: every frame is one packet, "0{...}" the open, "40{auth}" the connect,
# "42[name, data]" an event, "42<n>[...]" one asking for the ack "43<n>[...]", "2" a ping that
# "3" answers.
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
SIO_GIFT = b'42["gift",'
SIO_JOINED = b'42["joined"'


def sio_connect(room: str, user: str) -> bytes:
    """The CONNECT packet that joins ``room`` as ``user``."""
    return b"40" + orjson.dumps({"room": room, "user": user})


class FrameBook:
    """Every distinct frame payload one load process has received, parsed once.

    The server writes the same bytes to every viewer of a room, so a viewer's frame is looked
    up here by its bytes and only the first viewer to get it pays for parsing it.
    """

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.gifts: list[int] = []
        self.chats: list[int] = []
        self.ids: list[tuple[str, ...]] = []  # gift and chat event ids
        self.ts: list[tuple[int, ...]] = []
        self.chat_ts: list[tuple[int, ...]] = []
        self.first_seen: list[float] = []
        self.payloads: list[bytes] = []
        # Battles: the coins of each gift event (its ``count``: the gifts are 1-coin roses),
        # each ``battle`` event as (server_ms, the sides' scores) and each ``battle_end``'s scores.
        self.counts: list[tuple[int, ...]] = []
        self.battles: list[tuple[tuple[int, tuple[int, ...]], ...]] = []
        self.battle_ends: list[tuple[tuple[int, ...], ...]] = []

    def lookup(self, payload: bytes) -> int:
        number = self.index.get(payload)
        if number is None:
            number = self._add(payload)
        return number

    def _add(self, payload: bytes) -> int:
        gifts: list[dict[str, Any]] = []
        chats: list[dict[str, Any]] = []
        battles: list[tuple[int, tuple[int, ...]]] = []
        ends: list[tuple[int, ...]] = []
        if payload.startswith(SIO_GIFT):
            gifts.append(orjson.loads(payload[2:])[1])
        elif b'"type":"batch"' in payload[:24]:
            for event in orjson.loads(payload).get("events", ()):
                kind = event.get("type")
                if kind == "gift":
                    gifts.append(event)
                elif kind == "chat":
                    chats.append(event)
                elif kind == "battle":
                    scores = tuple(int(side["score"]) for side in event["sides"])
                    battles.append((int(event["server_ms"]), scores))
                elif kind == "battle_end":
                    ends.append(tuple(int(side["score"]) for side in event["sides"]))
        number = len(self.gifts)
        self.index[payload] = number
        self.gifts.append(len(gifts))
        self.chats.append(len(chats))
        self.ids.append(tuple(str(e["event_id"]) for e in gifts + chats))
        self.ts.append(tuple(int(e["ts"]) for e in gifts))
        self.chat_ts.append(tuple(int(e["ts"]) for e in chats))
        self.first_seen.append(time.time())
        self.payloads.append(payload if gifts else b"")
        self.counts.append(tuple(int(e["count"]) for e in gifts))
        self.battles.append(tuple(battles))
        self.battle_ends.append(tuple(ends))
        return number


@dataclass
class Recorder:
    """Arrival times of gift- or chat-carrying frames at sampled viewers while a window is open."""

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
        self.chats = 0
        self.close_code: int | None = None
        self.close_reason = b""
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
                self.close_reason = data[start + 2 : end]
                self._fail(f"closed with {self.close_code}: {self.close_reason.decode(errors='replace')}")
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
        gifts, chats = self.book.gifts[number], self.book.chats[number]
        if gifts or chats:
            self.gifts += gifts
            self.chats += chats
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

    def stop(self) -> None:
        """Close for good (a ``Resumer`` does not come back)."""
        self.close()


class SioSink(Sink):
    """One viewer of the socket.io peer: connects into its room, then counts ``gift`` events
    as ``Sink`` counts frames."""

    def __init__(
        self,
        request: bytes,
        book: FrameBook,
        recorder: Recorder | None,
        record_frames: bool,
        connect: bytes,
        opened: asyncio.Future[None],
    ) -> None:
        super().__init__(request, book, recorder, record_frames, True, opened)
        self.connect = connect

    def message(self, payload: bytes) -> None:
        if payload == b"2":
            self.send(0x1, b"3")
        elif self.welcomed:
            super().message(payload)
        elif payload.startswith(SIO_JOINED):
            self.welcomed = True
            self._open()
        elif payload.startswith(b"0{"):
            self.send(0x1, self.connect)
        elif not payload.startswith(b"40"):
            self._fail(f"refused by the socket.io server: {payload[:200]!r}")
            self.close()


async def open_sinks(
    host: str,
    port: int,
    paths: list[str],
    make: Callable[[bytes, asyncio.Future[None], int], Sink],
    concurrency: int,
    protocol: str | None = SUBPROTOCOL,
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
                    lambda: make(upgrade_request(host, port, path, protocol), opened, number), host, port
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
                        sink.stop()
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

        # The socket.io peer's room, when the sinks are its viewers.
        sio_room: str | None = command.get("sio_room")

        def make(request: bytes, opened: asyncio.Future[None], number: int) -> Sink:
            viewer = first + number * stride
            sampled = sample_every > 0 and viewer % sample_every == 0
            recorder = self.recorder if sampled else None
            if sio_room is not None:
                connect = sio_connect(sio_room, f"{command['group']}_v{viewer}")
                return SioSink(request, self.book, recorder, record, connect, opened)
            return Sink(request, self.book, recorder, record, command["welcome"], opened)

        started = time.time()
        sinks, failures = await open_sinks(
            command["host"],
            command["port"],
            command["paths"],
            make,
            command["concurrency"],
            None if sio_room is not None else SUBPROTOCOL,
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
            "chats": sum(s.chats for s in sinks),
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
        """Gift-to-viewer and chat-to-viewer latencies (ms) at the sampled viewers in the last
        window."""
        gifts, chats = array.array("d"), array.array("d")
        for number, received in self.recorder.arrivals:
            received_ms = received * 1000
            gifts.extend(received_ms - ts for ts in self.book.ts[number])
            chats.extend(received_ms - ts for ts in self.book.chat_ts[number])
        self.recorder.arrivals = []
        return {"gift": gifts.tobytes(), "chat": chats.tobytes()}

    async def op_tap_latencies(self, command: dict[str, Any]) -> dict[str, Any]:
        """Tap-to-screen latencies (ms) at the sampled viewers in the last window: receipt minus
        the time the gift was sent (``sent``: event id -> epoch seconds), and how many of the
        sampled arrivals carried an event not in ``sent``."""
        sent: dict[str, float] = command["sent"]
        out = array.array("d")
        unknown = 0
        for number, received in self.recorder.arrivals:
            for event_id in self.book.ids[number]:
                at = sent.get(event_id)
                if at is None:
                    unknown += 1
                else:
                    out.append((received - at) * 1000)
        self.recorder.arrivals = []
        return {"ms": out.tobytes(), "unknown": unknown}

    async def op_gift_counts(self, command: dict[str, Any]) -> dict[str, Any]:
        """The gift events each viewer of a group has received so far, in connection order."""
        return {"counts": [sink.gifts for sink in self.groups.get(command["group"], [])]}

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

    async def op_forget(self, command: dict[str, Any]) -> dict[str, Any]:
        """Clear the recorded frames of a group's viewers, so that the next completeness counts
        from now; the time it was done."""
        for sink in self.groups.get(command["group"], []):
            if sink.frame_ids is not None:
                sink.frame_ids = []
        return {"time": time.time()}

    async def op_drop(self, command: dict[str, Any]) -> dict[str, Any]:
        """Close a group's connections for good and forget them."""
        sinks = self.groups.pop(command["group"], [])
        for sink in sinks:
            sink.stop()
        return {"dropped": len(sinks)}

    async def op_completeness(self, command: dict[str, Any]) -> dict[str, Any]:
        """Per viewer: gift and chat events received, distinct ids, distinct acknowledged ids,
        and frames received (since the last ``forget``)."""
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
            viewers += [(len(ids), len(distinct), len(distinct & acked), len(frames))] * viewers_alike
        return {
            "viewers": viewers,
            "counted": counted,
            "distinct_frame_lists": len(by_frames),
            "time": time.time(),
        }

    async def op_battle(self, command: dict[str, Any]) -> dict[str, Any]:
        """What a group's viewers saw of a battle since the last ``forget``: for side ``side``
        (the group's room's, whose gifts they receive), the lag of each gift's score.

        The k-th gift event a viewer received brought its side's coins, as the viewer saw
        them, to C (gifts cost ``price`` per ``count``); the first ``battle`` event whose
        ``side`` score is at least C is the one that showed it. Its lag is the number of
        batches from the batch carrying the gift to the batch carrying that event (0: the
        same batch; a batch is a tick). A gift no battle event showed is ``unshown``. Beside
        it, the engine time from the gift entering the room (``ts``) to the read of the
        record that showed it (``server_ms``). Also, per viewer: the scores of the last
        ``battle`` event, the ``battle_end`` events' scores, and the distinct ``battle``
        events (their union over the group is returned whole, to compare rooms).
        """
        side: int = command["side"]
        price: int = command["price"]
        book = self.book
        by_frames: Counter[tuple[int, ...]] = Counter(
            tuple(sink.frame_ids or ()) for sink in self.groups.get(command["group"], [])
        )
        lags: Counter[int] = Counter()
        engine_lag = array.array("d")
        unshown = 0
        finals: Counter[tuple[int, ...] | None] = Counter()
        ends: Counter[tuple[tuple[int, ...], ...]] = Counter()
        seen_counts: Counter[int] = Counter()
        union: set[tuple[int, tuple[int, ...]]] = set()
        for frames, alike in by_frames.items():
            gifts: list[tuple[int, int, int]] = []  # (batch position, coins so far, ts)
            shown: list[tuple[int, int, int]] = []  # (batch position, server_ms, the side's score)
            coins = 0
            last: tuple[int, ...] | None = None
            mine: set[tuple[int, tuple[int, ...]]] = set()
            my_ends: list[tuple[int, ...]] = []
            for position, number in enumerate(frames):
                for count, ts in zip(book.counts[number], book.ts[number], strict=True):
                    coins += count * price
                    gifts.append((position, coins, ts))
                for server_ms, scores in book.battles[number]:
                    shown.append((position, server_ms, scores[side]))
                    mine.add((server_ms, scores))
                    last = scores
                my_ends.extend(book.battle_ends[number])
            first = 0
            for index, (position, total, ts) in enumerate(gifts):
                while first < len(shown) and shown[first][2] < total:
                    first += 1
                if first == len(shown):
                    unshown += (len(gifts) - index) * alike
                    break
                lags[shown[first][0] - position] += alike
                engine_lag.append(shown[first][1] - ts)
            finals[last] += alike
            ends[tuple(my_ends)] += alike
            seen_counts[len(mine)] += alike
            union |= mine
        return {
            "lags": [[lag, n] for lag, n in lags.items()],
            "unshown": unshown,
            "engine_lag_ms": engine_lag.tobytes(),
            "finals": [[list(scores) if scores else None, n] for scores, n in finals.items()],
            "ends": [[[list(scores) for scores in end], n] for end, n in ends.items()],
            "seen_counts": [[count, n] for count, n in seen_counts.items()],
            "battle_events": sorted([server_ms, list(scores)] for server_ms, scores in union),
        }

    async def op_resume(self, command: dict[str, Any]) -> dict[str, Any]:
        """Open viewers that reconnect and resume as live.js does (``Resumer``)."""
        started = time.time()
        viewers, failures = await open_resumers(
            command["host"],
            command["ports"],
            command["paths"],
            self.book,
            command["concurrency"],
            command["first"],
            command["stride"],
        )
        finished = time.time()
        self.groups.setdefault(command["group"], []).extend(viewers)
        return {"opened": len(viewers), "failures": dict(failures), "started": started, "finished": finished}

    async def op_returns(self, command: dict[str, Any]) -> dict[str, Any]:
        """For the resuming viewers of a group: each one's port and the time of its first
        welcome at or after ``since`` (None if it is not back), its reconnect attempts, and
        the viewers that stopped for good."""
        since: float = command["since"]
        back: list[tuple[int, float | None]] = []
        attempts = resumed = stopped = 0
        retried: Counter[str] = Counter()
        for viewer in self.groups.get(command["group"], []):
            if not isinstance(viewer, Resumer):
                continue
            back.append((viewer.port, next((t for t in viewer.welcomes if t >= since), None)))
            attempts += viewer.attempts
            retried.update(viewer.retried)
            resumed += viewer.resumed
            stopped += viewer.stopped
        return {
            "back": back,
            "attempts": attempts,
            "retried": dict(retried),
            "resumed": resumed,
            "stopped": stopped,
        }


def sink_process(conn: Connection) -> None:
    """A load process's entry point: serve commands until told to quit."""
    raise_fd_limit()
    with collector_off():  # the sinks time what arrives: no pause of their own in it
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
        sio_room: str | None = None,
    ) -> dict[str, Any]:
        """Open ``paths`` (viewers ``base``, ``base + 1``, ...) as sinks of ``group``; the count,
        failures and handshakes/s. Viewers whose number is a multiple of ``sample_every`` (0:
        none) record latencies. With ``sio_room`` they are viewers of that room of the
        socket.io peer (``SioSink``)."""
        return await self._open(
            "connect",
            paths,
            base,
            group=group,
            port=port,
            welcome=welcome,
            record=record,
            sample_every=sample_every,
            concurrency=concurrency,
            sio_room=sio_room,
        )

    async def resume(
        self, group: str, ports: list[int], paths: list[str], concurrency: int
    ) -> dict[str, Any]:
        """Open ``paths`` as viewers that reconnect and resume (viewer n on port n % len(ports));
        what ``connect`` says."""
        return await self._open("resume", paths, 0, group=group, ports=ports, concurrency=concurrency)

    async def _open(self, op: str, paths: list[str], base: int, **fields: Any) -> dict[str, Any]:
        """``paths`` dealt over the load processes in turn (process i opens viewers base + i,
        base + i + n, ...), each told to ``op`` them; what they opened, added up."""
        count = len(self.conns)
        commands = [
            {"op": op, "host": "127.0.0.1", "paths": paths[i::count], "first": base + i, "stride": count}
            | fields
            for i in range(count)
        ]
        return opened_summary(await self.call(commands))

    async def drop(self, group: str) -> int:
        """Close the group's connections for good; how many there were."""
        return sum(reply["dropped"] for reply in await self.every(op="drop", group=group))

    async def stats(self, group: str) -> dict[str, Any]:
        replies = await self.every(op="stats", group=group)
        closed: Counter[str] = Counter()
        for reply in replies:
            closed.update(reply["closed"])
        keys = ("frames", "bytes", "gifts", "chats", "open")
        total = {key: sum(reply[key] for reply in replies) for key in keys}
        return {**total, "closed": dict(closed), "time": max(reply["time"] for reply in replies)}

    async def latencies(self) -> dict[str, list[float]]:
        """The sampled viewers' latencies (ms) of the last window, ascending, by event kind
        (``gift``, ``chat``)."""
        values = {"gift": array.array("d"), "chat": array.array("d")}
        for reply in await self.every(op="latencies"):
            for kind, out in values.items():
                out.frombytes(reply[kind])
        return {kind: sorted(out) for kind, out in values.items()}

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


# Answers that ask for the same frame again: the server could not tell whether it was done,
# and the idempotency key (or client_id) makes a resend act at most once.
RETRY_CODES = frozenset({"engine_unavailable"})
RETRY_DELAY_S = 0.2


@dataclass
class GiftLedger:
    """What the gifters (or the talkers' chat messages) sent and what came back."""

    sent: dict[str, float] = field(default_factory=dict)  # idempotency key -> send time
    ack_ms: list[float] = field(default_factory=list)
    acked_ids: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
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


class Poster(Sink):
    """A connection that posts keyed frames (gifts, chat messages) and reads their answers;
    batches are not decoded. An answer in ``RETRY_CODES`` has the frame sent again with the
    same key, as a client should, and the ack time counts from the first send."""

    ack_type: ClassVar[str]
    key_field: ClassVar[str]
    id_field: ClassVar[str]

    def __init__(self, request: bytes, opened: asyncio.Future[None], ledger: GiftLedger, tag: str) -> None:
        super().__init__(request, FrameBook(), None, False, True, opened)
        self.ledger = ledger
        self.tag = tag
        self.sent = 0
        self.unanswered: dict[str, bytes] = {}
        self.closed_by_us = False

    def message(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"batch"'):
            return
        body = orjson.loads(payload)
        kind = body.get("type")
        if kind == "welcome":
            self.welcomed = True
            self._open()
        elif kind == self.ack_type:
            self.unanswered.pop(body[self.key_field], None)
            self.ledger.ack(body[self.key_field], body[self.id_field])
        elif kind == "error":
            self.refused(body.get(self.key_field), body.get("code", "?"))

    def refused(self, key: str | None, code: str) -> None:
        frame = self.unanswered.get(key) if key is not None else None
        if frame is not None and code in RETRY_CODES:
            self.ledger.retries[code] += 1
            asyncio.get_running_loop().call_later(RETRY_DELAY_S, self.send, 0x1, frame)
            return
        if key is not None:
            self.unanswered.pop(key, None)
        self.ledger.error(key, code)

    def encode(self, body: dict[str, Any]) -> bytes:
        return orjson.dumps(body)

    def post(self, key: str, body: dict[str, Any]) -> None:
        frame = self.encode(body)
        self.unanswered[key] = frame
        self.ledger.sent[key] = time.perf_counter()
        self.ledger.answered.clear()
        self.send(0x1, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.closed_by_us:
            self.ledger.closed[str(self.close_code)] += 1

    def close(self) -> None:
        self.closed_by_us = True
        super().close()


class Gifter(Poster):
    """A sender's connection: sends ``gift`` frames, reads acks and errors."""

    ack_type = "gift_ack"
    key_field = "idempotency_key"
    id_field = "gift_event_id"

    def gift(self, run: str) -> None:
        key = f"{self.tag}-{run}-{self.sent}"
        self.sent += 1
        self.post(key, {"type": "gift", "gift_id": GIFT_ID, "count": 1, "idempotency_key": key})


class SioGifter(Gifter):
    """A sender's connection to the socket.io peer: ``gift`` events asking for an ack, the
    room's own ``gift`` events ignored."""

    def __init__(
        self, request: bytes, opened: asyncio.Future[None], ledger: GiftLedger, tag: str, connect: bytes
    ) -> None:
        super().__init__(request, opened, ledger, tag)
        self.connect = connect

    def message(self, payload: bytes) -> None:
        if payload.startswith(SIO_GIFT):
            return
        if payload == b"2":
            self.send(0x1, b"3")
        elif payload.startswith(b"43"):
            body = orjson.loads(payload[payload.index(b"[") :])[0]
            key = body.get("idempotency_key")
            error = body.get("error")
            if error is not None:
                self.refused(key, error.get("code", "?"))
            else:
                self.unanswered.pop(key, None)
                self.ledger.ack(key, body["gift_event_id"])
        elif payload.startswith(SIO_JOINED):
            self.welcomed = True
            self._open()
        elif payload.startswith(b"0{"):
            self.send(0x1, self.connect)
        elif not payload.startswith(b"4"):
            self._fail(f"unexpected socket.io packet: {payload[:200]!r}")

    def encode(self, body: dict[str, Any]) -> bytes:
        # The packet's ack id is the gift's number on this connection; a resend keeps it.
        return b"42" + str(self.sent).encode() + orjson.dumps([body.pop("type"), body])


SinkT = TypeVar("SinkT", bound=Sink)


async def open_client(
    port: int, room_id: str, token: str, make: Callable[[bytes, asyncio.Future[None]], SinkT]
) -> SinkT:
    """One sending connection into ``room_id``, open once its ``welcome`` has arrived."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[None] = loop.create_future()
    client = make(upgrade_request("127.0.0.1", port, ws_path(room_id, token)), opened)
    await loop.create_connection(lambda: client, "127.0.0.1", port)
    await asyncio.wait_for(opened, CONNECT_TIMEOUT_S)
    return client


async def open_gifters(port: int, room_id: str, senders: list[Sender], ledger: GiftLedger) -> list[Gifter]:
    return [
        await open_client(
            port,
            room_id,
            token_of(sender),
            lambda request, opened, tag=sender.user_id: Gifter(request, opened, ledger, tag),  # type: ignore[misc]
        )
        for sender in senders
    ]


async def open_sio_gifters(port: int, room: str, tags: list[str], ledger: GiftLedger) -> list[SioGifter]:
    """One socket.io peer connection per tag, each in ``room`` as the user named by its tag."""
    loop = asyncio.get_running_loop()
    gifters = []
    for tag in tags:
        opened: asyncio.Future[None] = loop.create_future()
        request = upgrade_request("127.0.0.1", port, SIO_PATH, None)
        gifter = SioGifter(request, opened, ledger, tag, sio_connect(room, tag))
        await loop.create_connection(lambda gifter=gifter: gifter, "127.0.0.1", port)  # type: ignore[misc]
        await asyncio.wait_for(opened, CONNECT_TIMEOUT_S)
        gifters.append(gifter)
    return gifters


class Talker(Poster):
    """A viewer's connection that sends ``chat`` and ``like`` frames and reads ``chat_ack``
    and ``error`` answers."""

    ack_type = "chat_ack"
    key_field = "client_id"
    id_field = "event_id"

    def __init__(self, request: bytes, opened: asyncio.Future[None], ledger: GiftLedger, tag: str) -> None:
        super().__init__(request, opened, ledger, tag)
        self.likes_sent = 0

    def chat(self, run: str) -> None:
        key = f"{self.tag}-{run}-{self.sent}"
        self.sent += 1
        self.post(key, {"type": "chat", "text": f"hello {run} {self.sent}", "client_id": key})

    def like(self, count: int) -> None:
        self.likes_sent += count
        self.send(0x1, orjson.dumps({"type": "like", "count": count}))


async def open_talkers(port: int, room_id: str, tokens: list[str], ledger: GiftLedger) -> list[Talker]:
    return [
        await open_client(
            port,
            room_id,
            token,
            lambda request, opened, tag=f"t{i}": Talker(request, opened, ledger, tag),  # type: ignore[misc]
        )
        for i, token in enumerate(tokens)
    ]


async def pace_gifts(gifters: list[Gifter], rate: float, seconds: float | None, run: str) -> int:
    """Send ``rate`` gifts/s round-robin over ``gifters`` for ``seconds`` (None: until
    cancelled); how many sent."""
    return await pace(rate, seconds, lambda sent: gifters[sent % len(gifters)].gift(run))


# --- viewers that reconnect and resume -----------------------------------------------------

# The reconnect policy of client_demo/js/live.js: after a drop, wait a delay drawn between half
# and all of ``RESUME_MIN_DELAY_S * 2 ** attempt`` (capped at ``RESUME_MAX_DELAY_S``), plus,
# after a restarting server's 1012, a share drawn of the window its reason names; and reconnect
# with ``since`` (the last batch's offset) and ``epoch``; a welcome resets the attempt.
RESUME_MIN_DELAY_S = 0.5
RESUME_MAX_DELAY_S = 10.0
# Close codes after which a viewer does not come back (live.js's VIEWER_FINAL_CODES).
FINAL_CLOSE_CODES = frozenset({1000, 4401, 4403, 4404, 4410})
RESTART_WINDOW = re.compile(rb"reconnect within (\d+) ms")


def resume_delay_s(attempt: int, draw: float, window_s: float = 0.0, spread: float = 0.0) -> float:
    """live.js's delay before reconnect number ``attempt`` (0 first), ``draw`` and ``spread``
    in [0, 1): ``spread`` places it within ``window_s``, a restarting server's window."""
    ceiling = min(RESUME_MAX_DELAY_S, RESUME_MIN_DELAY_S * 2.0**attempt)
    return ceiling / 2 + draw * ceiling / 2 + spread * window_s


def restart_window_s(code: int | None, reason: bytes) -> float:
    """The window a 1012 close's reason names (live.js's restartWindowMs), in seconds; else 0."""
    match = RESTART_WINDOW.search(reason) if code == 1012 else None
    return int(match[1]) / 1000 if match else 0.0


class Resumer(Sink):
    """A viewer that reconnects as live.js does, resuming from the offset of the last batch it
    read, and keeps the frames of every connection in one list (so a duplicate or a gap across
    a reconnect shows in the completeness). It notes when each welcome came."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        book: FrameBook,
        offsets: dict[int, str],
        draw: Callable[[], float],
    ) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(b"", book, None, True, True, loop.create_future())
        self.host, self.port, self.path = host, port, path
        self.offsets = offsets  # frame number -> the batch's offset, shared by the process
        self.draw = draw
        self.epoch: str | None = None
        self.offset: str | None = None
        self.attempt = 0
        self.attempts = 0  # connections tried after the first
        self.retried: Counter[str] = Counter()  # why each of them was needed
        self.welcomes: list[float] = []
        self.resumed = 0
        self.stopped = False
        self.generation = 0
        self.dialing: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Open a connection (the first, or a reconnect)."""
        if self.stopped:
            return
        path = self.path
        if self.offset and self.epoch:
            path += f"&since={self.offset}&epoch={self.epoch}"
        self.request = upgrade_request(self.host, self.port, path)
        self.handshaking, self.pending, self.welcomed, self.lost = True, b"", False, False
        self.close_code, self.close_reason = None, b""
        self.generation += 1
        generation = self.generation
        self.dialing = asyncio.get_running_loop().create_task(self._dial())
        self.dialing.add_done_callback(lambda done: self._dial_failed(done, generation))

    async def _dial(self) -> None:
        await asyncio.get_running_loop().create_connection(lambda: self, self.host, self.port)

    def _dial_failed(self, done: asyncio.Task[None], generation: int) -> None:
        exc = None if done.cancelled() else done.exception()
        if exc is not None and generation == self.generation:
            self._dropped(type(exc).__name__)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.stopped:
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.transport = None
        self._dropped()

    def _dropped(self, why: str | None = None) -> None:
        if self.stopped:
            return
        if self.close_code in FINAL_CLOSE_CODES:
            self.stopped = True
            return
        if why is None:
            stage = "after welcome" if self.welcomed else "in handshake"
            why = f"close {self.close_code} {stage}" if self.close_code else f"dropped {stage}"
        self.retried[why] += 1
        window_s = restart_window_s(self.close_code, self.close_reason)
        delay = resume_delay_s(self.attempt, self.draw(), window_s, self.draw())
        self.attempt += 1
        self.attempts += 1
        asyncio.get_running_loop().call_later(delay, self.start)

    def message(self, payload: bytes) -> None:
        if payload.startswith(b'{"type":"resync"'):
            return  # the fresh welcome that follows is read as the first frame
        if not self.welcomed:
            if payload.startswith(b'{"type":"welcome"'):
                welcome = orjson.loads(payload)
                self.epoch, self.offset = welcome["epoch"], welcome["offset"]
                self.resumed += bool(welcome["resumed"])
                self.welcomes.append(time.time())
                self.attempt = 0
            self.welcomed = True
            self._open()
            return
        super().message(payload)
        number = self.book.index[payload]
        offset = self.offsets.get(number)
        if offset is None and payload.startswith(b'{"type":"batch"'):
            offset = self.offsets[number] = str(orjson.loads(payload)["offset"])
        if offset is not None:
            self.offset = offset

    def stop(self) -> None:
        self.stopped = True
        if self.dialing is not None:
            self.dialing.cancel()
        self.close()


async def open_resumers(
    host: str, ports: list[int], paths: list[str], book: FrameBook, concurrency: int, first: int, stride: int
) -> tuple[list[Resumer], Counter[str]]:
    """One resuming viewer per path (viewer n on ``ports[n % len(ports)]``), ``concurrency``
    handshakes at a time; the viewers and why any first connection failed."""
    offsets: dict[int, str] = {}
    draw = random.Random(first).random
    gate = asyncio.Semaphore(concurrency)
    failures: Counter[str] = Counter()
    viewers: list[Resumer] = []

    async def one(number: int, path: str) -> None:
        viewer = Resumer(host, ports[(first + number * stride) % len(ports)], path, book, offsets, draw)
        async with gate:
            viewer.start()
            try:
                await asyncio.wait_for(asyncio.shield(viewer.opened), CONNECT_TIMEOUT_S)
            except (BenchError, TimeoutError) as exc:
                failures[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                viewer.stop()
                return
        viewers.append(viewer)

    await asyncio.gather(*(one(number, path) for number, path in enumerate(paths)))
    return viewers, failures


def opened_summary(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """What the load processes' ``connect`` or ``resume`` replies add up to: the connections
    opened, the failures by reason, the span from the first start to the last finish, the rate."""
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
