"""An index database for audit tests, on SQLite or PostgreSQL (both engines the index runs on)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from aperture.store.engine import open_engine

SERVER = "https://imaging.example.org/dicomweb"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres").create_database(f"audit_{uuid.uuid4().hex[:12]}"))
    return f"sqlite:///{tmp_path / 'index.sqlite3'}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_engine(database_url)
    yield engine
    engine.dispose()
