"""The domain: engine, chat, models. Imports no Qt, so tests and tools can use it alone."""
