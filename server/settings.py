"""Server settings: one frozen dataclass read from ``GIFTING_*`` environment variables."""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from ipaddress import IPv4Network, IPv6Network, ip_network
from itertools import pairwise
from pathlib import Path

FSYNC_POLICIES = ("always", "everysec")
LOG_FORMATS = ("text", "json")
# The App Store environments whose data is signed by Apple. The library's Xcode and
# LocalTesting environments skip the signature check altogether, so they are not accepted.
APPLE_ENVIRONMENTS = ("Production", "Sandbox")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:-]{0,64}$")
# How long past the diamond hold a clawback still looks for gifts (docs/MONEY.md).
CLAWBACK_GRACE_MS = 86_400_000
IPNetwork = IPv4Network | IPv6Network
# Stripe's API, and Stripe.js, which Stripe requires pages to load from its own origin.
STRIPE_API_BASE = "https://api.stripe.com"
STRIPE_JS_URL = "https://js.stripe.com/v3/"
# Google Play's Android Publisher API, and the certificates Google signs its OIDC tokens with
# (Pub/Sub push tokens among them), in the x509 PEM form google-auth's verify_token reads.
GOOGLE_API_BASE = "https://androidpublisher.googleapis.com/"
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # server processes sharing the port (server.workers)
    data_dir: Path = Path("var")
    redis_url: str | None = None
    fsync: str = "always"
    # Replicas that must hold a money write before it is acknowledged (store.replication),
    # and how long to wait for them.
    replica_acks: int = 0
    replica_timeout_ms: int = 500
    # How long a request may wait for the engine before it answers 503 (store.connection).
    engine_timeout_ms: int = 2_000
    jwt_secret: str = ""
    webhook_secret: str = ""
    demo: bool = False
    creator_share: Fraction = Fraction(1, 2)
    key_prefix: str = "gifting:"
    webhook_tolerance_s: int = 300
    max_body_bytes: int = 64 * 1024
    idempotency_ttl_s: int = 24 * 3600
    # How long an unpaid order lives (both its keys); a payment keeps it for good.
    order_ttl_s: int = 24 * 3600
    # Unpaid, unexpired orders one user may hold at once: bounds what one account (or address)
    # can leave in the engine to this many times the order lifetime, whatever its request rate.
    max_pending_orders: int = 20
    outbox_sweep_s: float = 10.0
    gift_rate_per_s: int = 20
    gift_burst: int = 40
    chat_rate_per_s: float = 1.0
    chat_burst: int = 5
    # Likes one user may send a room per second (also the burst), per process (hub.likes).
    like_rate_per_s: int = 15
    ip_rate_per_s: float = 50.0  # 0: no per-address request limit
    ip_burst: int = 200
    max_connections_per_user: int = 20  # 0: no limit
    # How long a connection's slot outlives its process's last renewal (renewed every third).
    connection_slot_ttl_s: float = 60.0
    tick_ms: int = 50
    # The viewer count and the joins go out to a room at most this often (hub.room); 0: every tick.
    presence_interval_ms: int = 1_000
    combo_window_ms: int = 3_000
    room_stream_len: int = 10_000
    ws_max_frame_bytes: int = 4 * 1024
    ws_buffer_bytes: int = 256 * 1024
    ws_ping_s: float = 20.0
    # Bounds on a request head, which arrives before any authentication (api.heads).
    header_timeout_s: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    # How long a connection may sit idle between requests before it is closed. Longer than
    # the idle expiry of the pools that reuse connections (httpx and Node 5 s, aiohttp 15 s,
    # proxies and load balancers 60 s), so that the client always closes first: a server that
    # closes first races a client reusing the connection, whose request is then reset.
    keep_alive_s: int = 75
    # Connections the kernel holds for the process before it accepts them: a restart's
    # reconnecting viewers arrive faster than they are served, and a connection the full
    # queue drops waits out TCP's retransmission timers (1, 3, 7 ... 63 s). The kernel caps
    # it at net.core.somaxconn.
    listen_backlog: int = 16_384
    # Handshakes a second a process takes from viewers coming back after it restarts. Its 1012
    # close asks each client to spread its first reconnect over connections / rate seconds,
    # so that they arrive no faster than the restarted process serves them.
    reconnect_rate: float = 1_000.0
    presence_ttl_s: float = 10.0
    allowed_origins: tuple[str, ...] = ()
    diamond_hold_s: float = 7 * 86_400
    diamond_value_millicents: int = 500
    min_withdrawal_diamonds: int = 10_000
    daily_payout_cap_minor: int = 100_000
    # Gift tiers by coins (a gift of at least moment_coins is a moment, of grand_moment_coins a
    # grand one: the pages show them larger), and the price from which a page asks to confirm.
    moment_coins: int = 1_000
    grand_moment_coins: int = 10_000
    confirm_coins: int = 1_000
    client_dir: Path | None = None
    log_format: str = "text"  # or json: one JSON object per line (server.logs)
    socket_log: bool = False  # a line per socket handshake, as for an HTTP request (server.logs)
    metrics: bool = True  # GET /metrics (server.metrics)
    # The client networks /metrics is served to; empty: any.
    metrics_allow: tuple[IPNetwork, ...] = ()
    # The App Store (server.providers.apple_client): on when the bundle id and the root certificates
    # are set. The app's Apple id is required in Production.
    apple_bundle_id: str = ""
    apple_app_id: int | None = None
    apple_environment: str = "Production"
    apple_root_certs: tuple[Path, ...] = ()
    # Stripe (server/providers/stripe_client.py): on when its secret key and webhook secrets are set.
    stripe_secret_key: str = ""
    stripe_publishable_key: str = ""
    # Every secret a Stripe webhook may be signed with: several while one is being rotated.
    stripe_webhook_secrets: tuple[str, ...] = ()
    stripe_api_base: str = STRIPE_API_BASE
    stripe_js_url: str = STRIPE_JS_URL
    # Google Play (server/providers/google_client.py): on when the package name, the service account's
    # key file and the Pub/Sub push subscription's audience and account are all set.
    google_package_name: str = ""
    google_service_account_file: Path | None = None
    google_api_base: str = GOOGLE_API_BASE
    google_push_audience: str = ""
    google_push_service_account: str = ""
    google_certs_url: str = GOOGLE_CERTS_URL

    # Sign-in through the platform's OpenID Connect provider (server.oidc); off without an issuer.
    oidc_issuer: str = ""
    jwks_url: str = ""  # else the issuer's discovery document names it
    oidc_audience: str = ""
    oidc_user_claim: str = "sub"
    oidc_name_claim: str = "name"
    oidc_role_claim: str = "role"  # absent from a token: viewer
    # The least time between two fetches of the keys for tokens naming an unknown kid.
    jwks_min_refresh_s: float = 30.0
    # HS256 tokens signed with jwt_secret; a platform that signs in only through its provider
    # switches them off.
    hs256_tokens: bool = True

    @property
    def apple_enabled(self) -> bool:
        return bool(self.apple_bundle_id and self.apple_root_certs)

    @property
    def stripe_enabled(self) -> bool:
        return bool(self.stripe_secret_key and self.stripe_webhook_secrets)

    @property
    def google_enabled(self) -> bool:
        return bool(
            self.google_package_name
            and self.google_service_account_file
            and self.google_push_audience
            and self.google_push_service_account
        )

    @property
    def clawback_window_ms(self) -> int:
        """How far back a refund or chargeback looks for the gifts to take back: the hold, and
        a day for diamonds whose hold ended but which no earnings read released yet."""
        return int(self.diamond_hold_s * 1000) + CLAWBACK_GRACE_MS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default ``os.environ``) and validate them together."""
        env = os.environ if env is None else env
        demo = _flag(env, "GIFTING_DEMO")
        settings = cls(
            host=env.get("GIFTING_HOST", cls.host),
            port=_int(env, "GIFTING_PORT", cls.port, 0, 65535),
            workers=_int(env, "GIFTING_WORKERS", cls.workers, 1, 1024),
            data_dir=Path(env.get("GIFTING_DATA_DIR") or cls.data_dir),
            redis_url=_engine_url(env),
            fsync=_choice(env, "GIFTING_FSYNC", cls.fsync, FSYNC_POLICIES),
            replica_acks=_int(env, "GIFTING_REPLICA_ACKS", cls.replica_acks, 0, 16),
            replica_timeout_ms=_int(env, "GIFTING_REPLICA_TIMEOUT_MS", cls.replica_timeout_ms, 1, 60_000),
            engine_timeout_ms=_int(env, "GIFTING_ENGINE_TIMEOUT_MS", cls.engine_timeout_ms, 100, 60_000),
            jwt_secret=env.get("GIFTING_JWT_SECRET", ""),
            webhook_secret=env.get("GIFTING_WEBHOOK_SECRET", ""),
            demo=demo,
            creator_share=_share(env),
            key_prefix=_key_prefix(env),
            outbox_sweep_s=_float(env, "GIFTING_OUTBOX_SWEEP_S", cls.outbox_sweep_s),
            order_ttl_s=_int(env, "GIFTING_ORDER_TTL_S", cls.order_ttl_s, 1, 30 * 86_400),
            max_pending_orders=_int(env, "GIFTING_MAX_PENDING_ORDERS", cls.max_pending_orders, 1, 10_000),
            gift_rate_per_s=_int(env, "GIFTING_GIFT_RATE", cls.gift_rate_per_s, 1, 1_000_000),
            gift_burst=_int(env, "GIFTING_GIFT_BURST", cls.gift_burst, 1, 1_000_000),
            chat_rate_per_s=_float(env, "GIFTING_CHAT_RATE_PER_S", cls.chat_rate_per_s),
            chat_burst=_int(env, "GIFTING_CHAT_BURST", cls.chat_burst, 1, 1_000_000),
            like_rate_per_s=_int(env, "GIFTING_LIKE_RATE", cls.like_rate_per_s, 1, 1_000),
            ip_rate_per_s=_rate(env, "GIFTING_IP_RATE", cls.ip_rate_per_s),
            ip_burst=_int(env, "GIFTING_IP_BURST", cls.ip_burst, 1, 1_000_000),
            max_connections_per_user=_int(
                env, "GIFTING_MAX_CONNECTIONS_PER_USER", cls.max_connections_per_user, 0, 1_000_000
            ),
            tick_ms=_int(env, "GIFTING_TICK_MS", cls.tick_ms, 5, 1_000),
            presence_interval_ms=_int(
                env, "GIFTING_PRESENCE_INTERVAL_MS", cls.presence_interval_ms, 0, 60_000
            ),
            combo_window_ms=_int(env, "GIFTING_COMBO_WINDOW_MS", cls.combo_window_ms, 100, 60_000),
            room_stream_len=_int(env, "GIFTING_ROOM_STREAM_LEN", cls.room_stream_len, 100, 10_000_000),
            ws_buffer_bytes=_int(env, "GIFTING_WS_BUFFER_BYTES", cls.ws_buffer_bytes, 4096, 64 << 20),
            ws_ping_s=_float(env, "GIFTING_WS_PING_S", cls.ws_ping_s),
            header_timeout_s=_float(env, "GIFTING_HEADER_TIMEOUT_S", cls.header_timeout_s),
            max_header_bytes=_int(env, "GIFTING_MAX_HEADER_BYTES", cls.max_header_bytes, 1024, 1 << 20),
            max_headers=_int(env, "GIFTING_MAX_HEADERS", cls.max_headers, 10, 10_000),
            keep_alive_s=_int(env, "GIFTING_KEEP_ALIVE_S", cls.keep_alive_s, 1, 3_600),
            listen_backlog=_int(env, "GIFTING_LISTEN_BACKLOG", cls.listen_backlog, 1, 1 << 20),
            reconnect_rate=_float(env, "GIFTING_RECONNECT_RATE", cls.reconnect_rate),
            presence_ttl_s=_float(env, "GIFTING_PRESENCE_TTL_S", cls.presence_ttl_s),
            connection_slot_ttl_s=_float(env, "GIFTING_CONNECTION_SLOT_TTL_S", cls.connection_slot_ttl_s),
            allowed_origins=_origins(env),
            diamond_hold_s=_float(env, "GIFTING_DIAMOND_HOLD_S", cls.diamond_hold_s),
            diamond_value_millicents=_int(
                env, "GIFTING_DIAMOND_VALUE_MILLICENTS", cls.diamond_value_millicents, 1, 1_000_000
            ),
            min_withdrawal_diamonds=_int(
                env, "GIFTING_MIN_WITHDRAWAL_DIAMONDS", cls.min_withdrawal_diamonds, 1, 10**12
            ),
            daily_payout_cap_minor=_int(
                env, "GIFTING_DAILY_PAYOUT_CAP_MINOR", cls.daily_payout_cap_minor, 1, 10**12
            ),
            moment_coins=_int(env, "GIFTING_MOMENT_COINS", cls.moment_coins, 1, 10**12),
            grand_moment_coins=_int(env, "GIFTING_GRAND_MOMENT_COINS", cls.grand_moment_coins, 1, 10**12),
            confirm_coins=_int(env, "GIFTING_CONFIRM_COINS", cls.confirm_coins, 1, 10**12),
            client_dir=_client_dir(env),
            log_format=_choice(env, "GIFTING_LOG_FORMAT", cls.log_format, LOG_FORMATS),
            metrics=_flag(env, "GIFTING_METRICS", default=True),
            socket_log=_flag(env, "GIFTING_SOCKET_LOG"),
            metrics_allow=_networks(env, "GIFTING_METRICS_ALLOW"),
            apple_bundle_id=env.get("GIFTING_APPLE_BUNDLE_ID", "").strip(),
            apple_app_id=_apple_app_id(env),
            apple_environment=_choice(
                env, "GIFTING_APPLE_ENVIRONMENT", cls.apple_environment, APPLE_ENVIRONMENTS
            ),
            apple_root_certs=_root_certs(env),
            stripe_secret_key=env.get("GIFTING_STRIPE_SECRET_KEY", "").strip(),
            stripe_publishable_key=env.get("GIFTING_STRIPE_PUBLISHABLE_KEY", "").strip(),
            stripe_webhook_secrets=_list(env, "GIFTING_STRIPE_WEBHOOK_SECRETS"),
            stripe_api_base=_url(env, "GIFTING_STRIPE_API_BASE", STRIPE_API_BASE).rstrip("/"),
            stripe_js_url=_url(env, "GIFTING_STRIPE_JS_URL", STRIPE_JS_URL),
            google_package_name=env.get("GIFTING_GOOGLE_PACKAGE_NAME", "").strip(),
            google_service_account_file=_path(env, "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE"),
            google_api_base=_url(env, "GIFTING_GOOGLE_API_BASE", GOOGLE_API_BASE),
            google_push_audience=env.get("GIFTING_GOOGLE_PUSH_AUDIENCE", "").strip(),
            google_push_service_account=env.get("GIFTING_GOOGLE_PUSH_SERVICE_ACCOUNT", "").strip(),
            google_certs_url=_url(env, "GIFTING_GOOGLE_CERTS_URL", GOOGLE_CERTS_URL),
            oidc_issuer=env.get("GIFTING_OIDC_ISSUER", "").strip(),
            jwks_url=env.get("GIFTING_JWKS_URL", "").strip(),
            oidc_audience=env.get("GIFTING_OIDC_AUDIENCE", "").strip(),
            oidc_user_claim=env.get("GIFTING_OIDC_USER_CLAIM", "").strip() or cls.oidc_user_claim,
            oidc_name_claim=env.get("GIFTING_OIDC_NAME_CLAIM", "").strip() or cls.oidc_name_claim,
            oidc_role_claim=env.get("GIFTING_OIDC_ROLE_CLAIM", "").strip() or cls.oidc_role_claim,
            jwks_min_refresh_s=_float(env, "GIFTING_JWKS_MIN_REFRESH_S", cls.jwks_min_refresh_s),
            hs256_tokens=_flag(env, "GIFTING_HS256_TOKENS", default=True),
        )
        _check_apple(settings, env)
        _check_stripe(settings)
        _check_google(settings, env)
        _check_oidc(settings)
        if settings.replica_acks and settings.redis_url is None:
            raise SettingsError(
                "GIFTING_REPLICA_ACKS needs GIFTING_REDIS_URL: the embedded engine has no replicas, "
                "so no money write could ever be confirmed"
            )
        if settings.grand_moment_coins < settings.moment_coins:
            raise SettingsError(
                f"GIFTING_GRAND_MOMENT_COINS ({settings.grand_moment_coins}) must be at least "
                f"GIFTING_MOMENT_COINS ({settings.moment_coins})"
            )
        if demo:
            # Demo mode runs out of the box: fixed, public secrets that are useless in production.
            settings = _replace_missing_secrets(settings)
        for name, value in (
            # Unset, with HS256 tokens off, no token is signed with it.
            (
                "GIFTING_JWT_SECRET",
                settings.jwt_secret if settings.hs256_tokens else settings.jwt_secret or None,
            ),
            # Unset, the signed webhook's provider is off (server/purchases.py); set, it must be a secret.
            ("GIFTING_WEBHOOK_SECRET", settings.webhook_secret or None),
        ):
            if value is None:
                continue
            # Demo mode mints tokens for anyone, so only the length is checked there.
            problem = secret_problem(value, demo=demo)
            if problem is not None:
                raise SettingsError(f"{name} {problem}; {SECRET_ADVICE}")
        return settings


def _check_oidc(settings: Settings) -> None:
    """OIDC is on with an issuer; its tokens are then checked for that issuer and an audience."""
    if settings.jwks_url and not settings.oidc_issuer:
        raise SettingsError("GIFTING_JWKS_URL needs GIFTING_OIDC_ISSUER: every token's iss is checked")
    if settings.oidc_issuer and not settings.oidc_audience:
        raise SettingsError(
            "GIFTING_OIDC_AUDIENCE must be set with GIFTING_OIDC_ISSUER: a token is accepted only "
            "if it was issued for this server (its aud)"
        )
    for name, url in (("GIFTING_OIDC_ISSUER", settings.oidc_issuer), ("GIFTING_JWKS_URL", settings.jwks_url)):
        if url and not url.startswith(("https://", "http://")):
            raise SettingsError(f"{name} must be an https:// URL, got {url[:80]!r}")
    if not settings.hs256_tokens and settings.demo:
        raise SettingsError(
            "GIFTING_HS256_TOKENS=0 would refuse the demo's own tokens (POST /v1/dev/token); "
            "unset GIFTING_DEMO or GIFTING_HS256_TOKENS"
        )
    if not settings.hs256_tokens and not settings.oidc_issuer:
        raise SettingsError(
            "GIFTING_HS256_TOKENS=0 needs GIFTING_OIDC_ISSUER: with neither, no token could sign in"
        )


DEMO_JWT_SECRET = "demo-jwt-secret-not-for-production"
DEMO_WEBHOOK_SECRET = "demo-webhook-secret-not-for-production"
# Secrets anyone can read: the demo ones, and deploy/.env.example's placeholders (any value
# still starting with its "replace-me").
PUBLIC_SECRETS = frozenset({DEMO_JWT_SECRET, DEMO_WEBHOOK_SECRET})
PLACEHOLDER_PREFIX = "replace-me"
# HS256 keys shorter than the hash output (32 bytes) are weak (RFC 7518 section 3.2).
MIN_SECRET_BYTES = 32
# The least a secret's estimated entropy may be (see estimated_entropy_bits): 32 random
# url-safe characters score about 125 to 160 bits, 64 about 300, a pattern far less.
MIN_SECRET_BITS = 120
SECRET_ADVICE = (
    "use at least 32 random bytes, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(48))' "
    "(or set GIFTING_DEMO=1 to run with demo secrets)"
)


def secret_problem(value: str, *, demo: bool = False) -> str | None:
    """Why ``value`` cannot sign tokens or webhooks, or None if it can.

    Outside demo mode a secret must also be private and unpredictable: the demo secrets and
    the example file's placeholders are public, and a blank or repetitive secret is guessed.
    """
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"must be set to a secret of at least {MIN_SECRET_BYTES} bytes"
    if demo:
        return None
    if not value.strip():
        return "is blank"
    if value in PUBLIC_SECRETS or value.startswith(PLACEHOLDER_PREFIX):
        return "is public (a demo secret or the example file's placeholder)"
    bits = estimated_entropy_bits(value)
    if bits < MIN_SECRET_BITS:
        return f"is too predictable (about {bits:.0f} bits of entropy, at least {MIN_SECRET_BITS} needed)"
    return None


def estimated_entropy_bits(value: str) -> float:
    """A conservative guess at the entropy of ``value`` in bits: the least of two estimates,
    the Shannon entropy of its shortest repeating unit's characters (a repeated character or
    pattern scores as one copy) and that of the steps between neighbouring characters (a run
    such as ``0123…`` or ``abcd…`` scores almost nothing). A random string scores close to its
    real entropy; a phrase is not seen as guessable, but a phrase is no secret either way."""
    unit = _repeating_unit(value)
    steps = [ord(b) - ord(a) for a, b in pairwise(value)]
    return min(_shannon_bits(unit), _shannon_bits(steps) + math.log2(len(set(value)) or 1))


def _repeating_unit(value: str) -> str:
    for period in range(1, len(value)):
        if value[period:] == value[:-period]:
            return value[:period]
    return value


def _shannon_bits(symbols: Sequence[object]) -> float:
    total = len(symbols)
    return -sum(count * math.log2(count / total) for count in Counter(symbols).values())


def _replace_missing_secrets(settings: Settings) -> Settings:
    return replace(
        settings,
        jwt_secret=settings.jwt_secret or DEMO_JWT_SECRET,
        webhook_secret=settings.webhook_secret or DEMO_WEBHOOK_SECRET,
    )


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "1" if default else "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("", "0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _number(env: Mapping[str, str], name: str) -> float | None:
    """The variable as a number, None if unset or empty."""
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name)
    if value is None:
        return default
    if not value > 0:
        raise SettingsError(f"{name} must be positive, got {env[name]!r}")
    return value


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    """A rate per second: a number from 0 (no limit) to 1,000,000."""
    value = _number(env, name)
    if value is None:
        return default
    if not 0 <= value <= 1_000_000:
        raise SettingsError(f"{name} must be between 0 (no limit) and 1000000, got {env[name]!r}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _share(env: Mapping[str, str]) -> Fraction:
    raw = env.get("GIFTING_CREATOR_SHARE") or "0.5"
    try:
        share = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        raise SettingsError(f"GIFTING_CREATOR_SHARE must be a decimal such as 0.5, got {raw!r}") from None
    if not 0 <= share <= 1 or share.denominator > 1_000_000:
        raise SettingsError(
            f"GIFTING_CREATOR_SHARE must be between 0 and 1 with at most 6 decimals, got {raw!r}"
        )
    return share


def _key_prefix(env: Mapping[str, str]) -> str:
    raw = env.get("GIFTING_KEY_PREFIX", Settings.key_prefix)
    if not _PREFIX_RE.match(raw):
        raise SettingsError(
            "GIFTING_KEY_PREFIX may hold only letters, digits and _ . : - (no braces), "
            f"at most 64 characters, got {raw!r}"
        )
    return raw


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in env.get(name, "").split(","):
        if part.strip():
            try:
                networks.append(ip_network(part.strip()))
            except ValueError as exc:
                raise SettingsError(
                    f"{name} must be a comma-separated list of addresses or networks such as "
                    f"10.0.0.0/8 or ::1, got {part.strip()!r} ({exc})"
                ) from None
    return tuple(networks)


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("GIFTING_ALLOWED_ORIGINS", "")
    origins = tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
    for origin in origins:
        if not re.match(r"^https?://[^/\s]+$", origin):
            raise SettingsError(
                "GIFTING_ALLOWED_ORIGINS must be a comma-separated list of origins such as "
                f"https://example.com, got {origin!r}"
            )
    return origins


def _apple_app_id(env: Mapping[str, str]) -> int | None:
    raw = env.get("GIFTING_APPLE_APP_ID", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) <= 0:
        raise SettingsError(f"GIFTING_APPLE_APP_ID must be the app's numeric Apple ID, got {raw!r}")
    return int(raw)


def _root_certs(env: Mapping[str, str]) -> tuple[Path, ...]:
    paths = tuple(
        Path(part.strip()) for part in env.get("GIFTING_APPLE_ROOT_CERTS", "").split(",") if part.strip()
    )
    for path in paths:
        if not path.is_file():
            raise SettingsError(f"GIFTING_APPLE_ROOT_CERTS: no certificate file at {str(path)!r}")
    return paths


def load_root(path: Path) -> bytes:
    """A root certificate's DER bytes, from a DER or PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    raw = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in raw:
            return x509.load_pem_x509_certificate(raw).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(raw).public_bytes(Encoding.DER)
    except ValueError as exc:
        raise SettingsError(f"GIFTING_APPLE_ROOT_CERTS: {str(path)!r} is not a certificate ({exc})") from None


