"""Payment providers: each verifies what its platform signed and feeds ``server.purchases``."""
