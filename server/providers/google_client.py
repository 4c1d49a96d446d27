"""Google Play: purchases checked with Google's Android Publisher API, and Google's real-time
developer notifications pushed by Pub/Sub.

A purchase the app submits is looked up with ``purchases.products.get`` (the service
account's OAuth token, from its JSON key file) and, once credited, consumed with
``purchases.products.consume`` so that the product can be bought again. Google's client
(``google-api-python-client``) builds the calls from the discovery document it ships (no
network); it is synchronous (httplib2), so each call runs off the event loop, on an HTTP
connection of its own (httplib2's are not thread-safe).

A notification arrives as a Pub/Sub push whose ``Authorization`` header carries an OIDC
token Google signed for the subscription's service account: ``google-auth`` verifies it
against Google's certificates (fetched from ``GIFTING_GOOGLE_CERTS_URL``, kept as long as
their ``Cache-Control`` says), its audience and expiry; the email must be the subscription's
account, verified.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import threading
import time
from typing import Any

import httplib2
import msgspec
from google.auth import exceptions as auth_exceptions
from google.auth import transport
from google.auth.transport import requests as auth_requests
from google.oauth2 import id_token, service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from server.domain.catalog import Catalog, Package
from server.errors import BadSignature, InvalidRequest, ProviderError
from server.providers.google import (
    MAX_QUANTITY,
    YET_TO_BE_CONSUMED,
    DeveloperNotification,
    Purchase,
)
from server.settings import Settings

SCOPE = "https://www.googleapis.com/auth/androidpublisher"
# What the server waits for Google's API, a call.
TIMEOUT_S = 15
# Google's issuer of the OIDC tokens Pub/Sub pushes with.
ISSUERS = ("https://accounts.google.com", "accounts.google.com")
CLOCK_SKEW_S = 10
# Google's certificates are kept as long as their Cache-Control says, at most this long.
MAX_CERTS_AGE_S = 6 * 3600
_ORDER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
_MAX_AGE = re.compile(r"max-age=(\d+)")


class GooglePlay:
    """Google Play as configured: the API client, the push token check and the catalog's
    products of the app's package."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        assert settings.google_service_account_file is not None
        self.package_name = settings.google_package_name
        self.catalog = catalog
        self._credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(settings.google_service_account_file), scopes=[SCOPE]
        )
        self._service = build(
            "androidpublisher",
            "v3",
            credentials=self._credentials,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": settings.google_api_base},
        )
        self._audience = settings.google_push_audience
        self._push_account = settings.google_push_service_account
        self._certs_url = settings.google_certs_url
        self._certs = CachingRequest()

    def package(self, purchase: Purchase) -> Package:
        """What ``purchase`` buys: its product's package, times its quantity."""
        package = self.catalog.google_product(self.package_name, purchase.product_id)
        return package.times(purchase.quantity)

    async def purchase(self, product_id: str, token: str) -> Purchase:
        """The purchase of ``product_id`` with ``token``, as Google's API reports it now."""
        self.catalog.google_product(self.package_name, product_id)  # refused before asking Google
        request = (
            self._service.purchases()
            .products()
            .get(packageName=self.package_name, productId=product_id, token=token)
        )
        try:
            body = await asyncio.to_thread(self._execute, request)
        except HttpError as exc:
            if exc.status_code in (400, 404, 410):
                raise InvalidRequest(
                    f"Google Play knows no purchase of {product_id!r} with this token: nothing credited",
                    code="unknown_purchase_token",
                ) from None
            raise _provider_error("the purchase could not be checked", exc) from None
        except _UNREACHABLE as exc:
            raise _provider_error("the purchase could not be checked", exc) from None
        return _purchase(body, product_id, token)

    async def consume(self, purchase: Purchase) -> bool:
        """Consume ``purchase`` so that its product can be bought again; False (logged) if
        Google did not take it, to be tried again on the next submission."""
        request = (
            self._service.purchases()
            .products()
            .consume(packageName=self.package_name, productId=purchase.product_id, token=purchase.token)
        )
        try:
            await asyncio.to_thread(self._execute, request)
        except (HttpError, *_UNREACHABLE) as exc:
            log.warning(
                "Google Play purchase %s (order %s) credited but not consumed (%s); "
                "consumed on its next submission",
                purchase.google_order_id or "?",
                purchase.order_id,
                _describe(exc),
            )
            return False
        return True

    def _execute(self, request: Any) -> Any:
        # A connection per call: httplib2's are not thread-safe; the credentials are shared
        # (their token refreshed when it expires).
        http = AuthorizedHttp(self._credentials, http=httplib2.Http(timeout=TIMEOUT_S))
        return request.execute(http=http)

    async def push(self, authorization: str | None) -> None:
        """Check a Pub/Sub push's ``Authorization`` header: a bearer token Google signed for
        this subscription's audience and service account."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BadSignature("the push carries no bearer token: nothing done")
        claims = await asyncio.to_thread(self._verify, token.strip())
        if claims.get("iss") not in ISSUERS:
            raise BadSignature("the push token was not issued by Google: nothing done")
        if claims.get("email") != self._push_account or claims.get("email_verified") is not True:
            raise BadSignature(
                "the push token is not the push subscription's service account's: nothing done"
            )

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            claims = id_token.verify_token(
                token,
                self._certs,
                audience=self._audience,
                certs_url=self._certs_url,
                clock_skew_in_seconds=CLOCK_SKEW_S,
            )
        except auth_exceptions.TransportError as exc:
            raise ProviderError(
                f"Google's certificates could not be fetched ({exc}); try again later"
            ) from None
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise BadSignature(f"the push token does not verify ({_describe(exc)}): nothing done") from None
        return dict(claims)

    def notification(self, data: str) -> DeveloperNotification:
        """The DeveloperNotification in a Pub/Sub message's ``data`` (base64 JSON)."""
        try:
            raw = base64.b64decode(data, validate=True)
            note = msgspec.json.decode(raw, type=DeveloperNotification)
        except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
            raise InvalidRequest(
                f"the message's data is not a Google Play developer notification: {_describe(exc)}"
            ) from None
        voided = note.voidedPurchaseNotification
        if voided is not None and voided.orderId and not _ORDER_ID.match(voided.orderId):
            raise InvalidRequest(f"the voided purchase's orderId is malformed: {voided.orderId[:80]!r}")
        return note

    async def close(self) -> None:
        await asyncio.to_thread(self._certs.close)
        self._service.close()


