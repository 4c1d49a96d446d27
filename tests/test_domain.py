"""Domain rules, fed inputs directly: prices, shares, catalog, signatures, settings."""

from __future__ import annotations

import secrets
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain import webhooks
from server.domain.catalog import Catalog, Gift
from server.domain.money import diamonds_for, price_gift, utc_day
from server.errors import BadSignature, InvalidRequest, NotFound
from server.settings import Settings, SettingsError
from tests.support import JWT_SECRET, WEBHOOK_SECRET

pytestmark = pytest.mark.pure

SECRET = "whsec-0123456789abcdef"


def test_the_us_price_book_is_exact() -> None:
    packages = Catalog.load_default().packages("US")
    assert [(p.coins, p.amount_minor, p.currency) for p in packages] == [
        (100, 199, "USD"),
        (550, 999, "USD"),
        (1250, 1999, "USD"),
        (2650, 3999, "USD"),
        (5450, 7999, "USD"),
    ]


def test_the_catalog_spans_a_rose_to_a_universe_in_several_currencies() -> None:
    catalog = Catalog.load_default()
    costs = sorted(g.coins for g in catalog.gifts.values())
    assert len(costs) >= 10
    assert catalog.gift("rose").coins == 1 == costs[0]
    assert catalog.gift("universe").coins == 34999 == costs[-1]
    currencies = {p.currency for region in catalog.regions for p in catalog.packages(region)}
    assert {"USD", "GBP", "EUR"} <= currencies
    for region in catalog.regions:
        for package in catalog.packages(region):
            assert isinstance(package.amount_minor, int) and package.amount_minor > 0


def test_unknown_gifts_packages_and_regions_are_named_errors() -> None:
    catalog = Catalog.load_default()
    with pytest.raises(NotFound, match="unknown gift 'tiara'"):
        catalog.gift("tiara")
    with pytest.raises(InvalidRequest, match="unknown region 'XX'"):
        catalog.packages("XX")
    with pytest.raises(NotFound) as err:
        catalog.package("GB", "us_550")
    assert err.value.code == "unknown_package"


def test_a_catalog_with_a_float_price_is_refused() -> None:
    bad = '[regions.US]\ncurrency = "USD"\npackages = [{ id = "p", coins = 100, amount_minor = 1.99 }]'
    with pytest.raises(ValueError, match="positive integer"):
        Catalog.from_toml(bad)


@given(coins=st.integers(0, 10**9), num=st.integers(0, 1000), den=st.integers(1, 1000))
def test_the_creator_share_rounds_down_exactly(coins: int, num: int, den: int) -> None:
    share = Fraction(min(num, den), den)
    diamonds = diamonds_for(coins, share)
    assert diamonds <= coins * share < diamonds + 1


def test_a_gift_costs_its_price_times_count() -> None:
    gift = Gift("lion", "Lion", 29999, False, "lion")
    price = price_gift(gift, 3, Fraction(1, 2))
    assert (price.coins, price.diamonds) == (89997, 44998)
    with pytest.raises(ValueError):
        price_gift(gift, 1000, Fraction(1, 2))


def test_the_budget_day_turns_at_utc_midnight() -> None:
    midnight = 1_764_028_800_000  # 2025-11-25T00:00:00Z
    assert utc_day(midnight - 1) + 1 == utc_day(midnight) == utc_day(midnight + 86_399_999)


def test_a_signed_webhook_verifies() -> None:
    body = b'{"id":"evt_1"}'
    header = webhooks.sign(body, SECRET, 1_000)
    webhooks.verify(body, header, SECRET, now=1_100, tolerance_s=300)


@pytest.mark.parametrize(
    ("header", "now", "message"),
    [
        (None, 1_000, "missing"),
        ("t=1000", 1_000, "must carry"),
        ("v1=abc", 1_000, "must carry"),
        ("t=abc,v1=abc", 1_000, "malformed"),
        ("SIGNED", 1_301, "away from now"),
        ("SIGNED-OTHER-SECRET", 1_000, "does not match"),
        ("SIGNED-OTHER-BODY", 1_000, "does not match"),
    ],
)
def test_a_bad_webhook_signature_is_refused(header: str | None, now: int, message: str) -> None:
    body = b'{"id":"evt_1"}'
    if header == "SIGNED":
        header = webhooks.sign(body, SECRET, 1_000)
    elif header == "SIGNED-OTHER-SECRET":
        header = webhooks.sign(body, "another-secret-0123456789", 1_000)
    elif header == "SIGNED-OTHER-BODY":
        header = webhooks.sign(b'{"id":"evt_2"}', SECRET, 1_000)
    with pytest.raises(BadSignature, match=message):
        webhooks.verify(body, header, SECRET, now=now, tolerance_s=300)


def test_a_rotated_secret_still_verifies_with_two_signatures() -> None:
    body = b"{}"
    old = webhooks.sign(body, "old-secret-0123456789abc", 5)
    new = webhooks.sign(body, SECRET, 5)
    webhooks.verify(body, f"{old},{new.split(',')[1]}", SECRET, now=5, tolerance_s=300)


