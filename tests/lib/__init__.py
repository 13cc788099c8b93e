"""Helpers shared by the Python integration tests (stdlib only)."""
