"""Shared fixtures: `portal` and `any_portal` (a real `bashfleet serve` process, the
latter on SQLite and on PostgreSQL) live in tests/portal.py; `pg_url` in tests/pg.py."""

from tests.pg import pg_server, pg_url
from tests.portal import any_portal, portal

__all__ = ["any_portal", "pg_server", "pg_url", "portal"]
