"""The DICOMweb suite runs twice: against an index in SQLite (the default) and in PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ApertureServer, shared_server


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApertureServer]:
    database_url = None
    if request.param == "postgresql":
        cluster: Any = request.getfixturevalue("postgres")
        database_url = cluster.create_database("dicomweb")
    srv = shared_server(tmp_path_factory, database_url)
    yield srv
    srv.stop()
