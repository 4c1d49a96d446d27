"""What engine failures look like to the rest of the server."""

from __future__ import annotations

from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

# Failures meaning the engine, or the cluster master serving a key, cannot answer now (down,
# loading, failing over, a slot not yet served): a client gets 503 engine_unavailable and
# retries. BusyLoadingError is a ConnectionError, MasterDownError a ClusterDownError.
UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
)
# Everything an engine call can raise besides a bug: its replies, its client's, its socket's.
ENGINE_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
