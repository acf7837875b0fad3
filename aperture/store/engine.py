"""Engine setup for the index: SQLite (embedded default, WAL) or PostgreSQL, migrated at open.

SQLite is tuned for a server: WAL so reads never wait for a writer, `synchronous=FULL` so a
committed (acknowledged) STOW survives power loss, a busy timeout so concurrent writers queue
instead of failing, and case-sensitive LIKE so non-PN wildcard matching is exact as PS3.4 requires.
Statement parameters are hidden from SQLAlchemy's error messages: they are patient data (names,
IDs, dates), and those messages reach the log (a retried write, a 500's traceback).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, text

_MIGRATIONS = Path(__file__).with_name("migrations")


def open_engine(url: str) -> Engine:
    """Create the engine for `url` and bring its schema to the newest revision."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8, hide_parameters=True
        )

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
        engine = create_engine(url, pool_size=8, pool_pre_ping=True, hide_parameters=True)
    migrate(engine)
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the database's write lock from its first statement.

    Writers that read and then write (is this study stored yet?) must not interleave. SQLite: BEGIN
    IMMEDIATE takes the write lock up front, so a second writer waits (busy timeout) instead of
    reading stale state. PostgreSQL: a transaction-scoped advisory lock does the same.
    """
    if engine.dialect.name == "sqlite":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
    else:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY})
            yield conn


_WRITE_LOCK_KEY = 0x41505254  # "APRT"


def migrate(engine: Engine) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
