"""Real loopback servers that tests talk to over HTTP (not mocks of the HTTP client)."""