class CachingRequest(transport.Request):
    """google-auth's requests transport, keeping each successful GET (Google's certificates)
    as long as its ``Cache-Control: max-age`` says."""

    def __init__(self) -> None:
        self._inner = auth_requests.Request()
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, transport.Response]] = {}

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> transport.Response:
        if method == "GET":
            with self._lock:
                kept = self._kept.get(url)
            if kept is not None and kept[0] > time.monotonic():
                return kept[1]
        response: transport.Response = self._inner(url, method, body, headers, timeout or TIMEOUT_S, **kwargs)
        if method == "GET" and response.status == 200:
            found = _MAX_AGE.search(response.headers.get("cache-control", ""))
            if found:
                age = min(int(found.group(1)), MAX_CERTS_AGE_S)
                with self._lock:
                    self._kept[url] = (time.monotonic() + age, response)
        return response

    def close(self) -> None:
        self._inner.session.close()


log = logging.getLogger(__name__)
_UNREACHABLE: tuple[type[Exception], ...] = (
    httplib2.HttpLib2Error,
    OSError,
    auth_exceptions.TransportError,
    auth_exceptions.RefreshError,
)


def _purchase(body: Any, product_id: str, token: str) -> Purchase:
    if not isinstance(body, dict):
        raise ProviderError("Google's API answered with no purchase; try again later")
    google_order_id = str(body.get("orderId") or "")
    if google_order_id and not _ORDER_ID.match(google_order_id):
        raise ProviderError(f"Google's API answered with a malformed orderId {google_order_id[:80]!r}")
    quantity = body.get("quantity")
    quantity = 1 if quantity is None else quantity
    if not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidRequest(
            f"the purchase's quantity must be 1 to {MAX_QUANTITY}, got {quantity!r}: nothing credited"
        )
    state = body.get("purchaseState")
    if not isinstance(state, int):
        raise ProviderError("Google's API answered with no purchaseState; try again later")
    return Purchase(
        token=token,
        product_id=product_id,
        google_order_id=google_order_id,
        state=state,
        consumed=body.get("consumptionState", YET_TO_BE_CONSUMED) != YET_TO_BE_CONSUMED,
        quantity=quantity,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HttpError):
        return f"HTTP {exc.status_code}: {exc.reason}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _provider_error(what: str, exc: BaseException) -> ProviderError:
    if isinstance(exc, HttpError) and exc.status_code in (401, 403):
        # The service account cannot call the API for this app: configuration, not an outage.
        log.error(
            "Google Play: %s (%s): check the service account's access to the app in the Play Console",
            what,
            _describe(exc),
        )
    else:
        log.warning("Google Play: %s (%s)", what, _describe(exc))
    return ProviderError(f"{what}: Google Play failed or could not be reached; try again later")
