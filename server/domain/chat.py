"""The rules of a chat message and of a creator's chat settings, apart from any I/O.

A message's text is normalised (NFC), trimmed and checked (1-150 characters, no control,
separator or bidi-override character); then the creator's rules apply (links, blocked
words), and profanity is masked with ``better_profanity``'s word list and scan
(``better-profanity-rs``, the same censored text from a compiled core). Whatever is stored
or broadcast has passed ``sanitised`` once more after the masking.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Annotated

import msgspec
from better_profanity_rs import Profanity

from server.domain.ids import IDEMPOTENCY_KEY_PATTERN
from server.errors import InvalidRequest

MIN_LENGTH = 1
MAX_LENGTH = 150
# A raw text this long cannot be a message once normalised and trimmed; refused unread.
MAX_RAW_LENGTH = 4 * MAX_LENGTH
MAX_SLOW_MODE_S = 300
MAX_BLOCKED_WORDS = 200
MAX_BLOCKED_WORD_LENGTH = 40
# The live's top gifters who wear the top_gifter badge.
TOP_GIFTERS = 3
MASK_CHAR = "*"

# Characters that reorder or hide text around them (Unicode's explicit bidi formatting
# characters and marks): refused, so that a message cannot disguise itself or its neighbours.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Control characters, surrogates, and the line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})

# Anything a client could make a link of: a scheme, a "www." host, or a dotted name ending
# in a common top-level domain (so "e.g." and "3.14" are not links).
_TLDS = (
    "com|net|org|io|gg|tv|co|me|ly|xyz|app|dev|info|biz|live|link|site|online|shop|store|club|"
    "ru|cn|uk|de|fr|es|it|nl|br|in|jp|kr|us|ca|au|be|ch|pl|se|no|fi|dk|tk|ml|ga|cf|gq|to|sh|ai|"
    "cc|ws|fm|am|im|so|vip|top|fun|win|bet|pro|one|lol|page|blog|news"
)
_LINK = re.compile(rf"(?i)(?:\b[a-z][a-z0-9+.-]*://|\bwww\.|\b[\w-]+(?:\.[\w-]+)*\.(?:{_TLDS})(?![\w-]))")


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A chat message as sent: over ``POST /v1/rooms/{id}/chat`` or a ``chat`` frame."""

    text: Annotated[
        str,
        msgspec.Meta(
            max_length=MAX_RAW_LENGTH,
            description=f"{MIN_LENGTH} to {MAX_LENGTH} characters once NFC-normalised and trimmed; "
            "no control, line separator or bidi-override character",
        ),
    ]
    client_id: Annotated[
        str,
        msgspec.Meta(
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="the message's idempotency key: a resend with it posts once",
        ),
    ]


BlockedWord = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_BLOCKED_WORD_LENGTH,
        description="matched as a whole word, case-insensitively (NFC, casefolded); "
        "no control character, not blank",
    ),
]


class ChatSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A creator's chat rules, for all of their lives."""

    slow_mode_s: Annotated[int, msgspec.Meta(ge=0, le=MAX_SLOW_MODE_S)] = 0
    blocked_words: Annotated[list[BlockedWord], msgspec.Meta(max_length=MAX_BLOCKED_WORDS)] = msgspec.field(
        default_factory=list
    )
    allow_links: bool = False

    def normalised(self) -> ChatSettings:
        """The settings as kept: each blocked word NFC, trimmed and casefolded, once each."""
        words: list[str] = []
        for raw in self.blocked_words:
            word = fold(raw)
            if not word or refused_character(word) is not None:
                raise InvalidRequest(f"blocked word {raw[:40]!r} is empty or holds a control character")
            if word not in words:
                words.append(word)
        return ChatSettings(self.slow_mode_s, words, self.allow_links)

    def to_dict(self) -> dict[str, object]:
        return {
            "slow_mode_s": self.slow_mode_s,
            "blocked_words": list(self.blocked_words),
            "allow_links": self.allow_links,
        }


def fold(text: str) -> str:
    """How words compare: NFC, trimmed, casefolded (and NFC again: casefolding can decompose)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).strip().casefold())


def refused_character(text: str) -> str | None:
    """The first character a message may not hold, or None."""
    for char in text:
        if char in BIDI_CONTROLS or unicodedata.category(char) in _REFUSED_CATEGORIES:
            return char
    return None


def sanitised(text: str) -> str:
    """``text`` NFC-normalised and trimmed, or ``InvalidRequest`` saying which rule it breaks."""
    clean = unicodedata.normalize("NFC", text).strip()
    if not MIN_LENGTH <= len(clean) <= MAX_LENGTH:
        raise InvalidRequest(
            f"a chat message is {MIN_LENGTH} to {MAX_LENGTH} characters once trimmed; "
            f"this one is {len(clean)}"
        )
    bad = refused_character(clean)
    if bad is not None:
        raise InvalidRequest(
            f"a chat message may not hold control or bidi-override characters (U+{ord(bad):04X})"
        )
    return clean


def has_link(text: str) -> bool:
    return _LINK.search(text) is not None


def blocked_word_in(text: str, blocked: list[str]) -> str | None:
    """A word of ``blocked`` (folded words) found in ``text`` as a whole word, or None."""
    if not blocked:
        return None
    found = _whole_words(tuple(blocked)).search(fold(text))
    return found[0] if found else None


@functools.lru_cache(maxsize=1024)
def _whole_words(words: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for a creator's blocked words, compiled once per list (a list changes rarely)."""
    return re.compile("|".join(rf"(?<!\w){re.escape(word)}(?!\w)" for word in words))


_PROFANITY = Profanity()


def masked(text: str) -> str:
    """``text`` (already ``sanitised``) with profanity masked, and sanitised again: a mask
    is four characters whatever the word's length, so a full message is cut back to the
    most characters allowed."""
    hidden = _PROFANITY.censor(text, MASK_CHAR)
    if hidden == text:
        return text
    return sanitised(unicodedata.normalize("NFC", hidden)[:MAX_LENGTH])


# The longest mute, seconds: a day.
MAX_MUTE_S = 86_400


class MuteRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How long a user is muted in a live."""

    seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_MUTE_S)]