def _check_apple(settings: Settings, env: Mapping[str, str]) -> None:
    """The App Store is configured in full or not at all, with certificates and products."""
    bundle, roots = bool(settings.apple_bundle_id), bool(settings.apple_root_certs)
    if bundle != roots:
        missing = "GIFTING_APPLE_ROOT_CERTS" if bundle else "GIFTING_APPLE_BUNDLE_ID"
        raise SettingsError(
            f"the App Store is half configured: {missing} is missing; set GIFTING_APPLE_BUNDLE_ID and "
            "GIFTING_APPLE_ROOT_CERTS (Apple's root certificates) together, or neither"
        )
    if not bundle:
        stray = [name for name in ("GIFTING_APPLE_APP_ID", "GIFTING_APPLE_ENVIRONMENT") if env.get(name)]
        if stray:
            raise SettingsError(
                f"{', '.join(stray)} set without GIFTING_APPLE_BUNDLE_ID and GIFTING_APPLE_ROOT_CERTS: "
                "the App Store is half configured"
            )
        return
    if settings.apple_environment == "Production" and settings.apple_app_id is None:
        raise SettingsError(
            "GIFTING_APPLE_APP_ID (the app's Apple ID, from App Store Connect) is required when "
            "GIFTING_APPLE_ENVIRONMENT is Production"
        )
    for path in settings.apple_root_certs:
        load_root(path)
    from server.domain.catalog import Catalog

    if settings.apple_bundle_id not in Catalog.load_default().apple:
        raise SettingsError(
            f"GIFTING_APPLE_BUNDLE_ID is {settings.apple_bundle_id!r}, but the catalog sells no App Store "
            'products for it (server/data/catalog.toml, [apple."<bundle id>"])'
        )


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", raw):
        raise SettingsError(f"{name} must be an http(s) URL such as {default}, got {raw!r}")
    return raw


