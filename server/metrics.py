"""Prometheus metrics: every metric the server exports is defined here, and ``exposition``
renders them for ``GET /metrics``.

Each process counts what it does itself, so Prometheus scrapes every process. With
``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client's multiprocess mode is on instead: the
processes of one node (``--workers N``) keep their values in files in that directory, and
whichever answers ``/metrics`` serves the sum of them all.

The hot paths pay for a batch, not for a connection: a broadcast counts its frames and bytes
once per audience (its connections times the frame's size), and no metric has a label per
connection, user or room.
"""

from __future__ import annotations

import glob
import os
import re

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client import disable_created_metrics as _disable_created_metrics
from prometheus_client.exposition import choose_encoder

from server.store import failures

# ``*_created`` series double every counter and histogram for a start time nobody graphs.
_disable_created_metrics()

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
HTTP = "http"
WS = "ws"
# Latencies from half a millisecond (a lone script on an idle engine) to a second.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
TICK_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

GIFTS = Counter(
    "gifting_gifts_total",
    "Gift requests by transport (http, ws) and outcome: acked, replayed, or the error code "
    "of the refusal (insufficient_coins, rate_limited, room_ended, engine_unavailable, "
    "internal_error, ...)",
    ["transport", "outcome"],
)
CHAT_MESSAGES = Counter(
    "gifting_chat_messages_total",
    "Chat messages by transport (http, ws) and outcome: posted, replayed, or the error code of "
    "the refusal (invalid_request, rate_limited, slow_mode, message_blocked, links_not_allowed, ...)",
    ["transport", "outcome"],
)
GIFT_DEBIT_SECONDS = Histogram(
    "gifting_gift_debit_seconds",
    "Time the gift debit script took as the server sees it, from the call to the answer "
    "(group commit included), refusals included",
    buckets=LATENCY_BUCKETS,
)
BATTLES = Counter(
    "gifting_battles_total",
    "Battles by what happened: invited, started, declined, ended (at their time), forfeited",
    ["outcome"],
)
COINS_SPENT = Counter("gifting_coins_spent_total", "Coins debited from senders by gifts (replays excluded)")
COINS_PURCHASED = Counter(
    "gifting_coins_purchased_total",
    "Coins credited to wallets by paid purchase orders, by provider",
    ["provider"],
)
PURCHASES = Counter(
    "gifting_purchases_total", "Purchase orders credited (redeliveries excluded), by provider", ["provider"]
)
RESTORES = Counter(
    "gifting_restores_total",
    "Refunded purchases whose refund the provider reversed: coins put back once, by provider",
    ["provider"],
)
CLAWBACKS = Counter(
    "gifting_clawbacks_total",
    "Purchases taken back (redeliveries excluded), by provider and reason (refunded, charged_back)",
    ["provider", "reason"],
)
DIAMONDS_CREDITED = Counter(
    "gifting_diamonds_credited_total",
    "Diamonds credited to creators (as pending), by the gift path or the outbox sweep",
)
WS_CONNECTIONS = Gauge(
    "gifting_websocket_connections",
    "Open room sockets by kind (viewer, overlay)",
    ["kind"],
    multiprocess_mode="livesum",
)
WS_FRAMES_SENT = Counter("gifting_websocket_frames_sent_total", "WebSocket frames written to room sockets")
WS_BYTES_SENT = Counter(
    "gifting_websocket_bytes_sent_total",
    "Bytes of WebSocket frames written to room sockets, headers included",
)
WS_SLOW_CONSUMERS_DROPPED = Counter(
    "gifting_websocket_slow_consumers_dropped_total",
    "Room sockets closed with 4408 for falling GIFTING_WS_BUFFER_BYTES behind the room",
)
WS_INVALID_FRAMES = Counter(
    "gifting_websocket_invalid_frames_total",
    "Client frames on room sockets that are no frame of a known type (not JSON or msgpack, "
    "not an object, an unknown type, a ping with fields); a gift frame that fails its checks "
    "counts as a gift refused with invalid_request instead",
)
WS_REFUSALS = Counter(
    "gifting_websocket_refusals_total",
    "Room socket handshakes refused, by close code and error code",
    ["code", "reason"],
)
HUB_TICK_SECONDS = Histogram(
    "gifting_hub_tick_seconds",
    "Work of one hub tick once its stream read has returned: room states, batches written, combos closed",
    buckets=TICK_BUCKETS,
)
LIKES_ACCEPTED = Counter(
    "gifting_likes_accepted_total", "Likes accepted from like frames and requests, within each user's rate"
)
LIKES_DROPPED = Counter(
    "gifting_likes_dropped_total",
    "Likes dropped for being over the user's rate (GIFTING_LIKE_RATE a second in a room)",
)
LIKES_WRITTEN = Counter(
    "gifting_likes_written_total",
    "Likes added to room totals in the engine by this process's per-tick tallies (acknowledged)",
)
LIKE_FLUSHES = Counter(
    "gifting_like_flushes_total",
    "Engine calls writing a room's per-tick like and join tally (room_likes.lua): at most one "
    "per room with likes or joins and hub tick",
)
JOINS = Counter(
    "gifting_joins_total", "Room sockets opened by viewers as joins (overlays and resumes excepted)"
)
ENGINE_ERRORS = Counter(
    "gifting_engine_errors_total",
    "Engine calls that failed as the server saw them, by kind (connection, timeout, response, "
    "not_replicated: fewer replicas than GIFTING_REPLICA_ACKS confirmed a money write in time)",
    ["kind"],
)
ENGINE_PIPELINES = Counter(
    "gifting_engine_pipelines_total",
    "Pipelines the group commit sent (store.batch): the scripts and reads queued in one "
    "event-loop turn go out as one",
)
ENGINE_PIPELINED_CALLS = Counter(
    "gifting_engine_pipelined_calls_total",
    "Script calls and reads the group commit sent (store.batch); over its pipelines, the "
    "calls that share a round trip",
)
ENGINE_RESTARTS = Counter(
    "gifting_engine_restarts_total",
    "Times the embedded engine died and was started again on its files by the server "
    "(server.engine.EngineSupervisor); counted by the process that owns the engine",
)


