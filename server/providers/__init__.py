"""Chat providers: the provider-neutral interface (base) and its implementations."""
