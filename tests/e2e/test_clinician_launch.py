"""A clinician's EHR launch, end to end: Dr. Chen opens the app from the EHR for a panel patient.

The token carries `user/ImagingStudy.rs`: it reaches every patient on Dr. Chen's care-team panel
(Walter, Priya, Maya in the seed), minus what consent restricts to the patient (Priya's MR brain),
and no one else: a search for a patient off the panel is 403, at the FHIR server and at QIDO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from fhirclient import client as smart

from tests.browser.launch import access_token, app_page, ehr_launch
from tests.e2e.conftest import APP, LAUNCH_URL, REDIRECT_URI, VIEWER, VIEWER_NAME, Access, E2ERun
from tests.e2e.imaging import find_studies, instances_of, mrn, studies_of, study_of
from tests.stack import DemoStack

if TYPE_CHECKING:
    from playwright.sync_api import Browser

SCOPE = "openid fhirUser user/ImagingStudy.rs user/Patient.rs"  # fhirclient adds `launch` for an EHR launch
CONSENT_STUDY = study_of("priya-raman", accession="AGH-A-7031")  # patient_only: nobody but Priya
PANEL = {
    "walter-nguyen": studies_of("walter-nguyen"),
    "priya-raman": studies_of("priya-raman") - {CONSENT_STUDY},
    "maya-alvarez": studies_of("maya-alvarez"),  # withheld only from her mother's proxy access
}
OFF_PANEL = ["elena-alvarez", "tomas-berg"]


@pytest.fixture(scope="module")
def chen_app(demo_stack: DemoStack, viewer: str, browser: Browser) -> smart.FHIRClient:
    with app_page(browser, APP) as page:
        return ehr_launch(
            page, ehr=demo_stack.ehr, client_id=viewer, app_name=VIEWER_NAME, launch_url=LAUNCH_URL,
            redirect_uri=REDIRECT_URI, scope=SCOPE, login="dr.chen", password="chen-demo",
            patient_name="Walter Minh Nguyen",
        )  # fmt: skip


@pytest.fixture(scope="module")
def token(chen_app: smart.FHIRClient, run: E2ERun) -> str:
    assert chen_app.patient_id == "walter-nguyen"  # the launch context
    assert chen_app.server is not None and chen_app.server.base_uri.rstrip("/") == run.demo.ehr_fhir  # iss
    scopes = set(str(chen_app.launch_context["scope"]).split())
    assert {"launch", "user/ImagingStudy.rs"} <= scopes and not any(s.startswith("patient/") for s in scopes)
    token = access_token(chen_app)
    run.bearer(token)
    return token


@pytest.mark.parametrize("patient", list(PANEL))
def test_clinician_token_reaches_each_panel_patient(
    demo_stack: DemoStack, token: str, run: E2ERun, http: httpx.Client, patient: str
) -> None:
    found = find_studies(http, demo_stack.imaging_fhir, patient, token)
    assert set(found.studies) == PANEL[patient]
    run.expect(Access(VIEWER, "permit", "E", patient=f"Patient/{patient}"))
    qido = http.get(f"{demo_stack.dicomweb}/studies", params={"PatientID": mrn(patient)},
                    headers={"Accept": "application/dicom+json", **run.bearer(token)})  # fmt: skip
    assert qido.status_code == 200, qido.text
    assert {s["0020000D"]["Value"][0] for s in qido.json()} == PANEL[patient]
    for uid in PANEL[patient]:
        metadata = http.get(f"{demo_stack.dicomweb}/studies/{uid}/metadata", headers=run.bearer(token))
        assert metadata.status_code == 200, metadata.text
        assert len(metadata.json()) == len(instances_of(uid))
        run.expect(Access(VIEWER, "permit", "R", study=uid))


def test_clinician_token_does_not_reach_the_consent_restricted_study(
    demo_stack: DemoStack, token: str, run: E2ERun, http: httpx.Client
) -> None:
    answer = http.get(f"{demo_stack.dicomweb}/studies/{CONSENT_STUDY}/metadata", headers=run.bearer(token))
    assert answer.status_code == 404, answer.text
    run.expect(Access(VIEWER, "deny", "R", study=CONSENT_STUDY, status=404))


@pytest.mark.parametrize("patient", OFF_PANEL)
def test_clinician_token_is_refused_for_a_patient_off_the_panel(
    demo_stack: DemoStack, token: str, run: E2ERun, http: httpx.Client, patient: str
) -> None:
    answer = http.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": patient},
                      headers=run.bearer(token))  # fmt: skip
    assert answer.status_code == 403, answer.text
    run.expect(Access(VIEWER, "deny", "E", patient=f"Patient/{patient}", status=403))
    qido = http.get(f"{demo_stack.dicomweb}/studies", params={"PatientID": mrn(patient)},
                    headers={"Accept": "application/dicom+json", **run.bearer(token)})  # fmt: skip
    assert qido.status_code == 403, qido.text
    for uid in studies_of(patient):
        assert http.get(f"{demo_stack.dicomweb}/studies/{uid}/metadata", headers=run.bearer(token)).status_code == 404


def test_clinician_qido_without_a_patient_lists_the_panel_only(
    demo_stack: DemoStack, token: str, run: E2ERun, http: httpx.Client
) -> None:
    answer = http.get(f"{demo_stack.dicomweb}/studies", params={"limit": "1000"},
                      headers={"Accept": "application/dicom+json", **run.bearer(token)})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert {s["0020000D"]["Value"][0] for s in answer.json()} == set().union(*PANEL.values())
