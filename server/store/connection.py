"""Engine connections whose commands are packed by hiredis, in C.

redis-py's asyncio connections parse replies with hiredis when it is installed, but still
pack every command in Python, argument by argument; on the gift path, with pipelines of
14-argument EVALSHAs, that packing was the server's largest single cost. ``hiredis_packing``
gives whichever connection class the URL selects (TCP, TLS or unix socket) a
``pack_command`` that makes one ``hiredis.pack_command`` call instead, leaving the rest of
the connection as it is. It splits multi-word command names (``SCRIPT LOAD``) as redis-py
does, and refuses arguments other than str, bytes, int, float and memoryview with
redis-py's ``DataError``.

The same class also reports a write on a connection whose transport was closed under it
(the peer reset it while idle, or another task disconnected it, as happens to every
connection to a cluster master that just failed) as redis-py's ``ConnectionError``, which
its retries and cluster failover handle. redis-py 8.1 lets the event loop's own error
escape instead (``RuntimeError`` from uvloop, ``AttributeError`` or ``TypeError`` from
asyncio; redis-py issue #4287, fixed upstream after 8.1).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError, DataError


def _pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
    name = args[0]
    if (isinstance(name, str) and " " in name) or (isinstance(name, bytes) and b" " in name):
        args = (*name.split(), *args[1:])
    try:
        return [pack_command(args)]
    except TypeError as exc:
        raise DataError(str(exc)) from exc


async def _send_packed_command(self: AbstractConnection, command: Iterable[bytes]) -> None:
    writer = self._writer
    if writer is None or writer.is_closing():
        raise ConnectionError("the connection was closed before the command was written")
    try:
        writer.writelines(command)
        await writer.drain()
    except (AttributeError, RuntimeError, TypeError) as exc:
        if writer.is_closing():
            raise ConnectionError("the connection was closed while the command was written") from exc
        raise


def hiredis_packing(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """``connection_class`` with hiredis packing its commands, and closed transports
    reported as ``ConnectionError``."""
    return type(
        connection_class.__name__,
        (connection_class,),
        {"pack_command": _pack_command, "_send_packed_command": _send_packed_command},
    )