class Answers:
    """The outcomes of one kind of request (a gift, a chat message) counted by transport:
    ``accepted``, ``replayed``, or the code of the refusal."""

    def __init__(self, counter: Counter, accepted: str) -> None:
        self._counter = counter
        # The series every dashboard expects, present (at 0) from the first scrape on.
        self._answered = {
            (transport, replayed): counter.labels(transport, "replayed" if replayed else accepted)
            for transport in (HTTP, WS)
            for replayed in (False, True)
        }

    def answered(self, transport: str, replayed: bool) -> None:
        self._answered[(transport, replayed)].inc()

    def refused(self, transport: str, code: str) -> None:
        self._counter.labels(transport, code).inc()


GIFT_ANSWERS = Answers(GIFTS, "acked")
CHAT_ANSWERS = Answers(CHAT_MESSAGES, "posted")
CONNECTIONS = {
    overlay: WS_CONNECTIONS.labels("overlay" if overlay else "viewer") for overlay in (False, True)
}
for _kind in failures.KINDS:
    ENGINE_ERRORS.labels(_kind)


def engine_error(exc: BaseException) -> None:
    """Count a failed engine call by kind (``store.failures.kind``); anything that is no
    engine failure is not counted."""
    kind = failures.kind(exc)
    if kind is not None:
        ENGINE_ERRORS.labels(kind).inc()


def frames_sent(frames: int, frame_bytes: int) -> None:
    """Count ``frames`` written frames of ``frame_bytes`` bytes each."""
    WS_FRAMES_SENT.inc(frames)
    WS_BYTES_SENT.inc(frames * frame_bytes)


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The metrics in the format the ``Accept`` header asks for (Prometheus text by default,
    or OpenMetrics), and its content type; every process's sum in multiprocess mode."""
    encoder, content_type = choose_encoder(accept or "")
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        forget_dead_processes()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, directory)
        return encoder(registry), content_type
    return encoder(REGISTRY), content_type


_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def forget_dead_processes() -> None:
    """In multiprocess mode, drop the live gauges (open connections) of processes that are
    gone without saying so: a crashed process's connections are closed, so they must not count.
    Its counters stay in the sum, which must never go down."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if not directory:
        return
    names = (os.path.basename(path) for path in glob.glob(os.path.join(directory, "gauge_live*.db")))
    pids = {int(match[1]) for name in names if (match := _LIVE_GAUGE_FILE.match(name))}
    for pid in pids - {os.getpid()}:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)


def process_exiting() -> None:
    """In multiprocess mode, take this process's live gauges out of the sum as it stops."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        multiprocess.mark_process_dead(os.getpid(), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
