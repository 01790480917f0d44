"""Alembic revision scripts (a package so that an installed bashfleet ships them)."""
