"""The index engine: what its errors say, since they reach the log."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from aperture.store.engine import open_engine


def test_sql_errors_do_not_quote_the_values_bound(tmp_path: Path) -> None:
    """A failing write's message (logged when retried, or in a 500's traceback) holds no patient data."""
    engine = open_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    try:
        with pytest.raises(SQLAlchemyError) as raised, engine.begin() as conn:
            conn.execute(text("INSERT INTO no_such_table (name) VALUES (:name)"), {"name": "Doe^Janet-private"})
    finally:
        engine.dispose()
    assert "Doe^Janet-private" not in str(raised.value)
    assert "hidden" in str(raised.value)  # SQLAlchemy says the parameters were left out
