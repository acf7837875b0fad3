"""Backend Services, end to end: a client pre-authorized at the EHR reaches exactly its pre-authorized patients/studies.

Two clients are registered as an admin does (`aperture ehr clients add --kind backend`, a JWKS,
`--patients` or `--studies`), get `system/ImagingStudy.rs` tokens by client_credentials with a
private_key_jwt assertion at the token endpoint the EHR's smart-configuration names (SMART Backend
Services), and use them at the imaging server: FHIR search, QIDO-RS and WADO-RS.
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Access, BackendClient, E2ERun, register_backend
from tests.e2e.imaging import WHOLE_STUDY, find_studies, instances_of, split_multipart, studies_of, study_of
from tests.stack import DemoStack

SCOPE = "system/ImagingStudy.rs"
ONE_STUDY = study_of("maya-alvarez", accession="AGH-A-7001")
QIDO = {"Accept": "application/dicom+json"}


@pytest.fixture(scope="module")
def walter_client(demo_stack: DemoStack) -> BackendClient:
    return register_backend(demo_stack, "e2e-backend-walter", SCOPE, "--patients", "walter-nguyen")


@pytest.fixture(scope="module")
def study_client(demo_stack: DemoStack) -> BackendClient:
    return register_backend(demo_stack, "e2e-backend-one-study", SCOPE, "--studies", ONE_STUDY)


def qido_studies(http: httpx.Client, dicomweb: str, headers: dict[str, str]) -> set[str]:
    answer = http.get(f"{dicomweb}/studies", params={"limit": "1000"}, headers={**QIDO, **headers})
    assert answer.status_code in (200, 204), answer.text
    return {s["0020000D"]["Value"][0] for s in (answer.json() if answer.content else [])}


def test_backend_client_reaches_its_preauthorized_patient_only(
    demo_stack: DemoStack, walter_client: BackendClient, run: E2ERun, http: httpx.Client
) -> None:
    token = walter_client.access_token(SCOPE)
    found = find_studies(http, demo_stack.imaging_fhir, "walter-nguyen", token)
    run.bearer(token)
    assert set(found.studies) == studies_of("walter-nguyen")
    run.expect(Access(walter_client.client_id, "permit", "E", patient="Patient/walter-nguyen"))
    assert qido_studies(http, demo_stack.dicomweb, run.bearer(token)) == studies_of("walter-nguyen")
    (uid,) = studies_of("walter-nguyen")
    study = http.get(f"{demo_stack.dicomweb}/studies/{uid}", headers={"Accept": WHOLE_STUDY, **run.bearer(token)})
    assert study.status_code == 200, study.text
    assert sorted(split_multipart(study)) == sorted(i.data for i in instances_of(uid))
    run.expect(Access(walter_client.client_id, "permit", "R", patient="Patient/walter-nguyen", study=uid))
    for other in ("maya-alvarez", "tomas-berg"):
        answer = http.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": other},
                          headers=run.bearer(token))  # fmt: skip
        assert answer.status_code == 403, answer.text
        run.expect(Access(walter_client.client_id, "deny", "E", patient=f"Patient/{other}", status=403))
        for study_uid in studies_of(other):
            metadata = http.get(f"{demo_stack.dicomweb}/studies/{study_uid}/metadata", headers=run.bearer(token))
            assert metadata.status_code == 404, metadata.text
            run.expect(Access(walter_client.client_id, "deny", "R", study=study_uid, status=404))


def test_backend_client_reaches_its_single_preauthorized_study_only(
    demo_stack: DemoStack, study_client: BackendClient, run: E2ERun, http: httpx.Client
) -> None:
    token = study_client.access_token(SCOPE)
    run.bearer(token)
    found = find_studies(http, demo_stack.imaging_fhir, "maya-alvarez", token)
    assert set(found.studies) == {ONE_STUDY}  # not Maya's other study
    run.expect(Access(study_client.client_id, "permit", "E", patient="Patient/maya-alvarez"))
    assert qido_studies(http, demo_stack.dicomweb, run.bearer(token)) == {ONE_STUDY}
    metadata = http.get(f"{demo_stack.dicomweb}/studies/{ONE_STUDY}/metadata", headers=run.bearer(token))
    assert metadata.status_code == 200, metadata.text
    run.expect(Access(study_client.client_id, "permit", "R", patient="Patient/maya-alvarez", study=ONE_STUDY))
    (other,) = studies_of("maya-alvarez") - {ONE_STUDY}
    answer = http.get(f"{demo_stack.dicomweb}/studies/{other}/metadata", headers=run.bearer(token))
    assert answer.status_code == 404, answer.text
    run.expect(Access(study_client.client_id, "deny", "R", study=other, status=404))
    answer = http.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": "walter-nguyen"},
                      headers=run.bearer(token))  # fmt: skip
    assert answer.status_code == 403, answer.text
    run.expect(Access(study_client.client_id, "deny", "E", patient="Patient/walter-nguyen", status=403))


def test_backend_token_is_never_wider_than_registered(
    demo_stack: DemoStack, walter_client: BackendClient, run: E2ERun, http: httpx.Client
) -> None:
    """The registered scope bounds the token: no AuditEvent reading for an imaging-only client."""
    refused = walter_client.token("system/AuditEvent.rs")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope", refused.text
    token = walter_client.access_token(SCOPE)
    audit = http.get(f"{demo_stack.imaging_fhir}/AuditEvent", headers=run.bearer(token))
    assert audit.status_code == 403, audit.text
