"""Engine setup for the index: SQLite (embedded default, WAL) or PostgreSQL, migrated at open.

SQLite is tuned for a server: WAL so reads never wait for a writer, `synchronous=FULL` so a
committed (acknowledged) STOW survives power loss, a busy timeout so concurrent writers queue
instead of failing, and case-sensitive LIKE so non-PN wildcard matching is exact as PS3.4 requires.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event

_MIGRATIONS = Path(__file__).with_name("migrations")


def open_engine(url: str) -> Engine:
    """Create the engine for `url` and bring its schema to the newest revision."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA case_sensitive_like=ON")
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.close()

    else:
        engine = create_engine(url, pool_size=8, pool_pre_ping=True)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
