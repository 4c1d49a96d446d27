"""The books audit: replay every ledger and check that coins and diamonds balance.

Every balance change is a script that also appends a ledger entry, so the ledgers are the
books and the balances are their totals. The audit recomputes the totals from the ledgers
alone, without the scripts, so it catches what a script, a manual edit or a lost write got
wrong: a wallet or a diamond bucket that is not the sum of its entries, coins that appear
or vanish between buyers, wallets and creators, a gift credited twice or never, a
withdrawal paid twice, a gift a clawback took back whose creator kept the diamonds.

It has two halves, kept apart so the rules can be tested by feeding them anything:

- ``BooksChecker`` (``checker.py``) holds the rules, named with the result types in
  ``invariants.py``. It is fed parsed ledger entries and records, account by account, and
  ``finish()`` cross-checks the accounts and returns an ``AuditResult``.
- ``audit_books`` (``reader.py``) reads an engine under a key prefix and feeds the checker.
  It only reads. Ledgers are paged with ``XRANGE ... COUNT 10000`` over a connection of its
  own (``resp.py``) whose replies are parsed in bulk (redis-py parses a reply element by
  element, at about 20,000 stream entries a second, too slow for a million). Each account's
  balances are then read in one ``MULTI`` with the entries appended since its pages, so a
  running server cannot make an account disagree with itself while it is read.
"""

from __future__ import annotations

from server.audit.checker import BooksChecker
from server.audit.invariants import AuditResult, CreatorRecords
from server.audit.reader import audit_books
from server.audit.resp import EngineReplyError, RawConnection, parse_xrange_replies, resp_command

__all__ = [
    "AuditResult",
    "BooksChecker",
    "CreatorRecords",
    "EngineReplyError",
    "RawConnection",
    "audit_books",
    "parse_xrange_replies",
    "resp_command",
]
