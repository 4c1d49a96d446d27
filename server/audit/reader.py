"""Reading an engine into the audit: ``BooksReader`` pages every ledger under one key prefix
and reads each account's balances at one instant, feeding a ``BooksChecker``; it only reads.
``audit_books`` is the whole audit of one engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from server.audit.checker import BooksChecker
from server.audit.invariants import DECISIONS, MAX_VIOLATIONS, AuditResult, CreatorRecords, Entry
from server.audit.resp import RawConnection, parse_scan_reply, parse_xrange_replies, resp_command
from server.keys import KeySchema
from server.settings import Settings
from server.store.topology import Topology

# A round trip asks for about this many stream entries (several small streams or one page).
PAGE = 10_000
# Accounts whose balances are read in one MULTI.
BATCH = 200

_USER_KEYS = frozenset({"wallet", "ledger", "outbox", "reversals"})
_CREATOR_KEYS = frozenset({"earnings", "earnings:ledger", "credited", "reversed", "held", "holds"})


@dataclass
class _Keyspace:
    users: set[str] = field(default_factory=set)
    creators: set[str] = field(default_factory=set)
    withdrawals: dict[str, set[str]] = field(default_factory=dict)


class BooksReader:
    """Reads every account under one key prefix into a ``BooksChecker``; never writes."""

    def __init__(self, redis: Redis, keys: KeySchema, checker: BooksChecker, page: int = PAGE) -> None:
        self.redis = redis
        self.topology = Topology.of(redis)
        self.keys = keys
        self.checker = checker
        self.page = page
        self._raw: RawConnection | None = None
        self._last_ids: dict[str, str] = {}

    async def run(self) -> None:
        # On a cluster the bare connection would reach one node: read through the client.
        self._raw = await RawConnection.like(self.redis) if self.topology.one_connection else None
        try:
            space = await self._scan()
            users = sorted(space.users)
            for start in range(0, len(users), BATCH):
                await self._read_users(users[start : start + BATCH])
            rooms = sorted(self.checker.rooms_to_resolve())
            if rooms:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for room in rooms:
                        pipe.hget(self.keys.room(room).info, "creator_id")
                    found = await pipe.execute()
                self.checker.room_creators({r: c for r, c in zip(rooms, found, strict=True) if c})
            creators = sorted(space.creators | set(space.withdrawals))
            for start in range(0, len(creators), BATCH):
                await self._read_creators(creators[start : start + BATCH], space.withdrawals)
            self.checker.withdrawal_listing(await self.redis.zrange(self.keys.withdrawals, 0, -1))
            await self._read_battles()
            late = sorted(self.checker.unmatched_senders())
            if late:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for user_id in late:
                        ledger = self.keys.user(user_id).ledger
                        pipe.xrange(ledger, min=self._after(ledger), max="+")
                    tails = await pipe.execute()
                for user_id, tail in zip(late, tails, strict=True):
                    self.checker.late_coin_entries(user_id, tail)
        finally:
            if self._raw is not None:
                await self._raw.close()

    async def _read_battles(self) -> None:
        """Every ended battle's record and the gifts it counted: read after every ledger and
        outbox, so every gift debited in an ended battle's window has been read."""
        ids = [
            key[len(self.keys.prefix) + len("{b:") : key.index("}")]
            async for key in self.redis.scan_iter(match=self.keys.battle_pattern, count=5000)
        ]
        for start in range(0, len(ids), BATCH):
            chunk = sorted(ids[start : start + BATCH])
            async with self.redis.pipeline(transaction=False) as pipe:
                for battle_id in chunk:
                    battle = self.keys.battle(battle_id)
                    pipe.hgetall(battle.info)
                    pipe.smembers(battle.scored)
                replies = await pipe.execute()
            for n, battle_id in enumerate(chunk):
                record, scored = replies[2 * n], replies[2 * n + 1]
                if record.get("state") == "ended":
                    self.checker.battle(battle_id, record, scored)

    async def _snapshots(self, queue: Callable[[Pipeline, str], None], accounts: list[str]) -> list[Any]:
        """The replies of the commands ``queue`` makes for each account, each account read at
        one instant (``Topology.read_at_one_instant``)."""
        return await self.topology.read_at_one_instant(queue, accounts)

    async def _scan(self) -> _Keyspace:
        """One SCAN over every user-slot key under the prefix, sorted into accounts."""
        space = _Keyspace()
        prefix = f"{self.keys.prefix}{{u:"
        if self._raw is None:  # a cluster: redis-py scans every node in turn
            keys = [key async for key in self.redis.scan_iter(match=f"{prefix}*", count=5000)]
            self._sort_keys(space, prefix, keys)
            return space
        cursor = "0"
        while True:
            data = await self._raw.send([resp_command("SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", 5000)])
            parsed = parse_scan_reply(data)
            if parsed is None:
                found = await self.redis.scan(int(cursor), match=f"{prefix}*", count=5000)
                parsed = (str(found[0]), list(found[1]))
            cursor, keys = parsed
            self._sort_keys(space, prefix, keys)
            if cursor == "0":
                return space

    @staticmethod
    def _sort_keys(space: _Keyspace, prefix: str, keys: Iterable[str]) -> None:
        for key in keys:
            close = key.find("}", len(prefix))
            if close < 0 or key[close + 1 : close + 2] != ":":
                continue
            account, kind = key[len(prefix) : close], key[close + 2 :]
            if kind in _USER_KEYS:
                space.users.add(account)
            elif kind in _CREATOR_KEYS:
                space.creators.add(account)
            elif kind.startswith("wd:"):
                space.withdrawals.setdefault(account, set()).add(kind[3:])

    def _after(self, key: str) -> str:
        """XRANGE start just past the last entry of ``key`` read so far."""
        last = self._last_ids.get(key)
        return f"({last}" if last else "-"

    async def _read_streams(self, streams: dict[str, str], sink: Callable[[str, list[Entry]], None]) -> None:
        """Feed every entry of each stream (account -> key) to ``sink``, page by page, in order."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in streams.values():
                pipe.xlen(key)
            lengths: list[int] = await pipe.execute()
        todo = [(account, key, n) for (account, key), n in zip(streams.items(), lengths, strict=True) if n]
        todo.reverse()
        while todo:
            # Small streams share a round trip of about one page; a long one goes a page at a time.
            batch: list[tuple[str, str]] = []
            budget = 0
            while todo and (not batch or budget + min(todo[-1][2], self.page) <= self.page):
                account, key, n = todo.pop()
                batch.append((account, key))
                budget += min(n, self.page)
            pages = await self._xrange([key for _, key in batch])
            for (account, key), page in zip(batch, pages, strict=True):
                if page:
                    self._last_ids[key] = page[-1][0]
                    sink(account, page)
                if len(page) >= self.page:
                    todo.append((account, key, self.page))
            # Give a serving process's other tasks a turn between pages.
            await asyncio.sleep(0)

    async def _xrange(self, keys: list[str]) -> list[list[Entry]]:
        if self._raw is not None:
            commands = [
                resp_command("XRANGE", key, self._after(key), "+", "COUNT", self.page) for key in keys
            ]
            parsed = parse_xrange_replies(await self._raw.send(commands), len(keys))
            if parsed is not None:
                return parsed
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.xrange(key, min=self._after(key), max="+", count=self.page)
            slow: list[list[Entry]] = await pipe.execute()
        return slow

    async def _read_users(self, users: list[str]) -> None:
        await self._read_streams({u: self.keys.user(u).ledger for u in users}, self.checker.coin_entries)

        def queue(pipe: Pipeline, user_id: str) -> None:
            user = self.keys.user(user_id)
            command = pipe.execute_command  # see _snapshots
            command("HGETALL", user.wallet)
            command("XRANGE", user.ledger, self._after(user.ledger), "+")
            command("HGETALL", user.outbox)
            command("HGETALL", user.reversals)

        replies = await self._snapshots(queue, users)
        for n, user_id in enumerate(users):
            wallet, tail, outbox, reversals = replies[4 * n : 4 * n + 4]
            self.checker.coin_entries(user_id, tail)
            self.checker.wallet(user_id, wallet, outbox, reversals)
        await asyncio.sleep(0)

    async def _read_creators(self, creators: list[str], known: dict[str, set[str]]) -> None:
        streams = {c: self.keys.user(c).earnings_ledger for c in creators}
        await self._read_streams(streams, self.checker.diamond_entries)
        wanted = {c: known.get(c, set()) | self.checker.withdrawal_ids(c) for c in creators}
        todo = list(creators)
        while todo:
            snapshots = await self._creator_snapshots(todo, wanted)
            todo = []
            for creator_id, (records, tail) in snapshots.items():
                # A withdrawal requested after the pages were read: read the slot again with it.
                named = {f["ref"] for _, f in tail if f.get("kind") in ("withdrawal", *DECISIONS)}
                if named - set(records.withdrawals):
                    wanted[creator_id] |= named
                    todo.append(creator_id)
                    continue
                self.checker.diamond_entries(creator_id, tail)
                self.checker.creator(creator_id, records)
        await asyncio.sleep(0)

    async def _creator_snapshots(
        self, creators: list[str], wanted: dict[str, set[str]]
    ) -> dict[str, tuple[CreatorRecords, list[Entry]]]:
        def queue(pipe: Pipeline, creator_id: str) -> None:
            creator = self.keys.user(creator_id)
            command = pipe.execute_command  # see _snapshots
            command("HGETALL", creator.earnings)
            command("XRANGE", creator.earnings_ledger, self._after(creator.earnings_ledger), "+")
            command("HGETALL", creator.held)
            command("ZRANGE", creator.holds, 0, -1)
            command("SMEMBERS", creator.credited)
            command("SMEMBERS", creator.reversed)
            for wid in sorted(wanted[creator_id]):
                command("HGETALL", creator.withdrawal(wid))

        replies = iter(await self._snapshots(queue, creators))
        out: dict[str, tuple[CreatorRecords, list[Entry]]] = {}
        for creator_id in creators:
            earnings, tail, held, holds, credited, reversed_ = (next(replies) for _ in range(6))
            withdrawals = {wid: next(replies) for wid in sorted(wanted[creator_id])}
            records = CreatorRecords(
                earnings=earnings,
                held=held,
                holds=holds,
                credited=credited,
                reversed=reversed_,
                withdrawals={wid: raw for wid, raw in withdrawals.items() if raw},
            )
            out[creator_id] = (records, tail)
        return out


async def audit_books(
    redis: Redis,
    keys: KeySchema,
    share: Fraction,
    *,
    max_violations: int = MAX_VIOLATIONS,
    clawback_window_ms: int = Settings().clawback_window_ms,
) -> AuditResult:
    """Audit every account under ``keys.prefix`` on the engine ``redis`` talks to, whose
    servers run with ``share`` and ``clawback_window_ms`` (``Settings``)."""
    started = time.perf_counter()
    checker = BooksChecker(share, max_violations, clawback_window_ms)
    await BooksReader(redis, keys, checker).run()
    return checker.finish(time.perf_counter() - started)
