"""The hub's rules fed with inputs: frames, subprotocols, combo timing and per-tick batches."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from server.api.ws import FRAME_HANDLERS
from server.domain.combos import ComboWatch
from server.domain.events import RoomEvent, parse_entry, parse_offset
from server.domain.requests import GiftRequest
from server.errors import InvalidRequest
from server.hub import room as room_module
from server.hub.outlet import GiftingWebSocketProtocol
from server.hub.protocol import FRAME_TYPES, JSON, MSGPACK, Ping, decode, encode, negotiate, ws_frame
from server.hub.room import BROADCAST_CHECK_EVERY, LocalRoom, Viewer, catch_up_frames
from server.store.records import Gifter, Room, RoomState

pytestmark = pytest.mark.pure


def parse_frame(data: bytes) -> Frame:
    """Read one frame with the websockets library's own parser, as a client would."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


@given(st.binary(max_size=70_000), st.booleans())
def test_a_prebuilt_frame_parses_as_exactly_its_payload(payload: bytes, binary: bool) -> None:
    frame = parse_frame(ws_frame(payload, binary))
    assert frame.opcode is (Opcode.BINARY if binary else Opcode.TEXT)
    assert frame.fin and bytes(frame.data) == payload
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)


def test_encode_once_gives_the_message_in_each_subprotocol() -> None:
    message = {"type": "batch", "offset": "1-0", "events": [{"type": "viewers", "viewers": 3}]}
    assert orjson.loads(parse_frame(encode(message, JSON)).data) == message
    assert msgpack.unpackb(parse_frame(encode(message, MSGPACK)).data) == message


@pytest.mark.parametrize(
    ("offered", "subprotocol", "token"),
    [
        ([], None, None),
        (["gifting.v1.msgpack"], MSGPACK, None),
        (["chat", "gifting.v1.json", "gifting.v1.msgpack"], JSON, None),
        (["bearer.a.b.c", "gifting.v1.msgpack"], MSGPACK, "a.b.c"),
        (["bearer.x"], None, "x"),
    ],
)
def test_negotiation_picks_the_first_gifting_subprotocol_and_the_token(
    offered: list[str], subprotocol: str | None, token: str | None
) -> None:
    handshake = negotiate(offered)
    assert (handshake.subprotocol, handshake.token) == (subprotocol, token)
    assert handshake.encoding == (subprotocol or JSON)


def test_every_client_frame_type_has_its_rules_and_one_handler() -> None:
    assert list(FRAME_HANDLERS) == list(FRAME_TYPES) == ["gift", "ping", "chat", "like"]


def test_client_frames_decode_to_requests_in_both_subprotocols() -> None:
    gift = {"type": "gift", "gift_id": "rose", "count": 5, "idempotency_key": "k-1"}
    expected = GiftRequest(gift_id="rose", count=5, idempotency_key="k-1")
    assert decode(orjson.dumps(gift).decode(), JSON) == expected
    assert decode(orjson.dumps(gift), JSON) == expected
    assert decode(msgpack.packb(gift), MSGPACK) == expected
    assert decode('{"type": "ping"}', JSON) == Ping()


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_decode_to_anything_but_a_request_or_invalid_request(data: bytes) -> None:
    for encoding in (JSON, MSGPACK):
        try:
            frame = decode(data, encoding)
        except InvalidRequest as exc:
            assert exc.code == "invalid_request" and exc.message
        else:
            assert isinstance(frame, (GiftRequest, Ping))


def test_offsets_parse_and_compare_as_stream_ids() -> None:
    assert (
        parse_offset("1732550000000-2") < parse_offset("1732550000000-10") < parse_offset("1732550000001-0")
    )
    for bad in ("", "12", "1-2-3", "-1-0", "a-b", "1" * 20 + "-0", "1-0\n", "\u0661-\u0661", " 1-0"):
        with pytest.raises(InvalidRequest):
            parse_offset(bad)


