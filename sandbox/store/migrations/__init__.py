"""Alembic revisions of the bashfleet schema, run by ``sandbox.store.db.migrate``."""
