"""The engine adapter: typed operations over Redis, each one atomic where money moves."""

from __future__ import annotations

from server.store.failures import ENGINE_ERRORS, UNAVAILABLE
from server.store.store import Store

__all__ = ["ENGINE_ERRORS", "UNAVAILABLE", "Store"]
