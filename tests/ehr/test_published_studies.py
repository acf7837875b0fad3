"""The sandbox accepts ImagingStudy from the imaging server: conditional update, MRN matching, reconciliation.

Against a running sandbox (this module's own): a backend client with `system/ImagingStudy.cu` publishes by
`PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:<UID>`; the study is then found by the
patient's own token, with the Endpoint it was sent with. A subject identifier that matches no
Patient (an unknown MRN, or a known MRN value under another system) is 422 and listed by
`aperture ehr reconcile list`, never attached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from pydicom.uid import generate_uid

from tests.ehr.conftest import Sandbox, ehr, public_jwks, register, start_sandbox

MRN_SYSTEM = "http://aperture.example.org/fhir/sid/mrn"
MAYA_MRN = "AGH-100234"
MAYA_SEEDED_STUDY = "2.25.268441305134709541612117823451873091501"
WADO = "http://imaging.test/dicom-web"
WRITE_SCOPE = "system/ImagingStudy.cu"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of this module's own: the studies published here must not show in other modules' searches."""
    data = tmp_path_factory.mktemp("published") / "ehr"
    register(data, "--kind", "public", "--name", "Viewer", "--client-id", "viewer", "--scope",
             "patient/ImagingStudy.rs", "--redirect-uri", "http://127.0.0.1:3000/callback")  # fmt: skip
    server = start_sandbox(data)
    yield Sandbox(server, {})
    server.stop()


def study(uid: str, *, system: str = MRN_SYSTEM, value: str = MAYA_MRN, description: str = "CT head") -> dict[str, Any]:
    """An ImagingStudy as the imaging server publishes one: subject by identifier, contained WADO-RS Endpoint."""
    return {
        "resourceType": "ImagingStudy",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
        "status": "available",
        "subject": {"type": "Patient", "identifier": {"system": system, "value": value}},
        "description": description,
        "contained": [{"resourceType": "Endpoint", "id": "dicom-wado-rs", "status": "active", "address": WADO,
                       "connectionType": {"code": "dicom-wado-rs"}, "payloadType": [{"text": "DICOM"}]}],
        "endpoint": [{"reference": "#dicom-wado-rs"}],
    }  # fmt: skip


