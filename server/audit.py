"""The books audit: replay every ledger and check that coins and diamonds balance.

Every balance change is a script that also appends a ledger entry, so the ledgers are the
books and the balances are their totals. The audit recomputes the totals from the ledgers
alone, without the scripts, so it catches what a script, a manual edit or a lost write got
wrong: a wallet or a diamond bucket that is not the sum of its entries, coins that appear
or vanish between buyers, wallets and creators, a gift credited twice or never, a
withdrawal paid twice, a gift a clawback took back whose creator kept the diamonds.

It has two halves, kept apart so the rules can be tested by feeding them anything:

- ``BooksChecker`` holds the rules. It is fed parsed ledger entries and records, account
  by account, and ``finish()`` cross-checks the accounts and returns an ``AuditResult``.
- ``audit_books`` reads an engine under a key prefix and feeds the checker. It only reads.
  Ledgers are paged with ``XRANGE ... COUNT 10000`` over a connection of its own whose
  replies are parsed in bulk (redis-py parses a reply element by element, at about 20,000
  stream entries a second, too slow for a million). Each account's balances are then read
  in one ``MULTI`` with the entries appended since its pages, so a running server cannot
  make an account disagree with itself while it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from server.domain.money import diamonds_for
from server.keys import KeySchema
from server.settings import Settings

Fields = Mapping[str, str]
Entry = tuple[str, Fields]
"""One stream entry: its id and its fields."""

BUCKETS = ("pending", "available", "reserved", "withdrawn", "reversed")
"""The diamond buckets; each is the sum of its signed changes over the diamond ledger."""

HELD_BUCKETS = ("pending", "available", "reserved", "withdrawn")
"""The buckets holding diamonds still owed to (or paid to) creators."""

# Diamond ledger kinds that move diamonds between two buckets: kind -> (from, to).
MOVES = {
    "release": ("pending", "available"),
    "reversal": ("pending", "reversed"),
    "withdrawal": ("available", "reserved"),
    "withdrawal_paid": ("reserved", "withdrawn"),
    "withdrawal_rejected": ("reserved", "available"),
}
DECISIONS = {"withdrawal_paid": "paid", "withdrawal_rejected": "rejected"}

INVARIANTS = {
    "wallet_balance": "each wallet's coins equal the sum of its ledger's deltas",
    "running_balance": "each coin ledger entry's balance is the running sum of the deltas",
    "coin_entry": "each coin ledger entry is a purchase, gift or clawback with sound fields, "
    "each gift debited once",
    "purchase_once": "each order is credited at most once and clawed back at most once, by its own coins",
    "coin_conservation": "coins bought = coins in wallets + coins gifted + coins clawed back",
    "earnings_bucket": "each creator's pending, available, reserved, withdrawn and reversed "
    "equal the sums over the diamond ledger",
    "earnings_lifetime": "each creator's lifetime equals the diamonds of its gift credits",
    "diamond_entry": "each diamond ledger entry is a known kind; only a gift credit adds diamonds, "
    "every other entry moves them between two buckets",
    "holds": "the held diamonds sum to pending, one hold per unreleased credit, each indexed",
    "diamond_rate": "each credit is floor(share x coins) diamonds, at the share it records "
    "(the configured share for credits that record none)",
    "gift_credited": "every gift debit is credited to its creator exactly once, or is in flight "
    "(outbox), or was reversed before its credit",
    "credit_matched": "every credit matches a gift debit (sender, creator, coins) and the credited set",
    "reversal_matched": "every reversal takes back one credit of the same creator, once, in full, "
    "after a clawback by the sender",
    "clawback_taken": "every gift a clawback took (the buyer's newest gifts no earlier one took, "
    "within the clawback window, up to the coins spent) is reversed from its creator or queued",
    "outbox": "every outbox entry belongs to a gift debit of its sender",
    "diamond_conservation": "diamonds credited - diamonds reversed = pending + available + reserved "
    "+ withdrawn over all creators",
    "withdrawal_once": "each withdrawal is requested once and decided at most once, as its record says",
    "withdrawal_reserved": "each creator's reserved equals the diamonds of its requested withdrawals",
    "withdrawal_listed": "every withdrawal is in the admin listing",
}

MAX_VIOLATIONS = 1_000


@dataclass(frozen=True)
class Violation:
    """One broken invariant, naming the account (``user``, ``creator`` or ``books``)."""

    invariant: str
    kind: str
    account: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "invariant": self.invariant,
            "kind": self.kind,
            "account": self.account,
            "message": self.message,
        }

    def line(self) -> str:
        who = "books" if self.kind == "books" else f"{self.kind} {self.account}"
        return f"[{self.invariant}] {who}: {self.message}"


@dataclass(frozen=True)
class Check:
    """An invariant checked over ``checked`` items (accounts, entries, gifts...)."""

    invariant: str
    checked: int
    violations: int

    @property
    def description(self) -> str:
        return INVARIANTS[self.invariant]

    def to_dict(self) -> dict[str, Any]:
        return {
            "invariant": self.invariant,
            "description": self.description,
            "checked": self.checked,
            "violations": self.violations,
        }


@dataclass(frozen=True)
class AuditResult:
    checks: tuple[Check, ...]
    totals: dict[str, int]
    violations: tuple[Violation, ...]
    """The first ``MAX_VIOLATIONS`` violations; ``violation_count`` counts them all."""
    violation_count: int
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.violation_count == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "elapsed_s": round(self.elapsed_s, 3),
            "totals": self.totals,
            "checks": [check.to_dict() for check in self.checks],
            "violation_count": self.violation_count,
            "violations": [v.to_dict() for v in self.violations],
        }

    def report(self) -> str:
        t = self.totals
        lines = [
            f"books audit: {t['wallets']} wallets, {t['coin_entries']} coin ledger entries, "
            f"{t['creators']} creators, {t['diamond_entries']} diamond ledger entries "
            f"in {self.elapsed_s:.1f} s",
            "",
            f"coins bought       {t['coins_purchased']:>16,}",
            f"coins in wallets   {t['coins_in_wallets']:>16,}",
            f"coins gifted       {t['coins_gifted']:>16,}",
            f"coins clawed back  {t['coins_clawed_back']:>16,}",
            f"diamonds credited  {t['diamonds_credited']:>16,}",
            f"diamonds reversed  {t['diamonds_reversed']:>16,}",
            f"diamonds held      {t['diamonds_held']:>16,}  (pending {t['diamonds_pending']:,}, "
            f"available {t['diamonds_available']:,}, reserved {t['diamonds_reserved']:,}, "
            f"withdrawn {t['diamonds_withdrawn']:,})",
            f"gifts              {t['gifts']:>16,}  (credited {t['gifts_credited']:,}, in flight "
            f"{t['gifts_in_flight']:,}, reversed before credit {t['gifts_reversed_before_credit']:,})",
            f"reversals          {t['reversals']:>16,}  (in flight {t['reversals_in_flight']:,})",
            f"withdrawals        {t['withdrawals']:>16,}  (requested {t['withdrawals_requested']:,}, "
            f"paid {t['withdrawals_paid']:,}, rejected {t['withdrawals_rejected']:,})",
            "",
            "checked:",
        ]
        for check in self.checks:
            mark = "ok  " if check.violations == 0 else "FAIL"
            lines.append(f"  {mark} {check.invariant:<21} {check.checked:>10,}  {check.description}")
        lines.append("")
        if self.ok:
            lines.append("OK: the books balance")
        else:
            lines.append(f"{self.violation_count} violation(s):")
            lines += [f"  {v.line()}" for v in self.violations]
            if self.violation_count > len(self.violations):
                lines.append(f"  ... and {self.violation_count - len(self.violations)} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class CreatorRecords:
    """What a creator's slot holds besides its diamond ledger, read at one instant."""

    earnings: Fields
    held: Fields = field(default_factory=dict)
    holds: Collection[str] = ()
    credited: Collection[str] = ()
    reversed: Collection[str] = ()
    withdrawals: Mapping[str, Fields] = field(default_factory=dict)


