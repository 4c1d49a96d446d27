"""What every benchmark shares: the server under test as a process, the CPU each process
used, percentiles, the demo API's helpers (tokens, rooms, coins), and command-line helpers.

The server runs as ``python -m server`` in demo mode under its own key prefix, with the per-user
gift rate and the per-address request limit set out of reach (every load client is
127.0.0.1). CPU is read from /proc, so a figure can be given in cores beside each rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import importlib.util
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from server.engine import free_port

# What is gifted, and where: the demo room and the cheapest gift, so one package goes far.
ROOM_ID = "demo_carol"
CREATOR_ID = "carol"
GIFT_ID = "rose"
# Paid through the demo sandbox, whichever provider the server takes on the web.
PACKAGE = {"package_id": "us_5450", "region": "US", "provider": "sandbox"}
PACKAGE_COINS = 5450

SERVER_PREFIX = "bench:"
# The per-user gift rate limit is set out of the way: this measures the path, not the limit.
UNLIMITED = 1_000_000
SUBPROTOCOL = "gifting.v1.json"
ACK_TIMEOUT_S = 15.0
PACE_TICK_S = 0.001  # the pacer's shortest sleep (``pace``)

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")


# --- measuring -----------------------------------------------------------------------------


class BenchError(RuntimeError):
    """The benchmark could not run as intended (an error reply, a server that would not start)."""


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of an ascending list."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds used so far by ``pid`` (None: this process); NaN if unknown."""
    if pid is None:
        return time.process_time()
    try:
        # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


class CpuMeter:
    """Cores used by each named process (pid None: this one; a tuple: those processes together)
    between ``start()`` and ``stop()``."""

    def __init__(self, pids: Mapping[str, int | tuple[int, ...] | None]) -> None:
        self._pids = pids
        self._wall = 0.0
        self._cpu: dict[str, float] = {}

    def _seconds(self, pid: int | tuple[int, ...] | None) -> float:
        return sum(map(cpu_seconds, pid)) if isinstance(pid, tuple) else cpu_seconds(pid)

    def start(self) -> None:
        self._cpu = {name: self._seconds(pid) for name, pid in self._pids.items()}
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._wall
        used = {name: self._seconds(pid) - self._cpu[name] for name, pid in self._pids.items()}
        return {name: round(seconds / wall, 2) for name, seconds in used.items()}


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """Keep Python's cyclic collector out of a load process's measurement: what exists is
    frozen out of its reach and it does not run inside the block, then frees the cycles made
    meanwhile. A full collection of the gift benchmark's load generator took 22-25 ms, and
    every answer it held back was counted as the server's latency."""
    if not gc.isenabled():  # inside another such block, which owns the collector
        yield
        return
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


async def pace(rate: float, seconds: float | None, send: Callable[[int], Awaitable[None] | None]) -> int:
    """Call ``send(n)`` for n = 0, 1, ... ``rate`` times a second on a fixed schedule
    (catching up at once if the loop fell behind) for ``seconds`` (None: until cancelled);
    how many were sent. A ``send`` that returns an awaitable is awaited before the next.

    Between sends it sleeps at least ``PACE_TICK_S``, one tick of uvloop's timers (whole
    milliseconds): a shorter sleep returns at once, so above 1,000 sends a second the pacer
    would spin a core that the server and the engine under test need. What falls due during
    a tick is sent when it ends."""
    interval = 1 / rate
    total = math.inf if seconds is None else round(rate * seconds)
    started = time.perf_counter()
    sent = 0
    while sent < total:
        due = started + sent * interval
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(max(due - now, PACE_TICK_S))
            now = time.perf_counter()
        while sent < total and started + sent * interval <= now:
            sending = send(sent)
            if sending is not None:
                await sending
            sent += 1
    return sent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


