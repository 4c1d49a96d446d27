"""Payment providers: each verifies what its platform says and feeds server/purchases.py."""