def writer_token(sandbox: Sandbox, tmp_path: Path, client_id: str, scope: str = WRITE_SCOPE) -> str:
    if client_id not in sandbox.keys:
        key = RSAKey.generate_key(2048, parameters={"kid": f"{client_id}-1"})
        jwks = tmp_path / f"{client_id}.json"
        jwks.write_text(json.dumps(public_jwks(key)))
        register(sandbox.server.data, "--kind", "backend", "--name", client_id, "--client-id", client_id,
                 "--scope", scope, "--jwks", str(jwks))  # fmt: skip
        sandbox.keys[client_id] = key
    response = sandbox.backend_token(sandbox.assertion(client_id), scope=scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def put(sandbox: Sandbox, token: str, resource: Any, uid: str | None = None, **options: Any) -> httpx.Response:
    uid = uid or resource["identifier"][0]["value"].removeprefix("urn:oid:")
    return httpx.put(
        f"{sandbox.url}/fhir/ImagingStudy",
        params=options.pop("params", {"identifier": f"urn:dicom:uid|urn:oid:{uid}"}),
        content=json.dumps(resource),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )


def patient_token(sandbox: Sandbox, patient: str = "maya-alvarez") -> str:
    args = ["token", "--data", str(sandbox.server.data), "--client-id", "viewer", "--scope",
            "patient/ImagingStudy.rs", "--patient", patient]  # fmt: skip
    return str(json.loads(ehr(*args).stdout)["access_token"])


def studies_seen(sandbox: Sandbox, token: str, patient: str = "maya-alvarez") -> dict[str, dict[str, Any]]:
    """The patient's ImagingStudy search, by StudyInstanceUID."""
    response = httpx.get(
        f"{sandbox.url}/fhir/ImagingStudy", params={"patient": patient}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    found: dict[str, dict[str, Any]] = {}
    for entry in response.json()["entry"]:
        resource = entry["resource"]
        uid = next(i["value"] for i in resource["identifier"] if i["system"] == "urn:dicom:uid")
        assert uid.removeprefix("urn:oid:") not in found, "one resource per study"
        found[uid.removeprefix("urn:oid:")] = resource
    return found


def reconcile_list(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    listing = json.loads(ehr("reconcile", "list", "--data", str(sandbox.server.data)).stdout)
    return {item["study_instance_uid"]: item for item in listing}


def outcome_text(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return str(body["issue"][0]["diagnostics"])


def test_a_published_study_is_created_then_updated_and_found_by_the_patient(sandbox: Sandbox, tmp_path: Path) -> None:
    token = writer_token(sandbox, tmp_path, "publisher")
    uid = generate_uid()
    created = put(sandbox, token, study(uid))
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{sandbox.url}/fhir/ImagingStudy/{uid}"
    assert created.json()["subject"]["reference"] == "Patient/maya-alvarez"
    seen = studies_seen(sandbox, patient_token(sandbox))
    assert uid in seen and MAYA_SEEDED_STUDY in seen
    assert seen[uid]["contained"][0]["address"] == WADO
    assert seen[uid]["subject"]["identifier"] == {"system": MRN_SYSTEM, "value": MAYA_MRN}

    updated = put(sandbox, token, study(uid, description="CT head, addendum series"))
    assert updated.status_code == 200, updated.text
    again = studies_seen(sandbox, patient_token(sandbox))
    assert len(again) == len(seen), "the same StudyInstanceUID is an update, not a second resource"
    assert again[uid]["description"] == "CT head, addendum series"
    bearer = {"Authorization": f"Bearer {patient_token(sandbox)}"}
    read = httpx.get(f"{sandbox.url}/fhir/ImagingStudy/{uid}", headers=bearer)
    assert read.status_code == 200 and read.json()["description"] == "CT head, addendum series"


def test_an_unknown_mrn_is_422_and_queued_for_reconciliation(sandbox: Sandbox, tmp_path: Path) -> None:
    token = writer_token(sandbox, tmp_path, "publisher")
    uid = generate_uid()
    response = put(sandbox, token, study(uid, value="AGH-999999"))
    assert response.status_code == 422, response.text
    text = outcome_text(response)
    assert f"{MRN_SYSTEM}|AGH-999999" in text and "queued for reconciliation" in text
    queued = reconcile_list(sandbox)[uid]
    assert queued["subject_identifier"] == {"system": MRN_SYSTEM, "value": "AGH-999999"}
    assert queued["client_id"] == "publisher" and queued["times"] == 1
    assert put(sandbox, token, study(uid, value="AGH-999999")).status_code == 422
    assert reconcile_list(sandbox)[uid]["times"] == 2, "sent again: the same entry, counted"


def test_the_same_mrn_value_under_another_system_is_another_person(sandbox: Sandbox, tmp_path: Path) -> None:
    token = writer_token(sandbox, tmp_path, "publisher")
    uid = generate_uid()
    response = put(sandbox, token, study(uid, system="http://other-hospital.example.org/mrn", value=MAYA_MRN))
    assert response.status_code == 422, response.text
    assert uid not in studies_seen(sandbox, patient_token(sandbox))
    assert reconcile_list(sandbox)[uid]["subject_identifier"]["system"] == "http://other-hospital.example.org/mrn"


def test_a_study_held_for_another_patient_is_409_and_queued(sandbox: Sandbox, tmp_path: Path) -> None:
    token = writer_token(sandbox, tmp_path, "publisher")
    response = put(sandbox, token, study(MAYA_SEEDED_STUDY, value="AGH-100198"))  # Elena's MRN
    assert response.status_code == 409, response.text
    assert "queued for reconciliation" in outcome_text(response)
    assert MAYA_SEEDED_STUDY not in studies_seen(sandbox, patient_token(sandbox, "elena-alvarez"), "elena-alvarez")
    assert "Patient/maya-alvarez" in reconcile_list(sandbox)[MAYA_SEEDED_STUDY]["reason"]


def _without(resource: dict[str, Any], *path: str) -> dict[str, Any]:
    copy = json.loads(json.dumps(resource))
    target = copy
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return copy


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda r, u: {**r, "resourceType": "Patient"}, "one FHIR ImagingStudy"),
        (lambda r, u: {**r, "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"}]}, "exactly one"),
        (lambda r, u: _without(r, "identifier"), "ImagingStudy.identifier"),
        (lambda r, u: {**r, "status": "done"}, "ImagingStudy.status"),
        (lambda r, u: _without(r, "subject", "identifier", "system"), "subject.identifier"),
        (lambda r, u: _without(r, "subject"), "subject.identifier"),
        (lambda r, u: {**r, "endpoint": [{"reference": "#elsewhere"}]}, "names no contained Endpoint"),
        (lambda r, u: [r], "one FHIR ImagingStudy"),
    ],
    ids=[
        "not-imagingstudy",
        "other-uid",
        "no-identifier",
        "bad-status",
        "value-without-system",
        "no-subject",
        "dangling-endpoint",
        "a-list",
    ],  # fmt: skip
)
def test_bad_input_is_400_with_an_outcome_saying_what_to_change(
    sandbox: Sandbox, tmp_path: Path, change: Any, says: str
) -> None:
    token = writer_token(sandbox, tmp_path, "publisher")
    uid = generate_uid()
    response = put(sandbox, token, change(study(uid), uid), uid)
    assert response.status_code == 400, response.text
    assert says in outcome_text(response)