def test_combo_watch_lists_streaks_whose_window_passed() -> None:
    watch = ComboWatch(window_ms=3_000)
    watch.saw_gift("r1", "alice", 1_000, streakable=True)
    watch.saw_gift("r1", "bob", 2_000, streakable=True)
    watch.saw_gift("r2", "alice", 2_500, streakable=True)
    assert watch.due(4_000) == []
    assert watch.due(4_001) == [("r1", "alice", 1_000)]
    watch.saw_gift("r1", "alice", 4_000, streakable=True)  # the streak went on
    assert watch.due(5_001) == [("r1", "bob", 2_000)]
    watch.saw_end("r1", "bob")
    watch.saw_gift("r2", "alice", 5_000, streakable=False)  # a non-streakable gift closes it
    assert watch.due(9_000) == [("r1", "alice", 4_000)]
    watch.forget("r1", "alice", 3_999)  # about an older streak: ignored
    assert len(watch) == 1
    watch.forget("r1", "alice", 4_000)
    assert watch.due(99_000) == []


def gift_event(offset: str, sender: str, count: int, balance: int | None = None) -> RoomEvent:
    fields = {"t": "gift", "e": f"g_{offset}", "s": sender, "n": sender.title(), "g": "rose"}
    fields |= {"c": str(count), "k": str(count), "ts": "5", "b": "" if balance is None else str(balance)}
    return parse_entry(offset, fields)


def state(viewers: int, coins: int = 0, goal: int | None = None, *top: Gifter) -> RoomState:
    return RoomState("live", viewers, goal, coins, tuple(top))


def test_a_tick_sends_one_batch_with_stream_events_then_what_changed() -> None:
    room = LocalRoom(Room("r", "c", "t", "live", 0, None, "e"), state(1), "0-0", "0-0")
    room.add_events([gift_event("1-0", "ann", 2, balance=8), gift_event("1-1", "bo", 1)])
    room.add_events([parse_entry("2-0", {"t": "goal_set", "goal": "50", "ts": "6"})])
    changes = room.state_events(state(1, 3, 50, Gifter("ann", "Ann", 2), Gifter("bo", "Bo", 1)))
    batch = room.take_batch(changes)[False]
    assert batch is not None and batch["offset"] == "2-0" == room.cursor
    kinds = [event["type"] for event in batch["events"]]
    assert kinds == ["gift", "gift", "leaderboard", "goal"]
    gift: dict[str, Any] = batch["events"][0]
    assert gift == {
        "type": "gift",
        "event_id": "g_1-0",
        "sender": {"id": "ann", "name": "Ann"},
        "gift_id": "rose",
        "count": 2,
        "combo": 2,
        "ts": 5,
    }
    assert batch["events"][1]["sender"] == {"id": "bo", "name": "Bo"}  # balances stay private
    assert [event["event_id"] for event in room.recent] == ["g_1-0", "g_1-1"]
    # Nothing new and nothing changed: no frame at all.
    assert room.take_batch(room.state_events(room.state)) == {False: None, True: None}
    room.state_events(state(4, 3, 50, *room.state.leaderboard))
    viewers_only = room.take_batch(room.presence_events(0.0, 1.0))[False]
    assert viewers_only == {"type": "batch", "offset": "2-0", "events": [{"type": "viewers", "viewers": 4}]}


def test_presence_goes_out_at_most_once_an_interval_with_the_count_as_it_is_then() -> None:
    room = LocalRoom(Room("r", "c", "t", "live", 0, None, "e"), state(1), "0-0", "0-0")
    assert room.state_events(state(2)) == []  # the count is presence, not state
    assert room.presence_events(10.0, 1.0) == [{"type": "viewers", "viewers": 2}]
    for viewers, at in ((3, 10.5), (9, 10.9), (5, 10.99)):
        room.state_events(state(viewers))
        assert room.presence_events(at, 1.0) == []  # held: the last went out less than 1 s ago
    assert room.presence_events(11.0, 1.0) == [{"type": "viewers", "viewers": 5}]
    assert room.presence_events(12.5, 1.0) == []  # nothing changed
    # Back to the count last sent by the time it is due: sent all the same once a connection
    # was shown another (a welcome), so that it does not keep that one.
    room.state_events(state(6))
    room.showed_viewers(6)
    room.state_events(state(5))
    assert room.presence_events(13.0, 1.0) == [{"type": "viewers", "viewers": 5}]
    room.showed_viewers(5)
    assert room.presence_events(14.0, 1.0) == []
    # 0: every tick.
    room.state_events(state(7))
    assert room.presence_events(14.0, 0.0) == [{"type": "viewers", "viewers": 7}]


