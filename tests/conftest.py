"""Shared fixtures.  Real services (SFTP, S3, SMTP) live in tests/services.py."""

pytest_plugins = ["services"]