STRIPE_ADVICE = (
    "Stripe needs GIFTING_STRIPE_SECRET_KEY (sk_... or rk_...), GIFTING_STRIPE_PUBLISHABLE_KEY (pk_...) "
    "and GIFTING_STRIPE_WEBHOOK_SECRETS (whsec_..., comma-separated) together, from one Stripe account "
    "and mode; leave all three unset to run without Stripe"
)


def _check_stripe(settings: Settings) -> None:
    """All of Stripe's settings or none: half a configuration would take payments it cannot
    credit (no webhook secret) or open orders no page can pay (no publishable key)."""
    secret, publishable = settings.stripe_secret_key, settings.stripe_publishable_key
    if not (secret or publishable or settings.stripe_webhook_secrets):
        return
    missing = [
        name
        for name, value in (
            ("GIFTING_STRIPE_SECRET_KEY", secret),
            ("GIFTING_STRIPE_PUBLISHABLE_KEY", publishable),
            ("GIFTING_STRIPE_WEBHOOK_SECRETS", settings.stripe_webhook_secrets),
        )
        if not value
    ]
    if missing:
        raise SettingsError(f"{' and '.join(missing)} unset: {STRIPE_ADVICE}")
    if not secret.startswith(("sk_", "rk_")):
        raise SettingsError(f"GIFTING_STRIPE_SECRET_KEY must start with sk_ or rk_; {STRIPE_ADVICE}")
    if not publishable.startswith("pk_"):
        raise SettingsError(f"GIFTING_STRIPE_PUBLISHABLE_KEY must start with pk_; {STRIPE_ADVICE}")
    for webhook_secret in settings.stripe_webhook_secrets:
        if not webhook_secret.startswith("whsec_") or len(webhook_secret) < 16:
            raise SettingsError(
                f"GIFTING_STRIPE_WEBHOOK_SECRETS must list the endpoints' signing secrets (whsec_...); "
                f"{STRIPE_ADVICE}"
            )
    if ("_live_" in secret) != ("_live_" in publishable):
        raise SettingsError(
            "GIFTING_STRIPE_SECRET_KEY and GIFTING_STRIPE_PUBLISHABLE_KEY are of different modes "
            "(one live, one test): pages would pay into another mode than the server checks"
        )


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    return Path(raw) if raw else None


