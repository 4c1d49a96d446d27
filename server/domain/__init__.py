"""Pure rules of the product: no asyncio, no Redis. Feed inputs, check outputs."""