# --- the server under test -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_server(
    engine_url: str, log_path: Path, replica_acks: int = 0, port: int | None = None, ready: bool = True
) -> AsyncIterator[tuple[str, int]]:
    """Run ``python -m server`` on ``engine_url`` (on ``port``, else a free one) until the block
    ends, then stop it with SIGTERM; yield its URL and pid, once it is ready (with ``ready``:
    a server restarted under thousands of reconnecting clients may answer no probe for long)."""
    port = port or free_port()
    env = {
        **os.environ,
        "GIFTING_REPLICA_ACKS": str(replica_acks),
        "GIFTING_DEMO": "1",
        "GIFTING_REDIS_URL": engine_url,
        "GIFTING_PORT": str(port),
        "GIFTING_KEY_PREFIX": SERVER_PREFIX,
        # The per-user gift rate limit (default 20/s, burst 40) would throttle the senders.
        "GIFTING_GIFT_RATE": str(UNLIMITED),
        "GIFTING_GIFT_BURST": str(UNLIMITED),
        # So would the per-address request limit: every load client is 127.0.0.1. It stays
        # on, out of reach, so that its cost is measured with the rest.
        "GIFTING_IP_RATE": str(UNLIMITED),
        "GIFTING_IP_BURST": str(UNLIMITED),
    }
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        if ready:
            await wait_ready(base_url, process)
        yield base_url, process.pid
    except BaseException:
        print("--- last lines of the server log ---", *log_tail(log_path), sep="\n", file=sys.stderr)
        raise
    finally:
        await stop_process(process)


async def wait_ready(base_url: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as probe:
        while True:
            if process.returncode is not None:
                raise BenchError(f"the server exited with code {process.returncode} before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                if (await probe.get("/readyz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"the server was not ready after {READY_TIMEOUT_S} s")
            await asyncio.sleep(0.05)


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


def log_tail(path: Path, lines: int = 15) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-lines:]


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


# --- the demo API: tokens, rooms, senders and their coins ----------------------------------


@dataclass(frozen=True)
class Sender:
    user_id: str
    headers: dict[str, str]
    client: httpx.AsyncClient  # what this sender's gifts go through (see --client-pool)
    room_id: str  # the live room this sender gifts into (see --rooms)


# A setup request the server answers 503 engine_unavailable ("retry shortly": a busy or
# restarting engine) is sent again, as a client does, this many times with a doubling pause.
SETUP_RETRIES = 5
SETUP_RETRY_PAUSE_S = 0.2


async def expect(send: Callable[[], Awaitable[httpx.Response]], status: int) -> dict[str, Any]:
    """The JSON body of a reply that must have ``status``. Only requests that are harmless to
    repeat go through here: tokens, reads, a room, an order (an unpaid one expires) and its
    sandbox payment (which credits an order once)."""
    for attempt in range(SETUP_RETRIES + 1):
        reply = await send()
        if reply.status_code != 503 or attempt == SETUP_RETRIES:
            break
        await asyncio.sleep(SETUP_RETRY_PAUSE_S * 2**attempt)
    if reply.status_code != status:
        raise BenchError(
            f"{reply.request.method} {reply.request.url.path} answered {reply.status_code}, "
            f"expected {status}: {reply.text[:300]}"
        )
    body: dict[str, Any] = reply.json()
    return body


async def bearer(client: httpx.AsyncClient, user_id: str, role: str) -> dict[str, str]:
    """Request headers carrying a demo token for ``user_id`` in ``role``."""
    token = await expect(lambda: client.post("/v1/dev/token", json={"user_id": user_id, "role": role}), 200)
    return {"authorization": f"Bearer {token['token']}", "content-type": "application/json"}


async def new_sender(
    client: httpx.AsyncClient, user_id: str, gift_client: httpx.AsyncClient, room_id: str
) -> Sender:
    return Sender(user_id, await bearer(client, user_id, "viewer"), gift_client, room_id)


async def open_room(client: httpx.AsyncClient, creator_id: str) -> str:
    """Take ``creator_id`` live through the API; the new room's id."""
    headers = await bearer(client, creator_id, "creator")
    room = await expect(lambda: client.post("/v1/rooms", json={}, headers=headers), 201)
    return str(room["room_id"])