GOOGLE_SETTINGS = (
    "GIFTING_GOOGLE_PACKAGE_NAME",
    "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE",
    "GIFTING_GOOGLE_PUSH_AUDIENCE",
    "GIFTING_GOOGLE_PUSH_SERVICE_ACCOUNT",
)


def _check_google(settings: Settings, env: Mapping[str, str]) -> None:
    """Google Play is configured in full or not at all: without the key file no purchase can
    be checked, without the push audience and account no notification can be."""
    values = (
        settings.google_package_name,
        settings.google_service_account_file,
        settings.google_push_audience,
        settings.google_push_service_account,
    )
    if not any(values):
        stray = [name for name in ("GIFTING_GOOGLE_API_BASE", "GIFTING_GOOGLE_CERTS_URL") if env.get(name)]
        if stray:
            raise SettingsError(
                f"{', '.join(stray)} set without {', '.join(GOOGLE_SETTINGS)}: Google Play is half configured"
            )
        return
    missing = [name for name, value in zip(GOOGLE_SETTINGS, values, strict=True) if not value]
    if missing:
        raise SettingsError(
            f"Google Play is half configured: {' and '.join(missing)} unset; set "
            f"{', '.join(GOOGLE_SETTINGS)} together, or none"
        )
    if "@" not in settings.google_push_service_account:
        raise SettingsError(
            "GIFTING_GOOGLE_PUSH_SERVICE_ACCOUNT must be the email of the service account the Pub/Sub "
            f"push subscription authenticates as, got {settings.google_push_service_account!r}"
        )
    path = settings.google_service_account_file
    assert path is not None
    if not path.is_file():
        raise SettingsError(f"GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE: no key file at {str(path)!r}")
    from google.oauth2 import service_account

    try:
        service_account.Credentials.from_service_account_file(str(path))  # type: ignore[no-untyped-call]
    except (ValueError, KeyError, OSError) as exc:
        raise SettingsError(
            f"GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE: {str(path)!r} is not a service account's JSON key "
            f"({type(exc).__name__}: {exc})"
        ) from None
    from server.domain.catalog import Catalog

    if settings.google_package_name not in Catalog.load_default().google:
        raise SettingsError(
            f"GIFTING_GOOGLE_PACKAGE_NAME is {settings.google_package_name!r}, but the catalog sells no "
            'Google Play products for it (server/data/catalog.toml, [google."<package name>"])'
        )


