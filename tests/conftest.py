"""Shared fixtures: `portal` (a real `bashfleet serve` process) lives in tests/portal.py."""

from tests.portal import portal

__all__ = ["portal"]
