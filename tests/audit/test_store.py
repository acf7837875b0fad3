"""Migration 0006: the audit table and its search indexes, created at open and removed by a downgrade."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect

from aperture.store.engine import open_engine

_MIGRATIONS = Path(__file__).parents[2] / "aperture" / "store" / "migrations"


def test_0006_creates_the_audit_table_with_its_search_indexes_and_downgrades(database_url: str) -> None:
    engine = open_engine(database_url)
    try:
        found = inspect(engine)
        assert {"pk", "recorded", "patient", "client_id", "outcome", "document"} <= {
            c["name"] for c in found.get_columns("audit_events")
        }
        indexes = {i["name"]: i["column_names"] for i in found.get_indexes("audit_events")}
        assert indexes == {
            "ix_audit_events_recorded": ["recorded"],
            "ix_audit_events_patient": ["patient", "recorded"],
            "ix_audit_events_client": ["client_id", "recorded"],
        }
        with engine.begin() as conn:
            alembic = AlembicConfig()
            alembic.set_main_option("script_location", str(_MIGRATIONS))
            alembic.attributes["connection"] = conn
            command.downgrade(alembic, "0005")
        assert "audit_events" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
