"""The engine adapter: typed operations over Redis, each one atomic where money moves."""

from __future__ import annotations

from server.store.store import ENGINE_ERRORS, UNAVAILABLE, Store

__all__ = ["ENGINE_ERRORS", "UNAVAILABLE", "Store"]