async def top_up(client: httpx.AsyncClient, sender: Sender, coins: int) -> None:
    """Buy packages through the purchase and sandbox payment flow until ``sender`` holds ``coins``."""
    wallet = await expect(lambda: client.get("/v1/wallet", headers=sender.headers), 200)
    for _ in range(math.ceil(max(0, coins - wallet["coins"]) / PACKAGE_COINS)):
        order = await expect(lambda: client.post("/v1/purchases", json=PACKAGE, headers=sender.headers), 201)
        pay = f"/v1/sandbox/orders/{order['order_id']}/pay"
        await expect(partial(client.post, pay, headers=sender.headers), 200)
    wallet = await expect(lambda: client.get("/v1/wallet", headers=sender.headers), 200)
    if wallet["coins"] < coins:
        raise BenchError(f"{sender.user_id} holds {wallet['coins']} coins after paying, not {coins}")


def http_client(base_url: str, connections: int) -> httpx.AsyncClient:
    """An HTTP/1.1 keep-alive client holding up to ``connections`` connections to the server."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0)


async def gather_limited(coros: Iterator[Coroutine[Any, Any, T]], limit: int) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(coro) for coro in coros))


# --- command line --------------------------------------------------------------------------


def positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {raw}")
    return value


def fraction(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {raw}")
    return value


def positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {raw}")
    return value


def raise_fd_limit() -> None:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def skip_missing_sniffio() -> None:
    """Make the load generator's repeated ``import sniffio`` fail at once when it is not installed.

    httpcore 1.0 runs ``import sniffio`` each time it sets up a lock or an event, several
    times per request; without sniffio installed every attempt searches sys.path again
    (about 40 us each). Recording the module as absent changes no outcome, only that cost.
    """
    if importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]  # None in sys.modules: "not importable"


def judged(
    figure: str,
    value: float | None,
    target: str,
    met: bool | None,
    ratio: float | None = None,
    unit: str = "",
) -> dict[str, Any]:
    """One figure judged against its target, as every scenario report lists them under "targets"
    (``ratio``: the figure over its ceiling or peer measured in the same run, if it has one)."""
    return {"figure": figure, "value": value, "unit": unit, "target": target, "ratio": ratio, "met": met}


def git_commit() -> str | None:
    """The checked-out commit (short hash, ``+dirty`` when tracked files differ from it); None
    outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if changed else head


def machine_summary() -> str:
    """The CPUs, architecture, kernel and Python a run had, in one line."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cpus = f"{os.cpu_count()} CPUs" + (f" ({model})" if model else "")
    return (
        f"{cpus}, {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def report_head(
    benchmark: str, args: argparse.Namespace | None = None, argv: list[str] | None = None
) -> dict[str, Any]:
    """What every benchmark's JSON report begins with: which benchmark, when, the command that
    ran it (``argv``: its arguments, default this process's), its parsed arguments (if ``args``),
    the commit, and the Python and machine it ran on."""
    arguments = sys.argv[1:] if argv is None else argv
    head: dict[str, Any] = {
        "benchmark": f"loadtest.{benchmark}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", f"loadtest.{benchmark}", *arguments]),
        "commit": git_commit(),
        "machine": machine_summary(),
    }
    if args is not None:
        head["args"] = {name: str(v) if isinstance(v, Path) else v for name, v in vars(args).items()}
    return {**head, "python": sys.version, "cpu_count": os.cpu_count(), "platform": platform.platform()}


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed, else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def run_benchmark(name: str, main: Coroutine[Any, Any, T]) -> T | None:
    """Run a benchmark's coroutine as its command does (``run_async``, sniffio's import made
    cheap); a ``BenchError`` is printed as ``<name>: FAILED: ...`` and gives None."""
    skip_missing_sniffio()
    try:
        return run_async(main)
    except BenchError as exc:
        print(f"{name}: FAILED: {exc}", file=sys.stderr)
        return None
