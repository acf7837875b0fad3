"""Alembic revisions for the index; run at startup by `aperture.store.engine.open_engine`."""
