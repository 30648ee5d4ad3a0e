"""A fake Cal.com API v2 for tests, `simulate` and benchmarks (never imported by the service itself)."""

from service.testing.fakecalcom.app import FakeCalcom, main

__all__ = ["FakeCalcom", "main"]
