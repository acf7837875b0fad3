"""Every store read and write obeys a restricted AccessScope (`aperture.auth.policy.restricted`).

The SMART policy will only decide *which* patients and studies a request reaches; these tests hold
the store to filtering by that decision in SQL on every read the index offers, on both engines,
with the cases that leak in a naive server: the same MRN value under another issuer, a withheld
study of a permitted patient, an empty grant.
"""

from __future__ import annotations

import ast
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from aperture.auth.policy import allow_everything, restricted
from aperture.dicom.attributes import Level
from aperture.dicom.identifiers import PatientKey
from aperture.dicom.query import parse_query
from aperture.errors import Forbidden
from aperture.store.blobs import BlobStore
from aperture.store.delete import delete_instances
from aperture.store.engine import open_engine
from aperture.store.index import Index
from aperture.store.ingest import Ingest, Upload, prepare_upload
from aperture.store.scope import AccessScope
from tests.helpers import make_instance

HOSPITAL = "urn:oid:1.2.3.4"
OTHER_HOSPITAL = "urn:oid:9.8.7.6"
ANN = PatientKey("MRN-1", HOSPITAL).text
BOB = PatientKey("MRN-1", OTHER_HOSPITAL).text  # the same MRN value, another issuer: another person
CAT = PatientKey("MRN-2", HOSPITAL).text
READ_METHODS = {
    "search",
    "instance_refs",
    "metadata",
    "has_study",
    "has_series",
    "study_summaries",
    "study_summary",
    "series_summaries",
}


class Store:
    def __init__(self, root: Path, url: str) -> None:
        self.blobs = BlobStore(root)
        self.engine = open_engine(url)
        self.index = Index(self.engine)
        self.ingest = Ingest(self.engine, self.blobs, "reject")
        self.studies: dict[str, tuple[str, str, str]] = {}  # name -> (study, series, sop)

    def upload(self, name: str, patient_id: str, issuer: str) -> bytes:
        study, series, sop = generate_uid(), generate_uid(), generate_uid()
        self.studies[name] = (study, series, sop)
        return make_instance(study=study, series=series, sop=sop, patient_id=patient_id, issuer=issuer)

    def put(self, scope: AccessScope, *files: bytes) -> list[Any]:
        batch = []
        for data in files:
            temp, handle = self.blobs.new_temp()
            with handle:
                handle.write(data)
            upload = prepare_upload(temp)
            assert isinstance(upload, Upload)
            batch.append((temp, upload))
        return self.ingest.ingest(batch, scope)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"scopes_{uuid.uuid4().hex[:12]}")
    else:
        url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    found = Store(tmp_path, url)
    files = [
        found.upload("ann-1", "MRN-1", HOSPITAL),
        found.upload("ann-2", "MRN-1", HOSPITAL),
        found.upload("bob-1", "MRN-1", OTHER_HOSPITAL),
        found.upload("cat-1", "MRN-2", HOSPITAL),
    ]
    assert all(o.reason is None for o in found.put(allow_everything(), *files))
    return found


def visible(store: Store, scope: AccessScope) -> dict[str, set[str]]:
    """Which of the stored studies each read method lets `scope` see."""
    seen: dict[str, set[str]] = {method: set() for method in READ_METHODS}
    for level in Level:
        query = parse_query([], level, default_limit=100, max_limit=100)
        for document in store.index.search(query, scope).documents:
            text = document.decode()
            seen["search"] |= {name for name, (study, _, _) in store.studies.items() if study in text}
    for name, (study, series, sop) in store.studies.items():
        for level_series, level_sop in ((None, None), (series, None), (series, sop)):
            if store.index.instance_refs(scope, study, level_series, level_sop):
                seen["instance_refs"].add(name)
            if store.index.metadata(scope, study, level_series, level_sop):
                seen["metadata"].add(name)
        if store.index.has_study(scope, study):
            seen["has_study"].add(name)
        if store.index.has_series(scope, study, series):
            seen["has_series"].add(name)
        if store.index.study_summary(scope, study) is not None:
            seen["study_summary"].add(name)
    by_uid = {study: name for name, (study, _, _) in store.studies.items()}
    pks = {}
    for patient_id, issuer in (("MRN-1", HOSPITAL), ("MRN-1", OTHER_HOSPITAL), ("MRN-2", HOSPITAL)):
        everything, _ = store.index.study_summaries(allow_everything(), patient_id=patient_id, issuer=issuer)
        pks |= {summary.pk: by_uid[summary.study_uid] for summary in everything}
        rows, _ = store.index.study_summaries(scope, patient_id=patient_id, issuer=issuer)
        seen["study_summaries"] |= {by_uid[summary.study_uid] for summary in rows}
    seen["series_summaries"] = {pks[pk] for pk in store.index.series_summaries(scope, list(pks))}
    return seen