def _client_dir(env: Mapping[str, str]) -> Path | None:
    """Where the browser clients are: GIFTING_CLIENT_DIR, else ``client_demo/`` beside the
    package (a source checkout) or in the working directory (the container image)."""
    raw = env.get("GIFTING_CLIENT_DIR")
    if raw:
        path = Path(raw)
        if not (path / "index.html").is_file():
            raise SettingsError(f"GIFTING_CLIENT_DIR has no index.html: {raw!r}")
        return path
    for candidate in (Path(__file__).resolve().parent.parent / "client_demo", Path("client_demo")):
        if (candidate / "index.html").is_file():
            return candidate.resolve()
    return None


CLUSTER_SCHEME = "redis+cluster://"


def cluster_nodes(url: str) -> list[tuple[str, int]] | None:
    """The startup nodes named by a ``redis+cluster://host:port,...`` URL; None for any other
    URL; ``ValueError`` saying what is wrong with a malformed one."""
    if not url.startswith(CLUSTER_SCHEME):
        return None
    nodes = []
    for part in url[len(CLUSTER_SCHEME) :].rstrip("/").split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ValueError(f"{url!r}: each cluster node must be host:port, got {part!r}")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def _engine_url(env: Mapping[str, str]) -> str | None:
    url = env.get("GIFTING_REDIS_URL") or None
    if url is not None:
        try:
            cluster_nodes(url)
        except ValueError as exc:
            raise SettingsError(f"GIFTING_REDIS_URL: {exc}") from None
    return url
