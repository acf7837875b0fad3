"""The index in-process: bounded scans for keys it cannot answer in SQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.auth.policy import allow_everything
from aperture.dicom.attributes import Level
from aperture.dicom.query import Query, parse_query
from aperture.errors import InvalidQuery
from aperture.store import index as index_module
from aperture.store.blobs import BlobStore
from aperture.store.engine import open_engine
from aperture.store.index import Index, is_point_lookup
from aperture.store.ingest import Ingest, Upload, prepare_upload
from tests.helpers import make_instance


@pytest.fixture
def index(tmp_path: Path) -> Index:
    blobs = BlobStore(tmp_path)
    engine = open_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    batch = []
    for n in range(5):
        temp, handle = blobs.new_temp()
        with handle:
            handle.write(make_instance(patient_id=f"SCAN-{n}", extra={"BodyPartExamined": "CHEST" if n else "HEAD"}))
        upload = prepare_upload(temp)
        assert isinstance(upload, Upload)
        batch.append((temp, upload))
    Ingest(engine, blobs, "reject").ingest(batch, allow_everything())
    return Index(engine)


def test_keys_outside_the_index_are_matched_on_stored_json(index: Index) -> None:
    query = parse_query([("BodyPartExamined", "HEAD")], Level.STUDY, default_limit=100, max_limit=100)
    assert len(index.search(query, allow_everything()).documents) == 1


def test_a_scan_past_the_bound_is_refused_with_advice(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "MAX_SCAN", 3)
    index_module._search_statement.cache_clear()
    query = parse_query([("BodyPartExamined", "HEAD")], Level.STUDY, default_limit=100, max_limit=100)
    with pytest.raises(InvalidQuery, match="BodyPartExamined"):
        index.search(query, allow_everything())
    narrowed = parse_query(
        [("BodyPartExamined", "HEAD"), ("PatientID", "SCAN-0")], Level.STUDY, default_limit=100, max_limit=100
    )
    assert len(index.search(narrowed, allow_everything()).documents) == 1


def test_only_study_lookups_by_patient_study_or_accession_count_as_point_lookups() -> None:
    """Point lookups run on the event loop, so nothing whose cost grows with the data may qualify."""

    def query(level: Level, *pairs: tuple[str, str]) -> Query:
        return parse_query(list(pairs), level, default_limit=1000, max_limit=10000)

    assert is_point_lookup(query(Level.STUDY, ("PatientID", "PAT01")))
    assert is_point_lookup(query(Level.STUDY, ("AccessionNumber", "A1"), ("StudyDate", "20200101-")))
    assert is_point_lookup(query(Level.STUDY, ("StudyInstanceUID", "1.2.3")))
    assert not is_point_lookup(query(Level.STUDY, ("PatientID", "PAT*")))  # a wildcard scans
    assert not is_point_lookup(query(Level.STUDY, ("StudyDate", "20200101-")))
    assert not is_point_lookup(query(Level.STUDY))
    assert not is_point_lookup(query(Level.STUDY, ("PatientID", "PAT01"), ("limit", "5000")))
    assert not is_point_lookup(query(Level.STUDY, ("PatientID", "PAT01"), ("includefield", "all")))
    assert not is_point_lookup(query(Level.STUDY, ("PatientID", "PAT01"), ("00081032.00080100", "X")))
    assert not is_point_lookup(query(Level.SERIES, ("PatientID", "PAT01")))
    assert not is_point_lookup(query(Level.INSTANCE, ("StudyInstanceUID", "1.2.3")))
    assert not is_point_lookup(query(Level.STUDY, ("PatientID", "PAT01")), study_uid="1.2.3")


def test_only_an_embedded_index_offers_to_answer_on_the_event_loop(tmp_path: Path, postgres) -> None:  # type: ignore[no-untyped-def]
    """A PostgreSQL round trip must never block the event loop; an SQLite lookup may."""
    assert Index(open_engine(f"sqlite:///{tmp_path / 'inline.sqlite3'}")).answers_inline
    assert not Index(open_engine(postgres.create_database("inline_lookups"))).answers_inline
