"""Engine connections whose commands are packed by hiredis, in C.

redis-py's asyncio connections parse replies with hiredis when it is installed, but still
pack every command in Python, argument by argument; on the gift path, with pipelines of
14-argument EVALSHAs, that packing was the server's largest single cost. redis-py's own
``HiredisRespSerializer`` (which its synchronous client uses) packs them in one C call, and
``hiredis_packing`` puts it into whichever connection class the URL selects (TCP, TLS or
unix socket), leaving the rest of the connection as it is.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio.connection import AbstractConnection
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

_SERIALIZER = HiredisRespSerializer()


def _pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
    return cast(list[bytes], _SERIALIZER.pack(*args))


def hiredis_packing(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """``connection_class`` with hiredis packing its commands (unchanged without hiredis)."""
    if not HIREDIS_AVAILABLE:
        return connection_class
    return type(connection_class.__name__, (connection_class,), {"pack_command": _pack_command})