def test_every_public_index_read_is_covered_here() -> None:
    """A new read method on Index must be added to READ_METHODS (and so to `visible`) before it ships."""
    source = (Path(__file__).resolve().parents[2] / "aperture" / "store" / "index.py").read_text(encoding="utf-8")
    (index_class,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Index"]
    public = {n.name for n in index_class.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
    public -= {"answers_inline"}  # a property about the engine, not a read
    assert public == READ_METHODS


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (restricted(patient_keys=[ANN]), {"ann-1", "ann-2"}),
        (restricted(patient_keys=[BOB]), {"bob-1"}),  # the MRN alone never matches Ann's studies
        (restricted(patient_keys=[ANN], withheld_study_uids=["@ann-2"]), {"ann-1"}),
        (restricted(study_grants=[(CAT, "@cat-1")]), {"cat-1"}),
        (restricted(study_grants=[(ANN, "@cat-1")]), set()),  # a study granted as another patient's is not reached
        (restricted(patient_keys=[ANN], study_grants=[(CAT, "@cat-1")]), {"ann-1", "ann-2", "cat-1"}),
        (restricted(patient_keys=[]), set()),  # an empty grant reaches nothing, not everything
        (restricted(patient_keys=[ANN, CAT]), {"ann-1", "ann-2", "cat-1"}),
        (restricted(study_grants=[(CAT, "@cat-1"), (ANN, "@ann-2")]), {"ann-2", "cat-1"}),
        (restricted(patient_keys=[ANN, CAT], withheld_study_uids=["@ann-2", "@cat-1"]), {"ann-1"}),
    ],
    ids=[
        "patient",
        "same-mrn-other-issuer",
        "withheld",
        "study",
        "study-of-another",
        "patient-and-study",
        "empty",
        "two-patients",
        "two-grants",
        "two-withheld",
    ],
)
def test_each_read_sees_exactly_what_the_scope_permits(store: Store, scope: AccessScope, expected: set[str]) -> None:
    scope = _resolved(store, scope)
    assert visible(store, scope) == {method: expected for method in READ_METHODS}


def test_writes_need_a_write_scope_and_stay_within_its_patients(store: Store) -> None:
    with pytest.raises(Forbidden):
        store.put(restricted(patient_keys=[ANN]), store.upload("ann-3", "MRN-1", HOSPITAL))
    writer = restricted(patient_keys=[ANN], may_write=True)
    (other,) = store.put(writer, store.upload("bob-2", "MRN-1", OTHER_HOSPITAL))
    assert other.reason is not None and "patient" in other.message
    (mine,) = store.put(writer, store.upload("ann-3", "MRN-1", HOSPITAL))
    assert mine.reason is None
    assert visible(store, restricted(patient_keys=[ANN]))["search"] == {"ann-1", "ann-2", "ann-3"}


def test_deletes_need_a_delete_scope_and_reach_only_its_studies(store: Store) -> None:
    study = store.studies["bob-1"][0]
    with pytest.raises(Forbidden):
        delete_instances(store.engine, store.blobs, restricted(patient_keys=[BOB], may_write=True), study)
    assert delete_instances(store.engine, store.blobs, allow_everything(), store.studies["cat-1"][0]) == 1
    assert visible(store, allow_everything())["has_study"] == {"ann-1", "ann-2", "bob-1"}


def _resolved(store: Store, scope: AccessScope) -> AccessScope:
    """The scope with "@name" study placeholders replaced by that stored study's UID."""

    def uid(value: str) -> str:
        return store.studies[value[1:]][0] if value.startswith("@") else value

    return restricted(
        patient_keys=scope.patient_keys if scope.patient_keys or not scope.study_grants else None,
        study_grants=[(key, uid(study)) for key, study in scope.study_grants],
        withheld_study_uids=[uid(v) for v in scope.withheld_study_uids],
        may_write=scope.may_write,
    )


@pytest.mark.parametrize("duplicate_policy", ["reject", "overwrite"])
def test_a_restricted_writer_cannot_touch_or_probe_another_patients_uids(store: Store, duplicate_policy: str) -> None:
    """Reusing Bob's study, series or SOP Instance UID in Ann's upload: refused with one message, nothing replaced.

    The message is the same as for a study that does not exist, so a STOW cannot tell whether a UID
    is stored for someone else; under `overwrite` Bob's instance must not be replaced either.
    """
    store.ingest.policy = duplicate_policy  # type: ignore[assignment]
    writer = restricted(patient_keys=[ANN], may_write=True)
    bob_study, bob_series, bob_sop = store.studies["bob-1"]
    before = store.index.metadata(allow_everything(), bob_study, bob_series, bob_sop)
    own_study = store.studies["ann-1"][0]
    attempts = {
        "sop": make_instance(study=generate_uid(), series=generate_uid(), sop=bob_sop, patient_id="MRN-1",
                             issuer=HOSPITAL),
        "series": make_instance(study=own_study, series=bob_series, sop=generate_uid(), patient_id="MRN-1",
                                issuer=HOSPITAL),
        "study": make_instance(study=bob_study, series=generate_uid(), sop=generate_uid(), patient_id="MRN-1",
                               issuer=HOSPITAL),
        "unknown": make_instance(study=generate_uid(), series=generate_uid(), sop=generate_uid(), patient_id="MRN-2",
                                 issuer=HOSPITAL),
    }  # fmt: skip
    messages = {}
    for name, data in attempts.items():
        (outcome,) = store.put(writer, data)
        assert outcome.reason is not None, name
        messages[name] = outcome.message
    assert len(set(messages.values())) == 1, messages
    assert bob_study not in messages["study"] and bob_sop not in messages["sop"]
    assert store.index.metadata(allow_everything(), bob_study, bob_series, bob_sop) == before
    assert visible(store, allow_everything())["search"] == {"ann-1", "ann-2", "bob-1", "cat-1"}
