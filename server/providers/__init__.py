"""Payment providers: each verifies what its platform signed and feeds ``server.purchases``.

Each provider has two modules: ``<provider>`` names it and holds its data (what a route
reads and answers), and ``<provider>_client`` talks to it through its SDK. A client module
is imported only by the function below that builds it, when the server is configured for
that provider: loading the three SDKs took about a fifth of every server's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.domain.catalog import Catalog
from server.settings import Settings

if TYPE_CHECKING:
    from server.providers.apple_client import AppleStore
    from server.providers.google_client import GooglePlay
    from server.providers.stripe_client import StripeCheckout


def app_store(settings: Settings, catalog: Catalog) -> AppleStore | None:
    """The App Store's verifier, if this server is configured for it."""
    if not settings.apple_enabled:
        return None
    from server.providers.apple_client import AppleStore

    return AppleStore(settings, catalog)


def google_play(settings: Settings, catalog: Catalog) -> GooglePlay | None:
    """Google Play's client, if this server is configured for it."""
    if not settings.google_enabled:
        return None
    from server.providers.google_client import GooglePlay

    return GooglePlay(settings, catalog)


def stripe_checkout(settings: Settings) -> StripeCheckout | None:
    """Stripe's checkout, if this server is configured for it."""
    if not settings.stripe_enabled:
        return None
    from server.providers.stripe_client import StripeCheckout

    return StripeCheckout(settings)
