"""Loopback-only real services as pytest fixtures (filled in by the storage work)."""
