"""Fixtures: one real engine and one real server for the session; more on request.

The engine is the embedded one the suite starts itself, unless ``GIFTING_TEST_REDIS_URL``
names another (for example the machine's Redis 7, on a database other than 0). On such a
server every key lives under a prefix of this run's own, removed at the end. With
``GIFTING_TEST_ENGINE=cluster`` the suite starts a local 3-master cluster of the embedded
engine (``server/cluster.py``) and runs against it through a ``redis+cluster://`` URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.cluster import EmbeddedCluster
from server.engine import EmbeddedEngine
from tests.support import Api, ServerProcess, delete_prefix, running_server, server_env, unique

# The browser tests' fixtures (headless Chromium, a server of their own) for every test file.
pytest_plugins = ("tests.browser",)


@dataclass
class Engine:
    url: str
    embedded: EmbeddedEngine | None

    @property
    def owned(self) -> bool:
        return self.embedded is not None


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    external = os.environ.get("GIFTING_TEST_REDIS_URL")
    if external:
        yield Engine(external, None)
        return
    if os.environ.get("GIFTING_TEST_ENGINE") == "cluster":
        with EmbeddedCluster(tmp_path_factory.mktemp("cluster"), masters=3) as cluster:
            yield Engine(cluster.url, None)
        return
    embedded = EmbeddedEngine(tmp_path_factory.mktemp("engine"), fsync="everysec").start()
    try:
        yield Engine(embedded.url, embedded)
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def key_prefix(engine: Engine) -> Iterator[str]:
    prefix = f"{unique('t')}:"
    yield prefix
    if not engine.owned:
        delete_prefix(engine.url, prefix)


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def server(engine: Engine, key_prefix: str, logs: Path) -> Iterator[ServerProcess]:
    with running_server(server_env(engine.url, key_prefix), logs) as process:
        yield process


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        yield Api(http)


@pytest.fixture
def viewer() -> str:
    return unique("v")


@pytest.fixture
def room(api: Api) -> tuple[str, str]:
    """A fresh creator live in a fresh room: (creator_id, room_id)."""
    creator = unique("c")
    return creator, api.open_room(creator)


@pytest.fixture
def needs_own_engine(engine: Engine) -> None:
    if not engine.owned:
        pytest.skip("flushes or restarts the engine: runs only on an engine the suite started")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
