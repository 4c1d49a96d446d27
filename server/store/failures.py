"""What engine failures look like to the rest of the server: which are an outage (a client
retries), and the kind each failure is counted as (``metrics.engine_error``)."""

from __future__ import annotations

import builtins

from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)


class NotReplicated(TimeoutError):  # type: ignore[misc]
    """Fewer replicas than required confirmed a write in time (503 engine_unavailable);
    raised by ``store.replication``."""


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

# The kinds ``kind`` answers, every one exported from the first scrape on.
KINDS = ("connection", "timeout", "response", "not_replicated")


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the engine cannot answer now: 503 engine_unavailable, retried.
    Any other engine failure (a script's runtime error, a reply the server did not expect)
    is a bug, answered 500 internal_error."""
    return isinstance(exc, UNAVAILABLE)


def kind(exc: BaseException) -> str | None:
    """The kind of engine failure ``exc`` is (one of ``KINDS``), or None if it is none."""
    if isinstance(exc, NotReplicated):
        return "not_replicated"
    if isinstance(exc, TimeoutError | builtins.TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionError | OSError):
        return "connection"
    if isinstance(exc, RedisError | RedisClusterException):
        return "response"
    return None
