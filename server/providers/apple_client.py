"""The App Store: what Apple signed, verified with Apple's own library.

``SignedDataVerifier`` (app-store-server-library) checks a JWS's x5c chain up to the
configured root certificates (the leaf must carry Apple's OID 1.2.840.113635.100.6.11.1,
the intermediate 1.2.840.113635.100.6.2.1), at the date the data was signed (its
``signedDate``), then the ES256 signature, the bundle id, the environment and, in
Production, the app's Apple id. Its online checks (OCSP, which also makes it check the
chain at the current time) are off: the server makes no call to Apple. The verification is
synchronous and takes a few milliseconds, so it runs off the event loop.

Only Production and Sandbox are accepted (``settings.APPLE_ENVIRONMENTS``): the library
skips the signature altogether for its Xcode and LocalTesting environments.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TypeVar

from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.JWSTransactionDecodedPayload import JWSTransactionDecodedPayload
from appstoreserverlibrary.models.Type import Type
from appstoreserverlibrary.signed_data_verifier import (
    SignedDataVerifier,
    VerificationException,
    VerificationStatus,
)

from server.domain.catalog import Catalog, Package
from server.errors import BadSignature, InvalidRequest
from server.providers.apple import MAX_QUANTITY, Notification, Transaction
from server.settings import Settings, load_root

_TRANSACTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,58}\Z")
_NOTIFICATION_ID = re.compile(r"^[A-Za-z0-9-]{1,64}\Z")
T = TypeVar("T")


class AppleStore:
    """The App Store as configured: its verifier and the catalog's products of its bundle."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.bundle_id = settings.apple_bundle_id
        self.catalog = catalog
        self._verifier = SignedDataVerifier(
            [load_root(path) for path in settings.apple_root_certs],
            False,  # no OCSP: the server calls nobody (docs: Going to production)
            Environment(settings.apple_environment),
            self.bundle_id,
            settings.apple_app_id,
        )

    def package(self, transaction: Transaction) -> Package:
        """What ``transaction`` buys: its product's package, times its quantity."""
        package = self.catalog.apple_product(self.bundle_id, transaction.product_id)
        if transaction.product_type != Type.CONSUMABLE.value:
            raise InvalidRequest(
                f"App Store product {transaction.product_id!r} is a {transaction.product_type or 'product'} "
                "transaction; only consumable coin products are sold",
                code="unknown_product",
            )
        return package.times(transaction.quantity)

    async def transaction(self, signed: str) -> Transaction:
        """The transaction ``signed`` (a JWS from the device) holds, once verified."""
        payload = await asyncio.to_thread(
            _verified, self._verifier.verify_and_decode_signed_transaction, signed
        )
        return _transaction(payload)

    async def notification(self, signed: str) -> Notification:
        """The notification ``signed`` (the body's ``signedPayload``) holds, once verified,
        with the transaction inside it, verified as well."""
        payload = await asyncio.to_thread(_verified, self._verifier.verify_and_decode_notification, signed)
        notification_id = payload.notificationUUID or ""
        if not _NOTIFICATION_ID.match(notification_id):
            raise InvalidRequest(
                f"the notification's notificationUUID is malformed: {notification_id[:80]!r}"
            )
        kind = payload.rawNotificationType or ""
        transaction = None
        if payload.data is not None and payload.data.signedTransactionInfo:
            transaction = await self.transaction(payload.data.signedTransactionInfo)
        return Notification(notification_id, kind, transaction)


def _verified(verify: Callable[[str], T], signed: str) -> T:
    try:
        return verify(signed)
    except VerificationException as exc:
        if exc.status == VerificationStatus.INVALID_APP_IDENTIFIER:
            raise InvalidRequest(
                "the signed data is for another app: nothing credited", code="wrong_app"
            ) from None
        if exc.status == VerificationStatus.INVALID_ENVIRONMENT:
            raise InvalidRequest(
                "the signed data is from another App Store environment: nothing credited",
                code="wrong_environment",
            ) from None
        raise BadSignature(
            f"the App Store signature does not verify ({exc.status.name.lower()}): nothing credited"
        ) from None
    except Exception as exc:  # what a verified payload of the wrong shape raises while decoded
        raise InvalidRequest(
            f"the signed data is not what the App Store sends: {type(exc).__name__}"
        ) from None


def _transaction(payload: JWSTransactionDecodedPayload) -> Transaction:
    transaction_id = payload.transactionId or ""
    if not _TRANSACTION_ID.match(transaction_id):
        raise InvalidRequest(f"the transaction's transactionId is malformed: {transaction_id[:80]!r}")
    quantity = payload.quantity if payload.quantity is not None else 1
    if not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidRequest(f"the transaction's quantity must be 1 to {MAX_QUANTITY}, got {quantity}")
    return Transaction(
        transaction_id=transaction_id,
        product_id=payload.productId or "",
        product_type=payload.rawType or "",
        quantity=quantity,
        revoked=payload.revocationDate is not None,
    )
