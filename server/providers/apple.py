"""The App Store's side of the books: its names, and the transactions and notifications it
signs once verified. The verifier, which needs Apple's library, is
``server.providers.apple_client``, imported only when the server is configured for the App
Store (``server.providers.app_store``).
"""

from __future__ import annotations

from dataclasses import dataclass

PROVIDER = "apple"
# What sets it up (server.settings).
SETTINGS = ("GIFTING_APPLE_BUNDLE_ID", "GIFTING_APPLE_ROOT_CERTS")
# StoreKit sells a consumable in a quantity of 1 to 10.
MAX_QUANTITY = 10


@dataclass(frozen=True)
class Transaction:
    """A verified App Store transaction of this app, in this environment."""

    transaction_id: str
    product_id: str
    product_type: str
    quantity: int
    revoked: bool

    @property
    def order_id(self) -> str:
        """The order of this transaction: the same for every submission of it."""
        return f"apple_{self.transaction_id}"

    @property
    def payment_id(self) -> str:
        return f"apple-{self.transaction_id}"


@dataclass(frozen=True)
class Notification:
    """A verified App Store Server Notification (V2); ``transaction`` verified too, if any."""

    notification_id: str
    notification_type: str
    transaction: Transaction | None