def test_room_end_stays_the_last_event_of_its_batch() -> None:
    room = LocalRoom(Room("r", "c", "t", "live", 0, None, "e"), state(1), "0-0", "0-0")
    room.add_events([gift_event("1-0", "ann", 1), parse_entry("2-0", {"t": "room_end", "ts": "9"})])
    changes = room.state_events(state(0, 1, None, Gifter("ann", "Ann", 1)))
    batch = room.take_batch([*changes, *room.presence_events(0.0, 1.0)])[False]
    assert batch is not None and room.ended
    assert [event["type"] for event in batch["events"]] == [
        "gift",
        "leaderboard",
        "goal",
        "viewers",
        "room_end",
    ]


def test_a_test_alert_reaches_overlays_only() -> None:
    room = LocalRoom(Room("r", "c", "t", "live", 0, None, "e"), state(1), "0-0", "0-0")
    room.add_events([gift_event("1-0", "ann", 1), parse_entry("1-1", {"t": "test_alert", "ts": "7"})])
    batches = room.take_batch([])
    viewers, overlays = batches[False], batches[True]
    assert viewers is not None and overlays is not None
    assert [e["type"] for e in viewers["events"]] == ["gift"]
    assert [e["type"] for e in overlays["events"]] == ["gift", "test_alert"]
    assert overlays["events"][1]["sender"] == {"id": "test-viewer", "name": "Test Viewer"}
    assert viewers["offset"] == overlays["offset"] == "1-1"


@pytest.mark.parametrize("encoding", [JSON, MSGPACK])
def test_a_catch_up_comes_in_frames_that_fit_the_page_each_carrying_its_last_offset(encoding: str) -> None:
    events = [gift_event(f"{i}-0", "s" * 60 + str(i % 7), 1 + i % 3) for i in range(1, 400)]
    events.insert(100, parse_entry("100-1", {"t": "test_alert", "ts": "7"}))
    raw = catch_up_frames(events, False, encoding, 4096)
    assert len(raw) > 10 and all(len(frame) <= 4096 for frame in raw)
    frames = [parse_frame(frame) for frame in raw]
    batches = [orjson.loads(f.data) if encoding == JSON else msgpack.unpackb(f.data) for f in frames]
    assert [e for batch in batches for e in batch["events"]] == [e.public for e in events if e.kind == "gift"]
    for batch in batches:
        last = batch["events"][-1]
        assert batch["type"] == "batch" and batch["offset"] == last["event_id"].removeprefix("g_")
    overlay = [orjson.loads(parse_frame(f).data) for f in catch_up_frames(events[99:102], True, JSON, 4096)]
    assert [e["type"] for e in overlay[0]["events"]] == ["gift", "test_alert", "gift"]


class Transport:
    """What a connection's outlet does with a frame, as far as a room's broadcast sees it:
    takes it (a connection that keeps up) or refuses it (one closing or too slow)."""

    def __init__(self, takes: bool = True, wrote: asyncio.Event | None = None) -> None:
        self.takes = takes
        self.frames: list[bytes] = []
        self.wrote = wrote  # set once a frame is taken

    def write(self, frame: bytes) -> bool:
        if self.takes:
            self.frames.append(frame)
            if self.wrote is not None:
                self.wrote.set()
        return self.takes


def viewer_on(transport: Transport, number: int) -> Viewer:
    return Viewer(cast(GiftingWebSocketProtocol, transport), f"v{number}", f"V{number}", JSON, "r")


