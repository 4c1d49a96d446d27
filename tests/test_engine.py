"""The embedded engine: a private valkey-server with an append-only file under the data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.engine import EmbeddedEngine, EngineError


def test_the_engine_keeps_data_across_a_restart_and_listens_on_a_unix_socket(tmp_path: Path) -> None:
    engine = EmbeddedEngine(tmp_path, fsync="always").start()
    try:
        assert engine.url.startswith("unix://")
        with engine.client() as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
            assert client.config_get("port") == {"port": "0"}
            client.hset("k", "coins", 545)
        engine.stop()
        engine.start()
        with engine.client() as client:
            assert client.hget("k", "coins") == "545"
    finally:
        engine.stop()


def test_a_second_engine_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with EmbeddedEngine(tmp_path), pytest.raises(EngineError, match="already serving"):
        EmbeddedEngine(tmp_path).start()


def test_a_stale_socket_from_a_killed_engine_does_not_block_a_start(tmp_path: Path) -> None:
    engine = EmbeddedEngine(tmp_path).start()
    engine.kill()
    assert engine.socket_path.exists()
    with EmbeddedEngine(tmp_path) as again, again.client() as client:
        assert client.ping() is True


def test_a_long_data_dir_falls_back_to_a_loopback_port(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with EmbeddedEngine(deep) as engine, engine.client() as client:
        assert engine.url.startswith("redis://127.0.0.1:")
        assert client.config_get("bind")["bind"].split() == ["127.0.0.1"]


def test_an_engine_on_a_loopback_port_comes_back_on_the_same_port(tmp_path: Path) -> None:
    """A data dir too deep for a unix socket: the engine listens on a free port, and starts
    again on that port, so the server's clients find it where they left it."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    engine = EmbeddedEngine(deep).start()
    try:
        first = engine.url
        assert first.startswith("redis://127.0.0.1:")
        engine.kill()
        engine.start()
        assert engine.url == first
        with engine.client() as client:
            assert client.ping()
    finally:
        engine.stop()
