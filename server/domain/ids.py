"""Identifiers: what a valid id looks like, and how new ones are made."""

from __future__ import annotations

import re
import secrets
import time

from server.errors import InvalidRequest

# No braces (they would break hash tags) and nothing a key or a URL path must escape.
# They end in \Z, not $: in Python "$" also matches before a final newline.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}\Z"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}\Z"
_ID_RE = re.compile(ID_PATTERN)


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it is a valid id, else raise ``InvalidRequest`` naming ``what``."""
    if not _ID_RE.match(value):
        raise InvalidRequest(
            f"{what} must be 1-64 characters of letters, digits, '_' or '-', got {value[:80]!r}"
        )
    return value


def new_id(kind: str) -> str:
    """A sortable, unguessable id such as ``g_0193f1c2a4b1_5f2c9a0e1d3b4c7a``."""
    return f"{kind}_{time.time_ns() // 1_000_000:012x}_{secrets.token_hex(8)}"