@pytest.mark.parametrize(
    "params",
    [{}, {"identifier": "urn:oid:1.2.3"}, {"identifier": "urn:dicom:uid|urn:oid:1.02"},
     {"identifier": "urn:dicom:uid|urn:oid:1.2.3", "patient": "x"}],
    ids=["none", "no-system", "not-a-uid", "extra-criteria"],
)  # fmt: skip
def test_the_conditional_update_must_name_one_study_uid(sandbox: Sandbox, tmp_path: Path, params: Any) -> None:
    token = writer_token(sandbox, tmp_path, "publisher")
    response = put(sandbox, token, study("1.2.3"), params=params)
    assert response.status_code == 400, response.text
    assert "urn:dicom:uid|urn:oid:" in outcome_text(response)


def test_only_a_backend_token_with_write_scope_may_publish(sandbox: Sandbox, tmp_path: Path) -> None:
    uid = generate_uid()
    reader = writer_token(sandbox, tmp_path, "backend-rs", scope="system/ImagingStudy.rs")
    assert put(sandbox, reader, study(uid)).status_code == 403
    assert put(sandbox, patient_token(sandbox), study(uid)).status_code == 403
    assert put(sandbox, "not-a-token", study(uid)).status_code == 401
    v1 = writer_token(sandbox, tmp_path, "publisher-v1", scope="system/ImagingStudy.write")
    assert put(sandbox, v1, study(uid)).status_code == 201
    post = httpx.post(f"{sandbox.url}/fhir/ImagingStudy", content=json.dumps(study(uid)),
                      headers={"Authorization": f"Bearer {v1}", "Content-Type": "application/fhir+json"})  # fmt: skip
    assert post.status_code == 405 and "PUT ImagingStudy?identifier=" in outcome_text(post)
    assert post.headers["allow"] == "GET, PUT"
    by_id = httpx.put(f"{sandbox.url}/fhir/ImagingStudy/{uid}", content=json.dumps(study(uid)),
                      headers={"Authorization": f"Bearer {v1}", "Content-Type": "application/fhir+json"})  # fmt: skip
    assert by_id.status_code == 405 and "conditional update" in outcome_text(by_id)


def test_a_study_level_grant_does_not_reach_a_published_study_of_the_same_patient(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token = writer_token(sandbox, tmp_path, "publisher")
    uid = generate_uid()
    assert put(sandbox, token, study(uid)).status_code == 201
    key = RSAKey.generate_key(2048, parameters={"kid": "one-study"})
    jwks = tmp_path / "one-study.json"
    jwks.write_text(json.dumps(public_jwks(key)))
    register(sandbox.server.data, "--kind", "backend", "--name", "one-study", "--client-id", "one-study",
             "--scope", "system/ImagingStudy.rs", "--jwks", str(jwks), "--studies", MAYA_SEEDED_STUDY)  # fmt: skip
    sandbox.keys["one-study"] = key
    reader = sandbox.backend_token(sandbox.assertion("one-study"), scope="system/ImagingStudy.rs").json()
    assert set(studies_seen(sandbox, reader["access_token"])) == {MAYA_SEEDED_STUDY}


def test_a_seeded_study_is_updated_in_place_and_published_studies_outlive_a_restart(tmp_path: Path) -> None:
    """Its own sandbox: the session's seeded studies stay as other tests expect them."""
    data = tmp_path / "ehr"
    key = RSAKey.generate_key(2048, parameters={"kid": "k"})
    (tmp_path / "jwks.json").write_text(json.dumps(public_jwks(key)))
    register(data, "--kind", "backend", "--name", "publisher", "--client-id", "publisher",
             "--scope", WRITE_SCOPE, "--jwks", str(tmp_path / "jwks.json"))  # fmt: skip
    register(data, "--kind", "public", "--name", "Viewer", "--client-id", "viewer", "--scope",
             "patient/ImagingStudy.rs", "--redirect-uri", "http://127.0.0.1:3000/callback")  # fmt: skip
    uid, lost = generate_uid(), generate_uid()
    server = start_sandbox(data)
    try:
        sandbox = Sandbox(server, {"publisher": key})
        token = writer_token(sandbox, tmp_path, "publisher")
        assert put(sandbox, token, study(uid)).status_code == 201
        assert put(sandbox, token, study(lost, value="AGH-000000")).status_code == 422
        before = studies_seen(sandbox, patient_token(sandbox))
        seeded = put(sandbox, token, study(MAYA_SEEDED_STUDY, description="XR ankle left 3 views"))
        assert seeded.status_code == 200, seeded.text
        assert seeded.json()["id"] == before[MAYA_SEEDED_STUDY]["id"], "updated in place, not a second resource"
        assert seeded.json()["basedOn"] == before[MAYA_SEEDED_STUDY]["basedOn"], "the EHR's order link is kept"
        first = studies_seen(sandbox, patient_token(sandbox))
        assert len(first) == len(before)
        assert first[MAYA_SEEDED_STUDY]["contained"][0]["address"] == WADO
    finally:
        server.stop()
    time.sleep(1.1)  # a rewrite would give a later lastUpdated
    server = start_sandbox(data)
    try:
        sandbox = Sandbox(server, {"publisher": key})
        assert studies_seen(sandbox, patient_token(sandbox)) == first
        assert lost in reconcile_list(sandbox)
    finally:
        server.stop()
