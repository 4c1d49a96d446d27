"""Stripe's names. Its client, which needs Stripe's library, is
``server.providers.stripe_client``, imported only when the server is configured for Stripe
(``server.providers.stripe_checkout``).
"""

from __future__ import annotations

PROVIDER = "stripe"
# What sets it up (server.settings).
SETTINGS = ("GIFTING_STRIPE_SECRET_KEY", "GIFTING_STRIPE_PUBLISHABLE_KEY", "GIFTING_STRIPE_WEBHOOK_SECRETS")
HEADER = "Stripe-Signature"
