"""Google Play's side of the books: its names, the purchases and notifications it sends, and
the orders and payments they become. Google's client, which needs its SDK, is
``server.providers.google_client``, imported only when the server is configured for Google
Play (``server.providers.google_play``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

PROVIDER = "google"
# What sets it up (server.settings).
SETTINGS = (
    "GIFTING_GOOGLE_PACKAGE_NAME",
    "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE",
    "GIFTING_GOOGLE_PUSH_AUDIENCE",
    "GIFTING_GOOGLE_PUSH_SERVICE_ACCOUNT",
)
# ProductPurchase.purchaseState
PURCHASED, CANCELED, PENDING = 0, 1, 2
# ProductPurchase.consumptionState
YET_TO_BE_CONSUMED = 0
# OneTimeProductNotification.notificationType
ONE_TIME_PRODUCT_PURCHASED, ONE_TIME_PRODUCT_CANCELED = 1, 2
# VoidedPurchaseNotification.refundType: the whole purchase, or some of its quantity.
FULL_REFUND, QUANTITY_BASED_PARTIAL_REFUND = 1, 2
# VoidedPurchaseNotification.productType
PRODUCT_TYPE_ONE_TIME = 2
# A purchase of several of one product buys that many packages.
MAX_QUANTITY = 100


def order_id_of(purchase_token: str) -> str:
    """The order of a purchase token: the same for every submission and notification of it.
    (Tokens are long and of any length; their hash fits an id.)"""
    return "google_" + hashlib.sha256(purchase_token.encode()).hexdigest()[:48]


def payment_id_of(google_order_id: str, purchase_token: str) -> str:
    """The payment id of a purchase: Google's orderId; a token's hash where Google gives none."""
    if google_order_id:
        return f"google-{google_order_id}"
    return "google-" + hashlib.sha256(purchase_token.encode()).hexdigest()[:48]


@dataclass(frozen=True)
class Purchase:
    """A one-time product purchase as Google's API reports it (ProductPurchase)."""

    token: str
    product_id: str
    google_order_id: str
    state: int
    consumed: bool
    quantity: int

    @property
    def order_id(self) -> str:
        return order_id_of(self.token)

    @property
    def payment_id(self) -> str:
        return payment_id_of(self.google_order_id, self.token)


class VoidedPurchase(msgspec.Struct, frozen=True):
    purchaseToken: str
    orderId: str = ""
    productType: int = PRODUCT_TYPE_ONE_TIME
    refundType: int = FULL_REFUND


class OneTimeProductNotification(msgspec.Struct, frozen=True):
    notificationType: int
    purchaseToken: str = ""
    sku: str = ""


class DeveloperNotification(msgspec.Struct, frozen=True):
    """Google Play's DeveloperNotification, the JSON in a Pub/Sub message's ``data``; Google
    may add fields, which are ignored."""

    packageName: str
    version: str = ""
    eventTimeMillis: str = ""
    oneTimeProductNotification: OneTimeProductNotification | None = None
    voidedPurchaseNotification: VoidedPurchase | None = None
    subscriptionNotification: dict[str, Any] | None = None
    testNotification: dict[str, Any] | None = None
