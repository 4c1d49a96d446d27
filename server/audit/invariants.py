"""What the books audit checks and what it answers: the invariants, the ledger kinds they
speak of, and the result types (violations, checks, the audit's result)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

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
    "coin_entry": "each coin ledger entry is a purchase, gift, clawback or restore with sound fields, "
    "each gift debited once",
    "purchase_once": "each order is credited at most once; it is clawed back at most once, again only "
    "after a restore, and restored only after a clawback; each by its own coins",
    "coin_conservation": "coins bought + coins restored = coins in wallets + coins gifted "
    "+ coins clawed back",
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
    "battle_score": "each ended battle counted exactly the gifts to its two rooms debited in its "
    "window [started_ms, ended_ms), each once, to its room's side (a gift still in its sender's "
    "outbox may not be counted yet), and each side's score is the coins of the gifts it counted",
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
            f"coins restored     {t['coins_restored']:>16,}",
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
