"""Books audit throughput: how fast ``server.audit`` replays a large, consistent history.

A fresh embedded engine (``appendfsync everysec``, in a temporary directory) is filled with
a history written straight in the scripts' formats (not through the HTTP API, which would
take hours for a million entries): ``--viewers`` viewers each buy coins and send gifts to
``--creators`` creators until ``--gifts`` gifts are sent. Each gift is a debit in the
sender's coin ledger and a credit in the creator's diamond ledger. Holds are released in
batches, some purchases are charged back with the reversal of a still-pending credit, some
gifts predate the ledger's ``creator_id`` field (the audit finds their creator in the room),
and creators withdraw, some paid, some rejected, some still requested. Every balance is
what the scripts would have left, so the audit must pass.

Then the audit runs ``--repeat`` times over it; each run's wall time and the ledger entries
per second are printed, and the median. Writes are pipelined over the audit's own bare
connection (``RawConnection``), thousands of commands per round trip.

    .venv/bin/python -m loadtest.bench_audit [--gifts 500000] [--viewers 10000]
        [--creators 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from redis.asyncio import Redis

from server.audit import RawConnection, audit_books, resp_command
from server.domain.catalog import Catalog
from server.domain.money import diamonds_for
from server.engine import EmbeddedEngine
from server.keys import KeySchema

PREFIX = "bench:"
SHARE = Fraction(1, 2)
T0 = 1_795_000_000_000
DAY = T0 // 86_400_000
BATCH = 5_000


@dataclass
class Creator:
    creator_id: str
    entries: list[bytes] = field(default_factory=list)
    pending: int = 0
    available: int = 0
    reserved: int = 0
    withdrawn: int = 0
    reversed: int = 0
    lifetime: int = 0
    held: dict[str, int] = field(default_factory=dict)
    credited: list[str] = field(default_factory=list)
    reversed_ids: list[str] = field(default_factory=list)
    withdrawals: list[tuple[str, str, int]] = field(default_factory=list)
    since_release: int = 0
    ledger_count: int = 0


def xadd(key: str, **fields: str | int) -> bytes:
    """An XADD of ``fields`` in the order given, as the scripts write them."""
    return resp_command("XADD", key, "*", *(item for pair in fields.items() for item in pair))


class History:
    """Builds the commands of a consistent history and counts its ledger entries."""

    def __init__(self, keys: KeySchema, creators: int, seed: int = 7) -> None:
        self.keys = keys
        self.rng = random.Random(seed)
        self.creators = [Creator(f"c{n:04d}") for n in range(creators)]
        self.gifts = sorted(Catalog.load_default().gifts.values(), key=lambda g: g.coins)[:4]
        self.commands: list[bytes] = []
        self.coin_entries = 0
        self.diamond_entries = 0
        self.ts = T0
        for creator in self.creators:
            room = self.keys.room(room_of(creator)).info
            self.commands.append(
                resp_command("HSET", room, "creator_id", creator.creator_id, "state", "live")
            )

    def tick(self) -> int:
        self.ts += 1
        return self.ts

    def viewer(self, user_id: str, gifts: int, number: int) -> None:
        ledger = self.keys.user(user_id).ledger
        entries: list[bytes] = []
        order = f"o_{user_id}_1"
        balance = spent = 0
        coins = gifts * 20 + 100
        balance += coins
        entries.append(
            xadd(ledger, kind="purchase", delta=coins, balance=balance, ref=order, payment_id=f"p_{order}")
        )
        ts = self.tick()
        last: Creator | None = None
        for n in range(gifts):
            gift = self.rng.choice(self.gifts)
            if gift.coins > balance:
                gift = self.gifts[0]
            creator = self.creators[self.rng.randrange(len(self.creators))]
            event = f"g_{user_id}_{n}"
            balance -= gift.coins
            spent += gift.coins
            fields: dict[str, str | int] = {"room_id": room_of(creator), "gift_id": gift.id, "count": 1}
            # One gift in a thousand is as written before gift entries carried creator_id:
            # the audit finds its creator through the room.
            if (number + n) % 1000:
                fields["creator_id"] = creator.creator_id
            entries.append(
                xadd(ledger, kind="gift", delta=-gift.coins, balance=balance, ref=event, **fields, ts=ts)
            )
            self.credit(creator, event, gift.coins, user_id)
            last = creator
        if number % 50 == 0 and last is not None:
            # A second purchase, one more gift, then a chargeback of that purchase: the
            # balance goes negative and the still-pending credit of the gift is reversed.
            order = f"o_{user_id}_2"
            creator = self.creators[number % len(self.creators)]
            event = f"g_{user_id}_cb"
            balance += 100
            entries.append(
                xadd(ledger, kind="purchase", delta=100, balance=balance, ref=order, payment_id=f"p_{order}")
            )
            balance -= 100
            spent += 100
            entries.append(
                xadd(
                    ledger,
                    kind="gift",
                    delta=-100,
                    balance=balance,
                    ref=event,
                    room_id=room_of(creator),
                    gift_id="hand_hearts",
                    count=1,
                    creator_id=creator.creator_id,
                    ts=ts,
                )
            )
            self.credit(creator, event, 100, user_id, hold=True)
            balance -= 100
            entries.append(
                xadd(
                    ledger,
                    kind="clawback",
                    delta=-100,
                    balance=balance,
                    ref=order,
                    reason="charged_back",
                    payment_id=f"p_{order}",
                    ts=ts,
                )
            )
            self.reverse(creator, event, order)
        self.commands += entries
        self.coin_entries += len(entries)
        wallet = self.keys.user(user_id).wallet
        self.commands.append(resp_command("HSET", wallet, "coins", balance, "spent_day", DAY, "spent", spent))

    def credit(self, creator: Creator, event: str, coins: int, sender: str, hold: bool = False) -> None:
        diamonds = diamonds_for(coins, SHARE)
        creator.entries.append(
            xadd(
                self.keys.user(creator.creator_id).earnings_ledger,
                kind="gift",
                pending=diamonds,
                ref=event,
                coins=coins,
                sender=sender,
                room_id=room_of(creator),
                ts=self.tick(),
            )
        )
        creator.pending += diamonds
        creator.lifetime += diamonds
        creator.credited.append(event)
        if diamonds > 0:
            creator.held[event] = diamonds
        creator.since_release += 1
        if not hold and creator.since_release >= 500:
            self.release(creator)

    def release(self, creator: Creator) -> None:
        due = {e: d for e, d in creator.held.items() if not e.endswith("_cb")}
        total = sum(due.values())
        creator.since_release = 0
        if not total:
            return
        for event in due:
            del creator.held[event]
        creator.pending -= total
        creator.available += total
        ledger = self.keys.user(creator.creator_id).earnings_ledger
        creator.entries.append(
            xadd(ledger, kind="release", pending=-total, available=total, gifts=len(due), ts=self.tick())
        )
        if creator.available >= 1_000:
            self.withdraw(creator, creator.available // 2)

    def reverse(self, creator: Creator, event: str, order: str) -> None:
        diamonds = creator.held.pop(event)
        creator.pending -= diamonds
        creator.reversed += diamonds
        creator.reversed_ids.append(event)
        ledger = self.keys.user(creator.creator_id).earnings_ledger
        creator.entries.append(
            xadd(
                ledger,
                kind="reversal",
                pending=-diamonds,
                reversed=diamonds,
                ref=event,
                order_id=order,
                ts=self.tick(),
            )
        )

    def withdraw(self, creator: Creator, diamonds: int) -> None:
        wid = f"wd_{creator.creator_id}_{len(creator.withdrawals)}"
        ledger = self.keys.user(creator.creator_id).earnings_ledger
        ts = self.tick()
        creator.available -= diamonds
        creator.reserved += diamonds
        creator.entries.append(
            xadd(
                ledger,
                kind="withdrawal",
                available=-diamonds,
                reserved=diamonds,
                ref=wid,
                amount_minor=diamonds // 2,
                ts=ts,
            )
        )
        state = ("paid", "rejected", "requested")[len(creator.withdrawals) % 3]
        creator.withdrawals.append((wid, state, diamonds))
        if state == "requested":
            return
        creator.reserved -= diamonds
        if state == "paid":
            creator.withdrawn += diamonds
            entry = xadd(
                ledger, kind="withdrawal_paid", reserved=-diamonds, withdrawn=diamonds, ref=wid, ts=ts
            )
        else:
            creator.available += diamonds
            entry = xadd(
                ledger, kind="withdrawal_rejected", reserved=-diamonds, available=diamonds, ref=wid, ts=ts
            )
        creator.entries.append(entry)

    def close_creators(self) -> None:
        for creator in self.creators:
            keys = self.keys.user(creator.creator_id)
            self.commands += creator.entries
            self.diamond_entries += len(creator.entries)
            balances = {
                "pending": creator.pending,
                "available": creator.available,
                "reserved": creator.reserved,
                "withdrawn": creator.withdrawn,
                "reversed": creator.reversed,
                "lifetime": creator.lifetime,
            }
            self.commands.append(
                resp_command("HSET", keys.earnings, *(item for pair in balances.items() for item in pair))
            )
            for start in range(0, len(creator.credited), 10_000):
                chunk = creator.credited[start : start + 10_000]
                self.commands.append(resp_command("SADD", keys.credited, *chunk))
            if creator.reversed_ids:
                self.commands.append(resp_command("SADD", keys.reversed, *creator.reversed_ids))
            for event, diamonds in creator.held.items():
                self.commands.append(resp_command("HSET", keys.held, event, diamonds))
                self.commands.append(resp_command("ZADD", keys.holds, T0 + 86_400_000, event))
            for wid, state, diamonds in creator.withdrawals:
                record: dict[str, str | int] = {
                    "id": wid,
                    "state": state,
                    "diamonds": diamonds,
                    "amount_minor": diamonds // 2,
                    "currency": "USD",
                    "day": DAY,
                    "requested_ms": T0,
                }
                fields = (item for pair in record.items() for item in pair)
                self.commands.append(resp_command("HSET", keys.withdrawal(wid), *fields))
                listed = f"{creator.creator_id}:{wid}"
                self.commands.append(resp_command("ZADD", self.keys.withdrawals, T0, listed))


def room_of(creator: Creator) -> str:
    return f"room_{creator.creator_id}"


async def fill(url: str, gifts: int, viewers: int, creators: int) -> History:
    history = History(KeySchema(PREFIX), creators)
    per_viewer, extra = divmod(gifts, viewers)
    async with Redis.from_url(url) as redis:
        raw = await RawConnection.like(redis)
        try:
            for n in range(viewers):
                history.viewer(f"v{n:06d}", per_viewer + (1 if n < extra else 0), n)
                if len(history.commands) >= BATCH:
                    await send(raw, history.commands)
                    history.commands = []
            history.close_creators()
            await send(raw, history.commands)
        finally:
            await raw.close()
    return history


async def send(raw: RawConnection, commands: list[bytes]) -> None:
    for start in range(0, len(commands), BATCH):
        reply = await raw.send(commands[start : start + BATCH])
        if b"\r\n-" in b"\r\n" + reply:
            raise RuntimeError(f"a write failed: {reply[:300]!r}")


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        engine = EmbeddedEngine(Path(tmp), fsync="everysec").start()
        try:
            started = time.perf_counter()
            history = await fill(engine.url, args.gifts, args.viewers, args.creators)
            entries = history.coin_entries + history.diamond_entries
            print(
                f"filled {entries:,} ledger entries ({history.coin_entries:,} coin, "
                f"{history.diamond_entries:,} diamond) in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            seconds: list[float] = []
            async with Redis.from_url(engine.url, decode_responses=True) as redis:
                for n in range(args.repeat):
                    result = await audit_books(redis, KeySchema(PREFIX), SHARE)
                    if not result.ok:
                        print(result.report(), file=sys.stderr)
                        return 1
                    seen = result.totals["coin_entries"] + result.totals["diamond_entries"]
                    assert seen == entries, (seen, entries)
                    seconds.append(result.elapsed_s)
                    print(
                        f"run {n + 1}: {result.elapsed_s:.2f} s, {entries / result.elapsed_s:,.0f} entries/s"
                    )
            print()
            print(result.report())
            median = statistics.median(seconds)
            print()
            print(
                f"median of {len(seconds)}: {median:.2f} s for {entries:,} ledger entries, "
                f"{entries / median:,.0f} entries/s (python {platform.python_version()}, "
                f"{platform.machine()})"
            )
        finally:
            engine.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gifts", type=int, default=500_000)
    parser.add_argument("--viewers", type=int, default=10_000)
    parser.add_argument("--creators", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
