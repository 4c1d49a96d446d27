"""Servers a user might pick instead, run beside the gifting server by the room benchmark.

``socketio/`` is a Node socket.io server that emits one event per gift to the room (its
README says what it does and how to run it alone). ``socketio_peer`` installs its
dependencies with ``npm ci`` when they are missing, starts it on a free port and stops it;
when Node or npm is missing, or the install fails (offline), it raises ``PeerUnavailable``
with the reason, which the benchmark reports as the peer not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from loadtest.harness import log_tail, stop_process

SOCKETIO_DIR = Path(__file__).resolve().parent / "socketio"
INSTALL_TIMEOUT_S = 300.0
START_TIMEOUT_S = 15.0


class PeerUnavailable(RuntimeError):
    """The peer cannot run on this machine; the message says why."""


@dataclass(frozen=True)
class Peer:
    port: int
    pid: int


def ensure_socketio_installed() -> None:
    """Install the peer's ``node_modules`` with ``npm ci`` (the committed lock file) when
    missing; PeerUnavailable if Node or npm is absent or the install fails."""
    if shutil.which("node") is None:
        raise PeerUnavailable("node is not installed (the socket.io peer needs Node 18 or later and npm)")
    if (SOCKETIO_DIR / "node_modules" / "socket.io" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable(f"npm is not installed, and {SOCKETIO_DIR}/node_modules is missing")
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=SOCKETIO_DIR,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerUnavailable(f"npm ci did not finish in {INSTALL_TIMEOUT_S:g} s (offline?)") from exc
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise PeerUnavailable(f"npm ci failed (offline?): {tail}")


@contextlib.asynccontextmanager
async def socketio_peer(log_path: Path) -> AsyncIterator[Peer]:
    """Run the socket.io peer on a free port until the block ends."""
    await asyncio.to_thread(ensure_socketio_installed)
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            "node",
            "server.js",
            "0",
            cwd=SOCKETIO_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if not line.startswith(b"listening "):
            error = " | ".join(log_tail(log_path, 5))
            raise PeerUnavailable(f"the socket.io peer did not start: {line!r} {error}")
        yield Peer(int(line.split()[1]), process.pid)
    finally:
        await stop_process(process)
