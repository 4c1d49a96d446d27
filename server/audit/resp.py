"""A bare RESP2 connection and the bulk parsers of its replies.

redis-py parses a reply element by element, at about 20,000 stream entries a second, too
slow to read a million; here a batch of commands goes out on a connection of its own and
its replies are split on CRLF and sliced, at C speed. Used by the audit's reader and by its
benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from server.audit.invariants import Entry


class EngineReplyError(RuntimeError):
    """The engine answered a command with an error."""


_READ_LIMIT = 1 << 30


def resp_command(*args: str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RawConnection:
    """A bare RESP2 connection that sends a batch of commands and returns the replies' bytes.

    The batch is followed by an ``ECHO`` of a random marker, and everything up to the marker's
    reply is the batch's replies, read in one go and parsed in bulk by the caller.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def like(cls, redis: Redis) -> RawConnection:
        """A connection to the same engine, database and credentials as ``redis``."""
        pool = redis.connection_pool
        kw: dict[str, Any] = pool.connection_kwargs
        if issubclass(pool.connection_class, UnixDomainSocketConnection):
            reader, writer = await asyncio.open_unix_connection(kw["path"], limit=_READ_LIMIT)
        else:
            context = None
            if issubclass(pool.connection_class, SSLConnection):
                context = ssl.create_default_context(cafile=kw.get("ssl_ca_certs"))
                if kw.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
            reader, writer = await asyncio.open_connection(
                kw.get("host", "localhost"), kw.get("port", 6379), ssl=context, limit=_READ_LIMIT
            )
        connection = cls(reader, writer)
        handshake: list[bytes] = []
        if kw.get("password"):
            user = kw.get("username")
            handshake.append(resp_command("AUTH", *([user] if user else []), kw["password"]))
        if kw.get("db"):
            handshake.append(resp_command("SELECT", int(kw["db"])))
        if handshake:
            for line in (await connection.send(handshake)).split(b"\r\n")[:-1]:
                if line.startswith(b"-"):
                    await connection.close()
                    raise EngineReplyError(line[1:].decode(errors="replace"))
        return connection

    async def send(self, commands: Sequence[bytes]) -> bytes:
        marker = secrets.token_hex(16).encode()
        self._writer.write(b"".join(commands) + resp_command("ECHO", marker.decode()))
        await self._writer.drain()
        end = b"$%d\r\n%s\r\n" % (len(marker), marker)
        data = await self._reader.readuntil(end)
        return data[: -len(end)]

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()


def parse_xrange_replies(data: bytes, replies: int) -> list[list[Entry]] | None:
    """``replies`` XRANGE replies, back to back, parsed by slicing the split reply.

    Stream entries are regular (an id, then field/value pairs), so after one C-speed split
    on CRLF each entry's values are one slice away. A value that itself contains CRLF would
    shift the layout; the headers checked at each entry and the exact end catch that, and
    the caller then reads those streams the slow way. None means "not parseable here".
    """
    tokens = data.decode("utf-8", errors="surrogateescape").split("\r\n")
    out: list[list[Entry]] = []
    i = 0
    try:
        for _ in range(replies):
            head = tokens[i]
            if head.startswith("-"):
                raise EngineReplyError(head[1:])
            if not head.startswith("*"):
                return None
            count = int(head[1:])
            i += 1
            page: list[Entry] = []
            for _ in range(count):
                if tokens[i] != "*2" or not tokens[i + 3].startswith("*"):
                    return None
                end = i + 4 + 2 * int(tokens[i + 3][1:])
                values = tokens[i + 5 : end : 2]
                page.append((tokens[i + 2], dict(zip(values[::2], values[1::2], strict=True))))
                i = end
            out.append(page)
    except (IndexError, ValueError):
        return None
    if i != len(tokens) - 1 or tokens[i] != "":
        return None
    return out


def parse_scan_reply(data: bytes) -> tuple[str, list[str]] | None:
    """A SCAN reply: the next cursor and the keys, or None if it is not the expected shape."""
    tokens = data.decode("utf-8", errors="surrogateescape").split("\r\n")
    try:
        if tokens[0] != "*2" or not tokens[3].startswith("*"):
            if tokens[0].startswith("-"):
                raise EngineReplyError(tokens[0][1:])
            return None
        count = int(tokens[3][1:])
        keys = tokens[5 : 4 + 2 * count : 2]
    except (IndexError, ValueError):
        return None
    if len(tokens) != 5 + 2 * count or len(keys) != count:
        return None
    return tokens[2], keys