@pytest.mark.anyio
async def test_a_broadcast_lets_other_tasks_run_between_slices_and_writes_each_viewer_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every look at the clock finds the slice over: a turn every BROADCAST_CHECK_EVERY writes.
    monkeypatch.setattr(room_module, "BROADCAST_SLICE_S", 0.0)
    room = LocalRoom(Room("r", "c", "t", "live", 0, None, "e"), state(1), "0-0", "0-0")
    wrote = asyncio.Event()
    transports = [Transport(wrote=wrote) for _ in range(10 * BROADCAST_CHECK_EVERY)]
    viewers = [viewer_on(transport, number) for number, transport in enumerate(transports)]
    slow = Transport(takes=False)
    for viewer in [*viewers, viewer_on(slow, -1)]:
        room.add(viewer)
    room.add_events([gift_event("1-0", "ann", 1)])
    batches = room.take_batch([])
    seen: list[int] = []
    joined = Transport()

    async def meanwhile() -> None:
        # A gift frame read during a broadcast is handled before the broadcast ends.
        await wrote.wait()
        seen.append(sum(1 for transport in transports if transport.frames))
        for viewer, transport in zip(viewers, transports, strict=True):  # one not written yet leaves
            if not transport.frames:
                room.remove(viewer)
                transport.takes = False  # its connection is closing
                break
        room.add(viewer_on(joined, 10_000))  # and another joins

    other = asyncio.get_running_loop().create_task(meanwhile())
    dropped = await room.broadcast(batches)
    await other
    assert len(seen) == 1 and 0 < seen[0] < len(transports), seen
    # The one too slow is reported; the one that left is not, and got nothing; the one that
    # joined after the cursor moved gets nothing of this batch; every other viewer gets it once.
    assert [viewer.user_id for viewer in dropped] == ["v-1"]
    written = [len(transport.frames) for transport in transports]
    assert written.count(0) == 1 and written.count(1) == len(transports) - 1
    assert joined.frames == [] and room.cursor == "1-0"


@pytest.mark.anyio
@pytest.mark.parametrize("overlay", [False, True], ids=["msgpack viewer", "overlay"])
async def test_a_connection_that_joins_another_audience_during_a_broadcast_gets_nothing_of_its_batch(
    monkeypatch: pytest.MonkeyPatch, overlay: bool
) -> None:
    """The audiences of a room (a subprotocol, or the overlays) are written one after
    another, with turns of the event loop in between: a connection that joins one not
    written yet, or ends its catch-up there, already has the batch's events (the cursor
    moved before it), and must not be written them again."""
    monkeypatch.setattr(room_module, "BROADCAST_SLICE_S", 0.0)
    room = LocalRoom(Room("r", "c", "t", "live", 0, None, "e"), state(1), "0-0", "0-0")
    wrote = asyncio.Event()
    transports = [Transport(wrote=wrote) for _ in range(4 * BROADCAST_CHECK_EVERY)]
    for number, transport in enumerate(transports):
        room.add(viewer_on(transport, number))

    def other_audience(transport: Transport, number: int) -> Viewer:
        outlet = cast(GiftingWebSocketProtocol, transport)
        if overlay:
            return Viewer(outlet, "c", "C", JSON, "r", overlay=True)
        return Viewer(outlet, f"m{number}", f"M{number}", MSGPACK, "r")

    there = Transport()
    room.add(other_audience(there, 0))
    room.add_events([gift_event("1-0", "ann", 1)])
    batches = room.take_batch([])
    joined, caught_up = Transport(), Transport()
    resuming = other_audience(caught_up, 2)
    room.add_catching_up(resuming)

    async def meanwhile() -> None:
        await wrote.wait()  # the first audience is being written
        room.add(other_audience(joined, 1))
        room.caught_up(resuming)

    other = asyncio.get_running_loop().create_task(meanwhile())
    await room.broadcast(batches)
    await other
    assert all(len(transport.frames) == 1 for transport in transports)
    assert len(there.frames) == 1
    assert joined.frames == [] and caught_up.frames == []
