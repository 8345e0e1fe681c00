"""Tern's local OpenAI-compatible endpoint: protocol, server, queue and answers (no Qt)."""

DEFAULT_PORT = 8741  # where the endpoint listens unless the user chooses another port
