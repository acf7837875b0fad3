"""Index migrations applied to data an older version stored: 0005 (F.2.5 null values), 0008 (sha256).

Instances stored before 0005 keep the DICOM JSON their version computed, with "" for empty values
and empty PN component groups. The test stores real instances, turns their stored JSON back into
what the older version wrote, steps the index back to 0004, and starts the server again: the
upgrade at start must rewrite exactly the affected documents, and the answers must then be the
ones a fresh ingest gives.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import Connection, create_engine, text

from tests.conftest import database_config, start_server
from tests.helpers import make_instance, stow

B = "\\"
_MIGRATIONS = Path(__file__).parents[2] / "aperture" / "store" / "migrations"
_COLUMNS = {"instances": ("metadata", "attrs"), "series": ("attrs",), "studies": ("attrs", "qido")}


def _as_stored_before_0005(document: Any) -> Any:
    """What the pydicom conversion wrote before 0005: "" for an empty value, "" for empty PN groups."""
    if isinstance(document, list):
        return [_as_stored_before_0005(v) for v in document]
    if not isinstance(document, dict):
        return document
    if "vr" in document and isinstance(document.get("Value"), list):
        if document["vr"] == "SQ":
            return {**document, "Value": [_as_stored_before_0005(item) for item in document["Value"]]}
        if document["vr"] == "PN":
            names = [{"Alphabetic": ""} if v is None else {"Alphabetic": "", **v} for v in document["Value"]]
            return {**document, "Value": names}
        return {**document, "Value": ["" if v is None else v for v in document["Value"]]}
    return {key: _as_stored_before_0005(value) for key, value in document.items()}


def _answer(http: httpx.Client, path: str, base: str) -> Any:
    """A JSON answer, its URLs without the server's address (the port changes between starts)."""
    response = http.get(path)
    assert response.status_code == 200, response.text
    return json.loads(response.text.replace(base, "BASE"))


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _downgrade(conn: Connection, revision: str) -> None:
    """Step the index on `conn` back to `revision`, as an older version left it."""
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", str(_MIGRATIONS))
    alembic.attributes["connection"] = conn
    command.downgrade(alembic, revision)


def _documents(url: str) -> dict[tuple[str, int, str], bytes | None]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                (table, row[0], column): None if value is None else bytes(value)
                for table, columns in _COLUMNS.items()
                for row in conn.execute(text(f"SELECT pk, {', '.join(columns)} FROM {table}"))
                for column, value in zip(columns, row[1:], strict=True)
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0005_rewrites_empty_strings_of_older_versions_as_nulls(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    config = database_config(request, backend, f"migrate_{generate_uid()[-12:].replace('.', '')}")
    data = tmp_path / "data"
    study, series = generate_uid(), generate_uid()
    extra = {
        "SpecificCharacterSet": B + "ISO 2022 IR 149",
        "ImageType": ["", "ORIGINAL", ""],
        "NameOfPhysiciansReadingStudy": ["Doe^John", ""],
        "OtherPatientIDs": ["A", "", "B"],
    }
    affected = make_instance(study=study, series=series, extra=extra)
    untouched_study = generate_uid()
    untouched = make_instance(study=untouched_study, patient_id="PAT-2")
    server = start_server(data, config=config)
    try:
        with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
            assert stow(http, [affected, untouched]).status_code == 200
            expected_metadata = _answer(http, f"/studies/{study}/metadata", server.url)
            expected_study = _answer(http, f"/studies?StudyInstanceUID={study}", server.url)
    finally:
        server.stop()
    url = next((line.split('"')[1] for line in config.splitlines() if "database_url" in line), "")
    url = url or f"sqlite:///{data / 'index.sqlite3'}"

    fresh = _documents(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:  # the documents as the older version stored them
            for (table, pk, column), raw in fresh.items():
                if raw is not None:
                    old = _dumps(_as_stored_before_0005(json.loads(raw)))
                    conn.execute(text(f"UPDATE {table} SET {column} = :v WHERE pk = :pk"), {"v": old, "pk": pk})
            _downgrade(conn, "0004")
    finally:
        engine.dispose()
    aged = _documents(url)
    assert any(b'""' in raw for raw in aged.values() if raw), "the older version's form was not set up"

    server = start_server(data, config=config)  # migrates at start
    try:
        with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
            assert _answer(http, f"/studies/{study}/metadata", server.url) == expected_metadata
            assert _answer(http, f"/studies?StudyInstanceUID={study}", server.url) == expected_study
            (metadata,) = expected_metadata
            assert metadata["00080005"]["Value"] == [None, "ISO 2022 IR 149"]
            assert metadata["00081060"]["Value"] == [{"Alphabetic": "Doe^John"}, None]
    finally:
        server.stop()
    migrated = _documents(url)
    assert migrated == fresh  # exactly what a fresh ingest stores, every document
    rewritten = {key for key in aged if aged[key] != migrated[key]}
    assert rewritten == {key for key in aged if aged[key] and b'""' in aged[key]}  # only the affected ones


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0008_takes_the_sha256_that_rows_stored_by_0_1_hold_as_their_digest(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """0.1 fingerprinted each file with SHA-256; the upgrade records it as the file's sha256, and Repr-Digest
    serves it. A row fingerprinted with XXH3 stays NULL (its digest is then computed on the request)."""
    name = f"migrate_{generate_uid()[-12:].replace('.', '')}"
    # no background pass: nothing records a sha256 on its own
    config = database_config(request, backend, name, store="htj2k_copies = false\n")
    data = tmp_path / "data"
    study = generate_uid()
    old, new = make_instance(study=study), make_instance(study=study)
    server = start_server(data, config=config)
    try:
        with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
            assert stow(http, [old, new]).status_code == 200
    finally:
        server.stop()
    url = next((line.split('"')[1] for line in config.splitlines() if "database_url" in line), "")
    url = url or f"sqlite:///{data / 'index.sqlite3'}"
    sop_old = str(dcmread(io.BytesIO(old)).SOPInstanceUID)
    as_0_1 = hashlib.sha256(old).hexdigest()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE instances SET digest = :d WHERE sop_uid = :s"), {"d": as_0_1, "s": sop_old})
            _downgrade(conn, "0007")
    finally:
        engine.dispose()

    server = start_server(data, config=config)  # migrates at start
    try:
        with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
            for data_set in (old, new):
                sop = str(dcmread(io.BytesIO(data_set)).SOPInstanceUID)
                answer = http.get(f"/studies/{study}/series/{dcmread(io.BytesIO(data_set)).SeriesInstanceUID}"
                                  f"/instances/{sop}", headers={"Accept": "application/dicom; transfer-syntax=*",
                                                                "Want-Repr-Digest": "sha-256=10"})  # fmt: skip
                assert answer.status_code == 200 and answer.content == data_set
                expected = base64.b64encode(hashlib.sha256(data_set).digest()).decode()
                assert answer.headers["repr-digest"] == f"sha-256=:{expected}:"
    finally:
        server.stop()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            recorded = dict(conn.execute(text("SELECT sop_uid, sha256 FROM instances")).all())
    finally:
        engine.dispose()
    sop_new = str(dcmread(io.BytesIO(new)).SOPInstanceUID)
    assert recorded == {sop_old: as_0_1, sop_new: None}
