"""A real-time gifting server for live streams: coin wallets, gifts and creator earnings."""

from __future__ import annotations

__version__ = "0.1.0"
