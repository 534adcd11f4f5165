"""Alembic migrations of the history database (see brain.history.migrate)."""
