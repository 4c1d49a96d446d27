"""The audit's rules: ``BooksChecker`` is fed parsed ledger entries and records, account by
account, and cross-checks the accounts when it finishes; no I/O, so the rules can be tested
by feeding them anything."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

import orjson

from server.audit.invariants import (
    BUCKETS,
    DECISIONS,
    HELD_BUCKETS,
    INVARIANTS,
    MAX_VIOLATIONS,
    MOVES,
    AuditResult,
    Check,
    CreatorRecords,
    Entry,
    Fields,
    Violation,
)
from server.domain.money import diamonds_for
from server.settings import Settings


class _Gift(NamedTuple):
    sender: str
    creator: str | None
    room: str
    coins: int
    # The debit's time: the engine ms of its ledger entry's id (what a battle counts it by).
    debit_ms: int


class _Battle(NamedTuple):
    battle_id: str
    rooms: tuple[str, str]
    scores: tuple[int, int]
    started_ms: int
    ended_ms: int
    scored: frozenset[str]


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
    ``late_coin_entries``, ``battle`` (each ended battle) and ``withdrawal_listing``; then
    ``finish``.
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
                "coins_restored",
                "diamonds_credited",
                "diamonds_reversed",
                *(f"diamonds_{b}" for b in HELD_BUCKETS),
                "diamonds_held",
                "gifts",
                "battles",
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
        # Orders ever clawed back, and those clawed back with no restore since.
        self._clawed: set[tuple[str, str]] = set()
        self._refunded: set[tuple[str, str]] = set()
        self._taken: dict[str, _Taken] = {}
        self._queued: set[str] = set()
        self._reversed_by: dict[str, str] = {}
        self._outbox: dict[str, tuple[str, str]] = {}
        self._refused: dict[str, str] = {}
        self._withdrawal_ids: list[tuple[str, str]] = []
        self._rooms: dict[str, str] = {}
        self._listing: set[str] | None = None
        self._battles: list[_Battle] = []

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
            elif kind == "restore":
                self._restore(user_id, entry_id, ref, delta)
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
        debit_ms = int(entry_id.partition("-")[0])
        self._gifts[ref] = _Gift(user_id, f.get("creator_id"), f.get("room_id", ""), coins, debit_ms)
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
        if (user_id, order) in self._refunded:
            self.violate(
                "purchase_once",
                "user",
                user_id,
                f"order {order} is clawed back twice with no restore between",
            )
        self._clawed.add((user_id, order))
        self._refunded.add((user_id, order))
        self.totals["coins_clawed_back"] += coins

    def _restore(self, user_id: str, entry_id: str, order: str, coins: int) -> None:
        """A refund the provider reversed: the coins its clawback took come back, once."""
        self._count("purchase_once")
        if (user_id, order) not in self._refunded:
            self.violate(
                "purchase_once",
                "user",
                user_id,
                f"restore {entry_id} of order {order}, which has no clawback to restore",
            )
        elif coins != self._purchases.get((user_id, order)):
            self.violate(
                "purchase_once",
                "user",
                user_id,
                f"restore {entry_id} of order {order} puts back {coins} coins; the order credited "
                f"{self._purchases.get((user_id, order))}",
            )
        self._refunded.discard((user_id, order))
        self.totals["coins_restored"] += coins

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
        for entry_id, f in entries:
            kind, ref = f.get("kind"), f.get("ref", "")
            if kind == "gift" and ref not in self._gifts:
                self._gifts[ref] = _Gift(
                    user_id,
                    f.get("creator_id"),
                    f.get("room_id", ""),
                    -int(f["delta"]),
                    int(entry_id.partition("-")[0]),
                )
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

    def battle(self, battle_id: str, record: Fields, scored: Iterable[str]) -> None:
        """An ended battle's record and the gift event ids it counted, read after every
        ledger and outbox (its window closed before they were read)."""
        try:
            battle = _Battle(
                battle_id,
                (record["room_0"], record["room_1"]),
                (int(record["score_0"]), int(record["score_1"])),
                int(record["started_ms"]),
                int(record["ended_ms"]),
                frozenset(scored),
            )
        except (KeyError, ValueError):
            self.violate("battle_score", "battle", battle_id, f"the record is malformed: {dict(record)}")
            return
        self._battles.append(battle)
        self.totals["battles"] += 1

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
        self._match_battles()
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

    def _match_battles(self) -> None:
        if not self._battles:
            return
        by_room: dict[str, list[tuple[str, _Gift]]] = {}
        rooms = {room for battle in self._battles for room in battle.rooms}
        for ref, gift in self._gifts.items():
            if gift.room in rooms:
                by_room.setdefault(gift.room, []).append((ref, gift))
        for battle in self._battles:
            self._count("battle_score")
            for side, room in enumerate(battle.rooms):
                due = {
                    ref: gift.coins
                    for ref, gift in by_room.get(room, ())
                    if battle.started_ms <= gift.debit_ms < battle.ended_ms
                }
                counted = {ref for ref in battle.scored if ref in due}
                coins = sum(due[ref] for ref in counted)
                missing = [ref for ref in due if ref not in counted and ref not in self._outbox]
                if coins != battle.scores[side] or missing:
                    self.violate(
                        "battle_score",
                        "battle",
                        battle.battle_id,
                        f"side {side} (room {room}) scores {battle.scores[side]}; the {len(counted)} gifts "
                        f"it counted cost {coins}; {len(missing)} gifts debited in its window are "
                        f"neither counted nor in flight ({_some(missing)})",
                    )
            stray = [ref for ref in battle.scored if not self._in_battle(self._gifts.get(ref), battle)]
            if stray:
                self.violate(
                    "battle_score",
                    "battle",
                    battle.battle_id,
                    f"{len(stray)} counted gifts are no gift to its rooms in its window ({_some(stray)})",
                )

    @staticmethod
    def _in_battle(gift: _Gift | None, battle: _Battle) -> bool:
        return (
            gift is not None
            and gift.room in battle.rooms
            and battle.started_ms <= gift.debit_ms < battle.ended_ms
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
        came_in = t["coins_purchased"] + t["coins_restored"]
        if came_in != accounted:
            self.violate(
                "coin_conservation",
                "books",
                "",
                f"{t['coins_purchased']} coins bought + {t['coins_restored']} restored = {came_in}; "
                f"wallets {t['coins_in_wallets']} + gifted {t['coins_gifted']} + clawed back "
                f"{t['coins_clawed_back']} = {accounted} (off by {accounted - came_in:+})",
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
