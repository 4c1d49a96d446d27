"""A restart's reconnecting viewers arrive faster than a server process accepts them: the
kernel holds them in the listen queue (``GIFTING_LISTEN_BACKLOG``) until the process takes
them, rather than dropping them to wait out TCP's retransmission timers."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import Engine
from tests.support import running_server, server_env

# More connections at once than uvicorn's own default backlog (2048) holds.
BURST = 3_000
WAIT_S = 5.0
HEALTH = b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"


def somaxconn() -> int:
    """The kernel's cap on any listen queue (0 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 0


def wait_until(selector: selectors.BaseSelector, pending: set[socket.socket], deadline: float) -> None:
    """Take the sockets from ``pending`` as the selector reports them ready, until none is
    left or ``deadline`` (monotonic) passes."""
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            selector.unregister(sock)
            pending.discard(sock)


@pytest.mark.skipif(somaxconn() <= BURST, reason=f"net.core.somaxconn is not above {BURST}")
def test_a_burst_of_connections_while_the_server_cannot_accept_is_held_then_served(
    engine: Engine, key_prefix: str, logs: Path
) -> None:
    sockets: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    with running_server(server_env(engine.url, key_prefix), logs) as server:
        assert server.process is not None
        try:
            os.kill(server.process.pid, signal.SIGSTOP)  # accepts nothing, as while it starts
            try:
                for _ in range(BURST):
                    sock = socket.socket()
                    sock.setblocking(False)
                    sockets.append(sock)
                    sock.connect_ex(("127.0.0.1", server.port))
                    selector.register(sock, selectors.EVENT_WRITE)
                connecting = set(sockets)
                wait_until(selector, connecting, time.monotonic() + WAIT_S)
                # Every connection was taken into the queue: none is left to TCP's retries.
                assert len(connecting) == 0, f"{len(connecting)} of {BURST} connections were dropped"
                for sock in sockets:
                    sock.send(HEALTH)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            answers = {sock: b"" for sock in sockets}
            for sock in sockets:
                selector.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + 30
            while selector.get_map() and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=1.0):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    chunk = ready.recv(65_536)
                    answers[ready] += chunk
                    if not chunk:
                        selector.unregister(ready)
            served = sum(1 for answer in answers.values() if answer.startswith(b"HTTP/1.1 200"))
            assert served == BURST
        finally:
            selector.close()
            for sock in sockets:
                sock.close()