def test_settings_refuse_missing_secrets_outside_demo_mode() -> None:
    with pytest.raises(SettingsError, match="GIFTING_JWT_SECRET"):
        Settings.from_env({})
    # The signed webhook's secret may be left out (its provider is then off), not set weak.
    assert Settings.from_env({"GIFTING_JWT_SECRET": JWT_SECRET}).webhook_secret == ""
    with pytest.raises(SettingsError, match="GIFTING_WEBHOOK_SECRET is blank"):
        Settings.from_env({"GIFTING_JWT_SECRET": JWT_SECRET, "GIFTING_WEBHOOK_SECRET": " " * 32})
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        Settings.from_env({"GIFTING_JWT_SECRET": JWT_SECRET[:31], "GIFTING_WEBHOOK_SECRET": WEBHOOK_SECRET})
    demo = Settings.from_env({"GIFTING_DEMO": "1"})
    assert demo.demo and demo.jwt_secret and demo.webhook_secret


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("demo-jwt-secret-not-for-production", "is public"),
        ("demo-webhook-secret-not-for-production", "is public"),
        ("replace-me-with-at-least-32-random-bytes-0000", "is public"),
        ("replace-me-with-at-least-32-random-bytes-1111", "is public"),
        ("replace-me-with-a-secret-of-my-own-choosing-9", "is public"),
        (" " * 32, "is blank"),
        ("\t \n" * 16, "is blank"),
        ("x" * 64, "is too predictable"),
        ("0123456789" * 4, "is too predictable"),
        (secrets.token_hex(8) * 4, "is too predictable"),
    ],
)
def test_settings_refuse_public_and_weak_secrets_outside_demo_mode(value: str, why: str) -> None:
    strong = secrets.token_urlsafe(48)
    for name, other in (
        ("GIFTING_JWT_SECRET", "GIFTING_WEBHOOK_SECRET"),
        ("GIFTING_WEBHOOK_SECRET", "GIFTING_JWT_SECRET"),
    ):
        with pytest.raises(SettingsError, match=f"{name} {why}") as refused:
            Settings.from_env({name: value, other: strong})
        assert value not in str(refused.value) or not value.strip()
    # Demo mode runs with known secrets anyway (it mints tokens for anyone): no refusal there.
    assert Settings.from_env({"GIFTING_DEMO": "1", "GIFTING_JWT_SECRET": value.strip() or "d" * 32}).demo


def test_settings_accept_the_random_secrets_the_docs_tell_how_to_make() -> None:
    for _ in range(200):
        Settings.from_env(
            {"GIFTING_JWT_SECRET": secrets.token_urlsafe(48), "GIFTING_WEBHOOK_SECRET": secrets.token_hex(32)}
        )
        Settings.from_env(
            {
                "GIFTING_JWT_SECRET": secrets.token_urlsafe(32),
                "GIFTING_WEBHOOK_SECRET": secrets.token_urlsafe(24),
            }
        )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GIFTING_PORT", "eighty"),
        ("GIFTING_PORT", "70000"),
        ("GIFTING_FSYNC", "never"),
        ("GIFTING_CREATOR_SHARE", "1.5"),
        ("GIFTING_CREATOR_SHARE", "half"),
        ("GIFTING_DEMO", "maybe"),
        ("GIFTING_KEY_PREFIX", "{x}"),
        ("GIFTING_LOG_FORMAT", "xml"),
        ("GIFTING_METRICS", "maybe"),
        ("GIFTING_REPLICA_ACKS", "-1"),
        ("GIFTING_REPLICA_ACKS", "1"),  # without GIFTING_REDIS_URL: the embedded engine has none
        ("GIFTING_REPLICA_TIMEOUT_MS", "0"),
        ("GIFTING_ORDER_TTL_S", "0"),
        ("GIFTING_HEADER_TIMEOUT_S", "0"),
        ("GIFTING_MAX_HEADER_BYTES", "100"),
        ("GIFTING_MAX_HEADERS", "many"),
        ("GIFTING_KEEP_ALIVE_S", "0"),
        ("GIFTING_METRICS_ALLOW", "10.0.0.0/8,everyone"),
    ],
)
def test_settings_name_the_variable_that_is_wrong(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({"GIFTING_DEMO": "1", name: value} if name != "GIFTING_DEMO" else {name: value})


def test_settings_read_every_documented_variable(tmp_path: object) -> None:
    settings = Settings.from_env(
        {
            "GIFTING_HOST": "0.0.0.0",
            "GIFTING_PORT": "9000",
            "GIFTING_DATA_DIR": "/srv/gifting",
            "GIFTING_REDIS_URL": "redis://cache:6379/2",
            "GIFTING_FSYNC": "everysec",
            "GIFTING_JWT_SECRET": JWT_SECRET,
            "GIFTING_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GIFTING_CREATOR_SHARE": "0.55",
            "GIFTING_LOG_FORMAT": "json",
            "GIFTING_METRICS": "0",
            "GIFTING_REPLICA_ACKS": "2",
            "GIFTING_REPLICA_TIMEOUT_MS": "250",
        }
    )
    assert (settings.host, settings.port, str(settings.data_dir)) == ("0.0.0.0", 9000, "/srv/gifting")
    assert (settings.redis_url, settings.fsync, settings.demo) == ("redis://cache:6379/2", "everysec", False)
    assert settings.creator_share == Fraction(11, 20)
    assert (settings.log_format, settings.metrics) == ("json", False)
    assert (settings.replica_acks, settings.replica_timeout_ms) == (2, 250)
    defaults = Settings.from_env({"GIFTING_DEMO": "1"})
    assert (defaults.log_format, defaults.metrics) == ("text", True)
