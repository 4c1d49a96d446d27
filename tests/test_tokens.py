"""The token check every request and room socket goes through (``server.auth.Verifier``): a
token that passed is kept until it expires, and nothing else is kept."""

from __future__ import annotations

import time

import jwt
import pytest

from server.auth import Principal, Verifier, issue_token
from server.errors import Unauthorized

SECRET = "a-secret-for-the-token-tests-0123456789"

pytestmark = pytest.mark.pure


def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens PyJWT is asked to check from now on, in order."""
    seen: list[str] = []
    decode = jwt.decode

    def counted(token: str, *args: object, **kwargs: object) -> object:
        seen.append(token)
        return decode(token, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counted)
    return seen


def test_a_token_is_checked_once_and_then_known_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = Verifier(SECRET)
    seen = decodes(monkeypatch)
    token = issue_token(SECRET, "ann", "viewer", ttl_s=1, name="Ann")
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    seen.clear()
    assert verifier.token(token) == Principal("ann", "viewer", "Ann")
    assert verifier.header(f"Bearer {token}") == Principal("ann", "viewer", "Ann")
    assert seen == [token]
    while time.time() < expires:  # the token's own clock, not a wait for the server
        time.sleep(0.05)
    with pytest.raises(Unauthorized, match="the token has expired"):
        verifier.token(token)
    assert seen == [token, token]


def test_a_refused_token_is_refused_every_time_and_kept_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = Verifier(SECRET)
    forged = issue_token("another-secret-for-the-token-tests-0123", "ann", "admin")
    seen = decodes(monkeypatch)
    for _ in range(2):
        with pytest.raises(Unauthorized, match="Signature verification failed"):
            verifier.token(forged)
    assert seen == [forged, forged]
    good = issue_token(SECRET, "ann", "viewer")
    assert verifier.token(good) == Principal("ann", "viewer")
    with pytest.raises(Unauthorized, match="Signature verification failed"):
        verifier.token(forged)


def test_the_kept_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = Verifier(SECRET, size=2)
    tokens = [issue_token(SECRET, f"u{n}", "viewer") for n in range(3)]
    seen = decodes(monkeypatch)
    for token in tokens:
        verifier.token(token)
    verifier.token(tokens[2])
    verifier.token(tokens[0])
    # The third token pushed the first out; the third itself was still held.
    assert seen == [tokens[0], tokens[1], tokens[2], tokens[0]]