class _Gift(NamedTuple):
    sender: str
    creator: str | None
    room: str
    coins: int


class _Credit(NamedTuple):
    creator: str
    sender: str
    coins: int
    diamonds: int


class _Reversal(NamedTuple):
    creator: str
    diamonds: int
    order: str


_Clawable = tuple[str | None, int, str, str]
"""A gift a clawback could still take: its ts (as the ledger has it), coins, creator, event."""


class _Taken(NamedTuple):
    buyer: str
    creator: str
    order: str


@dataclass
class _OpenWallet:
    running: int = 0
    entries: int = 0
    off: int = 0
    first_off: str = ""
    # The gifts a clawback could still take, oldest first (claw_back.lua's list, replayed).
    clawable: list[_Clawable] = field(default_factory=list)


@dataclass
class _OpenWithdrawal:
    requested: int = 0
    diamonds: int = 0
    decisions: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class _OpenCreator:
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    lifetime: int = 0
    credits: set[str] = field(default_factory=set)
    reversals: set[str] = field(default_factory=set)
    withdrawals: dict[str, _OpenWithdrawal] = field(default_factory=dict)


class BooksChecker:
    """The audit's rules, fed account by account; no I/O.

    For each user: ``coin_entries`` (any number of times, in ledger order), then ``wallet``.
    For each creator: ``diamond_entries`` likewise, then ``creator``. Then optionally
    ``room_creators`` (for gift entries written before they carried ``creator_id``),
    ``late_coin_entries`` and ``withdrawal_listing``; then ``finish``.
    """

    def __init__(
        self,
        share: Fraction,
        max_violations: int = MAX_VIOLATIONS,
        clawback_window_ms: int = Settings().clawback_window_ms,
    ) -> None:
        self.share = share
        self.max_violations = max_violations
        self.clawback_window_ms = clawback_window_ms
        self._violations: list[Violation] = []
        self._failed: dict[str, int] = dict.fromkeys(INVARIANTS, 0)
        self._checked: dict[str, int] = dict.fromkeys(INVARIANTS, 0)
        self.totals: dict[str, int] = dict.fromkeys(
            (
                "wallets",
                "coin_entries",
                "creators",
                "diamond_entries",
                "coins_purchased",
                "coins_in_wallets",
                "coins_gifted",
                "coins_clawed_back",
                "diamonds_credited",
                "diamonds_reversed",
                *(f"diamonds_{b}" for b in HELD_BUCKETS),
                "diamonds_held",
                "gifts",
                "gifts_credited",
                "gifts_in_flight",
                "gifts_reversed_before_credit",
                "reversals",
                "reversals_in_flight",
                "withdrawals",
                "withdrawals_requested",
                "withdrawals_paid",
                "withdrawals_rejected",
            ),
            0,
        )
        self._wallets: dict[str, _OpenWallet] = {}
        self._creators: dict[str, _OpenCreator] = {}
        self._gifts: dict[str, _Gift] = {}
        self._credits: dict[str, _Credit] = {}
        self._reversals: dict[str, _Reversal] = {}
        self._purchases: dict[tuple[str, str], int] = {}
        self._clawed: set[tuple[str, str]] = set()
        self._taken: dict[str, _Taken] = {}
        self._queued: set[str] = set()
        self._reversed_by: dict[str, str] = {}
        self._outbox: dict[str, tuple[str, str]] = {}
        self._refused: dict[str, str] = {}
        self._withdrawal_ids: list[tuple[str, str]] = []
        self._rooms: dict[str, str] = {}
        self._listing: set[str] | None = None

    # -- violations ------------------------------------------------------------------------

    def violate(self, invariant: str, kind: str, account: str, message: str) -> None:
        self._failed[invariant] += 1
        if len(self._violations) < self.max_violations:
            self._violations.append(Violation(invariant, kind, account, message))

    def _count(self, invariant: str, n: int = 1) -> None:
        self._checked[invariant] += n

    # -- users -----------------------------------------------------------------------------

    def coin_entries(self, user_id: str, entries: Iterable[Entry]) -> None:
        """Replay the next entries of ``user_id``'s coin ledger, in order."""
        wallet = self._wallets.get(user_id)
        if wallet is None:
            wallet = self._wallets[user_id] = _OpenWallet()
        running = wallet.running
        clawable = wallet.clawable
        n = 0
        for entry_id, f in entries:
            n += 1
            try:
                kind = f["kind"]
                delta = int(f["delta"])
                balance = int(f["balance"])
                ref = f["ref"]
            except (KeyError, ValueError):
                self.violate("coin_entry", "user", user_id, f"entry {entry_id} is malformed: {dict(f)}")
                continue
            running += delta
            if balance != running:
                wallet.off += 1
                if not wallet.first_off:
                    wallet.first_off = (
                        f"entry {entry_id} ({kind} {delta:+}) says balance {balance}, "
                        f"the running sum is {running}"
                    )
            if kind == "gift":
                self._gift(user_id, entry_id, f, ref, -delta)
                creator = f.get("creator_id")
                if creator:  # older gift entries have none: no clawback looks for them
                    clawable.append((f.get("ts"), -delta, creator, ref))
            elif kind == "purchase":
                self._purchase(user_id, entry_id, ref, delta)
            elif kind == "clawback":
                self._clawback(user_id, entry_id, ref, -delta)
                self._take_back(user_id, wallet, f, ref, -delta, balance)
            else:
                self.violate("coin_entry", "user", user_id, f"entry {entry_id} has unknown kind {kind!r}")
        wallet.running = running
        wallet.entries += n

    def _gift(self, user_id: str, entry_id: str, f: Fields, ref: str, coins: int) -> None:
        if coins <= 0:
            self.violate("coin_entry", "user", user_id, f"gift entry {entry_id} debits {coins} coins")
        if ref in self._gifts:
            self.violate("coin_entry", "user", user_id, f"gift event {ref} is debited twice")
            return
        self._gifts[ref] = _Gift(user_id, f.get("creator_id"), f.get("room_id", ""), coins)
        self.totals["coins_gifted"] += coins

    def _take_back(
        self, user_id: str, wallet: _OpenWallet, f: Fields, order: str, coins: int, balance: int
    ) -> None:
        """The gifts this clawback takes, by the rule of docs/MONEY.md: the newest ones not
        taken before and within the window, whole, until they cover the coins of the
        purchase already spent."""
        before = balance + coins
        spent = coins - min(coins, max(before, 0))
        now = _int_or_none(f.get("ts"))
        covered = 0
        clawable = wallet.clawable
        while clawable and covered < spent:
            ts, cost, creator, ref = clawable[-1]
            gift_ts = _int_or_none(ts)
            if now is not None and gift_ts is not None and gift_ts < now - self.clawback_window_ms:
                break
            clawable.pop()
            covered += cost
            self._taken[ref] = _Taken(user_id, creator, order)

    def _purchase(self, user_id: str, entry_id: str, order: str, coins: int) -> None:
        self._count("purchase_once")
        if coins <= 0:
            self.violate("coin_entry", "user", user_id, f"purchase entry {entry_id} credits {coins} coins")
        if (user_id, order) in self._purchases:
            self.violate("purchase_once", "user", user_id, f"order {order} is credited twice")
        else:
            self._purchases[(user_id, order)] = coins
        self.totals["coins_purchased"] += coins

    def _clawback(self, user_id: str, entry_id: str, order: str, coins: int) -> None:
        bought = self._purchases.get((user_id, order))
        if bought is None:
            self.violate(
                "purchase_once", "user", user_id, f"clawback {entry_id} of order {order}, never credited here"
            )
        elif coins != bought:
            self.violate(
                "purchase_once",
                "user",
                user_id,
                f"clawback {entry_id} of order {order} takes {coins} coins; the order credited {bought}",
            )
        if (user_id, order) in self._clawed:
            self.violate("purchase_once", "user", user_id, f"order {order} is clawed back twice")
        self._clawed.add((user_id, order))
        self.totals["coins_clawed_back"] += coins

    def wallet(
        self,
        user_id: str,
        wallet: Fields,
        outbox: Fields | None = None,
        reversals: Fields | None = None,
    ) -> None:
        """Close ``user_id``'s account: its wallet hash, outbox and reversal queue, read after
        (and consistently with) its last ledger entries."""
        state = self._wallets.pop(user_id, None) or _OpenWallet()
        coins = int(wallet.get("coins") or 0)
        self.totals["wallets"] += 1
        self.totals["coin_entries"] += state.entries
        self.totals["coins_in_wallets"] += coins
        self._count("wallet_balance")
        self._count("running_balance", state.entries)
        self._count("coin_entry", state.entries)
        if coins != state.running:
            self.violate(
                "wallet_balance",
                "user",
                user_id,
                f"the wallet holds {coins} coins; its {state.entries} ledger entries sum to {state.running} "
                f"(off by {coins - state.running:+})",
            )
        if state.off:
            self.violate(
                "running_balance",
                "user",
                user_id,
                f"{state.off} ledger entries disagree with the running sum; first: {state.first_off}",
            )
        for event_id, raw in (outbox or {}).items():
            self._outbox[event_id] = (user_id, raw)
        self.totals["reversals_in_flight"] += len(reversals or {})
        self._queued.update(reversals or {})

    def late_coin_entries(self, user_id: str, entries: Iterable[Entry]) -> None:
        """Entries appended to a closed account after it was read (the audit of a running
        server): they count for matching credits and reversals only, not for balances."""
        for _, f in entries:
            kind, ref = f.get("kind"), f.get("ref", "")
            if kind == "gift" and ref not in self._gifts:
                self._gifts[ref] = _Gift(user_id, f.get("creator_id"), f.get("room_id", ""), -int(f["delta"]))
            elif kind == "clawback":
                self._clawed.add((user_id, ref))

    # -- creators --------------------------------------------------------------------------

    def diamond_entries(self, creator_id: str, entries: Iterable[Entry]) -> None:
        """Replay the next entries of ``creator_id``'s diamond ledger, in order."""
        creator = self._creators.get(creator_id)
        if creator is None:
            creator = self._creators[creator_id] = _OpenCreator()
        sums = creator.sums
        n = 0
        for entry_id, f in entries:
            n += 1
            kind = f.get("kind")
            try:
                changes = {b: int(f[b]) for b in BUCKETS if b in f}
            except ValueError:
                self.violate(
                    "diamond_entry", "creator", creator_id, f"entry {entry_id} is malformed: {dict(f)}"
                )
                continue
            for bucket, change in changes.items():
                sums[bucket] += change
            if kind == "gift":
                self._credit(creator_id, creator, entry_id, f, changes)
            elif kind in MOVES:
                self._move(creator_id, creator, entry_id, kind, f, changes)
            else:
                self.violate(
                    "diamond_entry", "creator", creator_id, f"entry {entry_id} has unknown kind {kind!r}"
                )
        self.totals["diamond_entries"] += n
        self._count("diamond_entry", n)

    def _credit(
        self, creator_id: str, creator: _OpenCreator, entry_id: str, f: Fields, changes: dict[str, int]
    ) -> None:
        diamonds = changes.get("pending", 0)
        ref = f.get("ref", "")
        if set(changes) - {"pending"} or diamonds < 0:
            self.violate(
                "diamond_entry",
                "creator",
                creator_id,
                f"gift credit {entry_id} changes {changes}, not pending only",
            )
        self._count("diamond_rate")
        try:
            coins = int(f["coins"])
        except (KeyError, ValueError):
            self.violate("diamond_entry", "creator", creator_id, f"gift credit {entry_id} has no coins")
            coins = 0
        # Credits record the share they were made with; older ones are checked against today's.
        share = self.share
        if "share" in f:
            try:
                share = Fraction(f["share"])
            except (ValueError, ZeroDivisionError):
                self.violate(
                    "diamond_entry", "creator", creator_id, f"gift credit {entry_id} has share {f['share']!r}"
                )
        expected = diamonds_for(coins, share)
        if diamonds != expected:
            self.violate(
                "diamond_rate",
                "creator",
                creator_id,
                f"gift credit {entry_id} ({ref}) gives {diamonds} diamonds for {coins} coins; "
                f"floor({share} x {coins}) = {expected}",
            )
        creator.lifetime += diamonds
        self.totals["diamonds_credited"] += diamonds
        earlier = self._credits.get(ref)
        if earlier is not None:
            self.violate(
                "gift_credited",
                "creator",
                creator_id,
                f"gift event {ref} is credited twice (first to creator {earlier.creator})",
            )
            return
        self._credits[ref] = _Credit(creator_id, f.get("sender", ""), coins, diamonds)
        creator.credits.add(ref)

    def _move(
        self,
        creator_id: str,
        creator: _OpenCreator,
        entry_id: str,
        kind: str,
        f: Fields,
        changes: dict[str, int],
    ) -> None:
        source, target = MOVES[kind]
        amount = changes.get(target, 0)
        if set(changes) - {source, target} or changes.get(source, 0) != -amount or amount < 0:
            self.violate(
                "diamond_entry",
                "creator",
                creator_id,
                f"{kind} entry {entry_id} changes {changes}; it must move diamonds from {source} to {target}",
            )
        ref = f.get("ref", "")
        if kind == "reversal":
            self.totals["diamonds_reversed"] += amount
            if ref in self._reversals:
                self.violate("reversal_matched", "creator", creator_id, f"gift event {ref} is reversed twice")
                return
            self._reversals[ref] = _Reversal(creator_id, amount, f.get("order_id", ""))
            creator.reversals.add(ref)
        elif kind == "withdrawal":
            withdrawal = creator.withdrawals.setdefault(ref, _OpenWithdrawal())
            withdrawal.requested += 1
            withdrawal.diamonds = amount
        elif kind in DECISIONS:
            creator.withdrawals.setdefault(ref, _OpenWithdrawal()).decisions.append((DECISIONS[kind], amount))

    def withdrawal_ids(self, creator_id: str) -> set[str]:
        """The withdrawals the creator's ledger has named so far (for the reader)."""
        creator = self._creators.get(creator_id)
        return set(creator.withdrawals) if creator else set()

    def creator(self, creator_id: str, records: CreatorRecords) -> None:
        """Close ``creator_id``'s account with the rest of its slot, read after (and
        consistently with) its last diamond ledger entries."""
        state = self._creators.pop(creator_id, None) or _OpenCreator()
        earnings = {name: int(records.earnings.get(name) or 0) for name in (*BUCKETS, "lifetime")}
        self.totals["creators"] += 1
        for bucket in HELD_BUCKETS:
            self.totals[f"diamonds_{bucket}"] += earnings[bucket]
            self.totals["diamonds_held"] += earnings[bucket]
        self._count("earnings_bucket")
        for bucket in BUCKETS:
            if earnings[bucket] != state.sums[bucket]:
                self.violate(
                    "earnings_bucket",
                    "creator",
                    creator_id,
                    f"{bucket} is {earnings[bucket]}; the diamond ledger sums to {state.sums[bucket]} "
                    f"(off by {earnings[bucket] - state.sums[bucket]:+})",
                )
        self._count("earnings_lifetime")
        if earnings["lifetime"] != state.lifetime:
            self.violate(
                "earnings_lifetime",
                "creator",
                creator_id,
                f"lifetime is {earnings['lifetime']}; its gift credits sum to {state.lifetime}",
            )
        self._check_holds(creator_id, state, records, earnings["pending"])
        self._check_credited(creator_id, state, records)
        self._check_withdrawals(creator_id, state, records, earnings["reserved"])

    def _check_holds(
        self, creator_id: str, state: _OpenCreator, records: CreatorRecords, pending: int
    ) -> None:
        self._count("holds")
        held = {ref: int(n) for ref, n in records.held.items()}
        if sum(held.values()) != pending:
            self.violate(
                "holds",
                "creator",
                creator_id,
                f"the holds add up to {sum(held.values())} diamonds; pending is {pending}",
            )
        unindexed = set(held).symmetric_difference(records.holds)
        if unindexed:
            self.violate(
                "holds",
                "creator",
                creator_id,
                f"{len(unindexed)} hold(s) in only one of held and holds, e.g. {_some(unindexed)}",
            )
        for ref, n in held.items():
            credit = self._credits.get(ref)
            if ref not in state.credits or credit is None or ref in state.reversals:
                self.violate(
                    "holds", "creator", creator_id, f"hold {ref} is not an unreversed credit of this creator"
                )
            elif n != credit.diamonds:
                self.violate(
                    "holds",
                    "creator",
                    creator_id,
                    f"hold {ref} keeps {n} diamonds; its credit was {credit.diamonds}",
                )

    def _check_credited(self, creator_id: str, state: _OpenCreator, records: CreatorRecords) -> None:
        credited = set(records.credited)
        reversed_ = set(records.reversed)
        self._count("credit_matched", len(state.credits))
        unguarded = state.credits - credited
        if unguarded:
            self.violate(
                "credit_matched",
                "creator",
                creator_id,
                f"{len(unguarded)} credit(s) missing from the credited set, e.g. {_some(unguarded)}",
            )
        phantom = credited - state.credits - reversed_
        if phantom:
            self.violate(
                "credit_matched",
                "creator",
                creator_id,
                f"{len(phantom)} gift event(s) in the credited set were neither credited nor reversed, "
                f"e.g. {_some(phantom)}",
            )
        unmarked = state.reversals - reversed_
        if unmarked:
            self.violate(
                "reversal_matched",
                "creator",
                creator_id,
                f"{len(unmarked)} reversal(s) missing from the reversed set, e.g. {_some(unmarked)}",
            )
        for ref in reversed_ - state.credits:
            self._refused[ref] = creator_id
        self._reversed_by.update(dict.fromkeys(reversed_, creator_id))

    def _check_withdrawals(
        self, creator_id: str, state: _OpenCreator, records: CreatorRecords, reserved: int
    ) -> None:
        requested = 0
        for wid in sorted(set(state.withdrawals) | set(records.withdrawals)):
            self._count("withdrawal_once")
            self._withdrawal_ids.append((creator_id, wid))
            seen = state.withdrawals.get(wid) or _OpenWithdrawal()
            record = records.withdrawals.get(wid)
            self.totals["withdrawals"] += 1
            if seen.requested != 1:
                self.violate(
                    "withdrawal_once",
                    "creator",
                    creator_id,
                    f"withdrawal {wid} is requested {seen.requested} times in the diamond ledger",
                )
            if len(seen.decisions) > 1:
                kinds = ", ".join(kind for kind, _ in seen.decisions)
                self.violate(
                    "withdrawal_once",
                    "creator",
                    creator_id,
                    f"withdrawal {wid} is decided {len(seen.decisions)} times ({kinds})",
                )
            if not record:
                self.violate("withdrawal_once", "creator", creator_id, f"withdrawal {wid} has no record")
                continue
            recorded_state = record.get("state", "")
            decided = seen.decisions[-1][0] if seen.decisions else "requested"
            if recorded_state != decided:
                self.violate(
                    "withdrawal_once",
                    "creator",
                    creator_id,
                    f"withdrawal {wid} is {recorded_state!r} in its record; the ledger says {decided!r}",
                )
            diamonds = int(record.get("diamonds") or 0)
            amounts = {seen.diamonds} | {n for _, n in seen.decisions}
            if amounts != {diamonds}:
                self.violate(
                    "withdrawal_once",
                    "creator",
                    creator_id,
                    f"withdrawal {wid} is for {diamonds} diamonds; the ledger moves {sorted(amounts)}",
                )
            if recorded_state in ("requested", "paid", "rejected"):
                self.totals[f"withdrawals_{recorded_state}"] += 1
            if recorded_state == "requested":
                requested += diamonds
        self._count("withdrawal_reserved")
        if requested != reserved:
            self.violate(
                "withdrawal_reserved",
                "creator",
                creator_id,
                f"reserved is {reserved}; requested withdrawals hold {requested} diamonds",
            )

    # -- cross-checks ----------------------------------------------------------------------

    def rooms_to_resolve(self) -> set[str]:
        """Rooms of gift debits that do not name their creator (older entries)."""
        return {g.room for g in self._gifts.values() if g.creator is None}

    def room_creators(self, creators: Mapping[str, str]) -> None:
        self._rooms.update(creators)

    def unmatched_senders(self) -> set[str]:
        """Senders whose credits or reversals match nothing read so far: on a running server,
        their ledgers may have grown after they were read (see ``late_coin_entries``)."""
        senders = {c.sender for ref, c in self._credits.items() if ref not in self._gifts}
        for ref, reversal in self._reversals.items():
            credit = self._credits.get(ref)
            if credit is not None and (credit.sender, reversal.order) not in self._clawed:
                senders.add(credit.sender)
        senders.discard("")
        return senders

    def withdrawal_listing(self, members: Iterable[str]) -> None:
        """The admin listing's members, ``<creator>:<withdrawal>``."""
        self._listing = set(members)

    def finish(self, elapsed_s: float = 0.0) -> AuditResult:
        for user_id in list(self._wallets):
            self.wallet(user_id, {})
        for creator_id in list(self._creators):
            self.creator(creator_id, CreatorRecords(earnings={}))
        self._match_gifts()
        self._match_credits()
        self._match_reversals()
        self._match_taken()
        self._match_outbox()
        self._conservation()
        if self._listing is not None:
            for creator_id, wid in self._withdrawal_ids:
                self._count("withdrawal_listed")
                if f"{creator_id}:{wid}" not in self._listing:
                    self.violate(
                        "withdrawal_listed",
                        "creator",
                        creator_id,
                        f"withdrawal {wid} is not in the admin listing",
                    )
        checks = tuple(Check(name, self._checked[name], self._failed[name]) for name in INVARIANTS)
        return AuditResult(
            checks=checks,
            totals=dict(self.totals),
            violations=tuple(self._violations),
            violation_count=sum(self._failed.values()),
            elapsed_s=elapsed_s,
        )

    def _match_gifts(self) -> None:
        totals = self.totals
        for ref, gift in self._gifts.items():
            self._count("gift_credited")
            totals["gifts"] += 1
            creator = gift.creator or self._rooms.get(gift.room)
            credit = self._credits.get(ref)
            if credit is not None:
                totals["gifts_credited"] += 1
                if (creator is not None and credit.creator != creator) or credit.sender != gift.sender:
                    self.violate(
                        "credit_matched",
                        "creator",
                        credit.creator,
                        f"gift event {ref} is credited here for sender {credit.sender!r}; "
                        f"user {gift.sender} debited it for creator {creator}",
                    )
                if credit.coins != gift.coins:
                    self.violate(
                        "credit_matched",
                        "creator",
                        credit.creator,
                        f"gift event {ref} is credited for {credit.coins} coins; "
                        f"user {gift.sender} paid {gift.coins}",
                    )
            elif ref in self._outbox:
                totals["gifts_in_flight"] += 1
            elif ref in self._refused and (creator is None or self._refused[ref] == creator):
                totals["gifts_reversed_before_credit"] += 1
            else:
                self.violate(
                    "gift_credited",
                    "user",
                    gift.sender,
                    f"gift event {ref} ({gift.coins} coins to creator {creator}) was never credited "
                    "and is not in flight",
                )

    def _match_credits(self) -> None:
        for ref, credit in self._credits.items():
            if ref not in self._gifts:
                self.violate(
                    "credit_matched",
                    "creator",
                    credit.creator,
                    f"gift event {ref} is credited ({credit.diamonds} diamonds) but user "
                    f"{credit.sender or '?'} never debited it",
                )

    def _match_reversals(self) -> None:
        for ref, reversal in self._reversals.items():
            self._count("reversal_matched")
            self.totals["reversals"] += 1
            credit = self._credits.get(ref)
            if credit is None or credit.creator != reversal.creator:
                self.violate(
                    "reversal_matched",
                    "creator",
                    reversal.creator,
                    f"gift event {ref} is reversed but was never credited to this creator",
                )
                continue
            if reversal.diamonds != credit.diamonds:
                self.violate(
                    "reversal_matched",
                    "creator",
                    reversal.creator,
                    f"gift event {ref} is reversed by {reversal.diamonds} diamonds; "
                    f"it was credited {credit.diamonds}",
                )
            if (credit.sender, reversal.order) not in self._clawed:
                self.violate(
                    "reversal_matched",
                    "creator",
                    reversal.creator,
                    f"gift event {ref} is reversed for order {reversal.order}, which user "
                    f"{credit.sender} never had clawed back",
                )

    def _match_taken(self) -> None:
        for ref, taken in self._taken.items():
            self._count("clawback_taken")
            if ref in self._queued or self._reversed_by.get(ref) == taken.creator:
                continue
            self.violate(
                "clawback_taken",
                "user",
                taken.buyer,
                f"the clawback of order {taken.order} took gift {ref}, but creator {taken.creator} "
                "kept its diamonds: the gift was neither reversed nor queued for reversal",
            )

    def _match_outbox(self) -> None:
        for ref, (user_id, raw) in self._outbox.items():
            self._count("outbox")
            gift = self._gifts.get(ref)
            if gift is None or gift.sender != user_id:
                self.violate(
                    "outbox", "user", user_id, f"outbox entry {ref} matches no gift debit of this user"
                )
                continue
            try:
                body = orjson.loads(raw)
                coins, creator = int(body["coins"]), str(body["creator_id"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                self.violate(
                    "outbox", "user", user_id, f"outbox entry {ref} is not a creator credit: {raw[:200]!r}"
                )
                continue
            if coins != gift.coins or (gift.creator is not None and creator != gift.creator):
                self.violate(
                    "outbox",
                    "user",
                    user_id,
                    f"outbox entry {ref} credits {coins} coins to {creator}; the debit was "
                    f"{gift.coins} coins for {gift.creator}",
                )

    def _conservation(self) -> None:
        t = self.totals
        self._count("coin_conservation")
        accounted = t["coins_in_wallets"] + t["coins_gifted"] + t["coins_clawed_back"]
        if t["coins_purchased"] != accounted:
            self.violate(
                "coin_conservation",
                "books",
                "",
                f"{t['coins_purchased']} coins bought; wallets {t['coins_in_wallets']} + gifted "
                f"{t['coins_gifted']} + clawed back {t['coins_clawed_back']} = {accounted} "
                f"(off by {accounted - t['coins_purchased']:+})",
            )
        self._count("diamond_conservation")
        owed = t["diamonds_credited"] - t["diamonds_reversed"]
        if owed != t["diamonds_held"]:
            self.violate(
                "diamond_conservation",
                "books",
                "",
                f"{t['diamonds_credited']} diamonds credited - {t['diamonds_reversed']} reversed = {owed}; "
                f"creators hold {t['diamonds_held']} (off by {t['diamonds_held'] - owed:+})",
            )


def _some(items: Collection[str], n: int = 3) -> str:
    return ", ".join(sorted(items)[:n])


def _int_or_none(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


# -- reading an engine -------------------------------------------------------------------------


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
        self.keys = keys
        self.checker = checker
        self.page = page
        self._raw: RawConnection | None = None
        self._last_ids: dict[str, str] = {}

    async def run(self) -> None:
        # On a cluster the bare connection would reach one node: read through the client.
        self._raw = None if self._clustered else await RawConnection.like(self.redis)
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

    @property
    def _clustered(self) -> bool:
        return isinstance(self.redis, RedisCluster)

    async def _snapshots(self, queue: Callable[[Pipeline, str], None], accounts: list[str]) -> list[Any]:
        """The replies of the commands ``queue`` makes for each account, read at one instant
        per account (MULTI/EXEC): all accounts in one transaction on a single engine, one
        transaction per account on a cluster (a transaction's keys must share a slot).

        ``queue`` sends plain ``execute_command`` calls: redis-py's cluster transaction passes
        the ``keys=`` option of its command methods on to reply parsers that take none.
        """
        if not self._clustered:
            async with self.redis.pipeline(transaction=True) as pipe:
                for account in accounts:
                    queue(pipe, account)
                replies: list[Any] = await pipe.execute()
            return replies

        async def one(account: str) -> list[Any]:
            async with self.redis.pipeline(transaction=True) as pipe:
                queue(pipe, account)
                got: list[Any] = await pipe.execute()
            return got

        return [reply for replies_ in await asyncio.gather(*map(one, accounts)) for reply in replies_]

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
