"""Proxy access, end to end: Elena signs in, picks her daughter Maya, and gets Maya's studies minus the withheld one.

The withheld study (Maya's pelvic ultrasound, `withheld_from` Elena's RelatedPerson in the seed)
must be absent from the FHIR search and from QIDO-RS, and every retrieval of it must answer 404,
as if it did not exist (docs/authorization.md §What an imaging server does, 4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from fhirclient import client as smart

from tests.browser.launch import access_token, app_page, standalone_launch
from tests.e2e.conftest import APP, REDIRECT_URI, VIEWER, Access, E2ERun
from tests.e2e.imaging import find_studies, instances_of, mrn, studies_of, study_of
from tests.stack import DemoStack

if TYPE_CHECKING:
    from playwright.sync_api import Browser

MAYA = "maya-alvarez"
SCOPE = "openid fhirUser patient/ImagingStudy.rs"
WITHHELD = study_of(MAYA, accession="AGH-A-7002")  # withheld from Elena's proxy access (seed.json)
PERMITTED = study_of(MAYA, accession="AGH-A-7001")
QIDO = {"Accept": "application/dicom+json"}


@pytest.fixture(scope="module")
def elena_app(demo_stack: DemoStack, viewer: str, browser: Browser) -> smart.FHIRClient:
    with app_page(browser, APP) as page:
        return standalone_launch(
            page, client_id=viewer, fhir_base=demo_stack.ehr_fhir, redirect_uri=REDIRECT_URI, scope=SCOPE,
            login="elena", password="elena-demo", patient_name="Maya Alvarez",
        )  # fmt: skip


@pytest.fixture(scope="module")
def token(elena_app: smart.FHIRClient, run: E2ERun) -> str:
    assert elena_app.patient_id == MAYA
    token = access_token(elena_app)
    run.bearer(token)
    return token


def test_the_seed_withholds_one_of_mayas_studies() -> None:
    assert studies_of(MAYA) == {PERMITTED, WITHHELD}


def test_proxy_fhir_search_leaves_out_the_withheld_study(
    demo_stack: DemoStack, token: str, run: E2ERun, http: httpx.Client
) -> None:
    found = find_studies(http, demo_stack.imaging_fhir, MAYA, token)
    assert set(found.studies) == {PERMITTED}
    run.expect(Access(VIEWER, "permit", "E", patient=f"Patient/{MAYA}"))
    read = http.get(f"{demo_stack.imaging_fhir}/ImagingStudy/{WITHHELD}", headers=run.bearer(token))
    assert read.status_code == 404, read.text
    assert http.get(f"{demo_stack.imaging_fhir}/ImagingStudy/{PERMITTED}", headers=run.bearer(token)).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({}, id="all-studies"),
        pytest.param({"PatientID": mrn(MAYA)}, id="by-patient-id"),
        pytest.param({"StudyInstanceUID": WITHHELD}, id="by-the-withheld-uid"),
        pytest.param({"AccessionNumber": "AGH-A-7002"}, id="by-the-withheld-accession"),
    ],
)
def test_proxy_qido_leaves_out_the_withheld_study(
    demo_stack: DemoStack, token: str, run: E2ERun, http: httpx.Client, query: dict[str, str]
) -> None:
    answer = http.get(f"{demo_stack.dicomweb}/studies", params=query, headers={**QIDO, **run.bearer(token)})
    assert answer.status_code in (200, 204), answer.text
    found = {study["0020000D"]["Value"][0] for study in (answer.json() if answer.content else [])}
    assert found == ({PERMITTED} if "StudyInstanceUID" not in query and "AccessionNumber" not in query else set())
    run.expect(Access(VIEWER, "permit", "E"))


def _retrievals(study: str) -> dict[str, tuple[str, str]]:
    instance = instances_of(study)[0]
    series = f"/studies/{study}/series/{instance.series}"
    whole = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    return {
        "study": (f"/studies/{study}", whole),
        "series": (series, whole),
        "instance": (f"{series}/instances/{instance.sop}", whole),
        "study-metadata": (f"/studies/{study}/metadata", "application/dicom+json"),
        "series-metadata": (f"{series}/metadata", "application/dicom+json"),
        "instance-metadata": (f"{series}/instances/{instance.sop}/metadata", "application/dicom+json"),
        "frames": (f"{series}/instances/{instance.sop}/frames/1", 'multipart/related; type="application/octet-stream"'),
        "series-of-study": (f"/studies/{study}/series", "application/dicom+json"),
    }


@pytest.mark.parametrize("what", list(_retrievals(WITHHELD)))
def test_proxy_retrieval_of_the_withheld_study_is_404(
    demo_stack: DemoStack, token: str, run: E2ERun, http: httpx.Client, what: str
) -> None:
    path, accept = _retrievals(WITHHELD)[what]
    answer = http.get(f"{demo_stack.dicomweb}{path}", headers={"Accept": accept, **run.bearer(token)})
    assert answer.status_code == 404, (what, answer.status_code, answer.text)
    assert not answer.content.startswith(b"\x00" * 128 + b"DICM")
    run.expect(Access(VIEWER, "deny", "R" if what != "series-of-study" else "E", study=WITHHELD, status=404))
    # the same request for the permitted study works: the 404 is the withholding, not the request
    path, accept = _retrievals(PERMITTED)[what]
    allowed = http.get(f"{demo_stack.dicomweb}{path}", headers={"Accept": accept, **run.bearer(token)})
    assert allowed.status_code == 200, (what, allowed.status_code, allowed.text)


def test_proxy_token_does_not_reach_elenas_own_studies(
    demo_stack: DemoStack, token: str, run: E2ERun, http: httpx.Client
) -> None:
    """The token is for Maya (patient/ scopes, launch patient): Elena's own record is another patient."""
    answer = http.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": "elena-alvarez"},
                      headers=run.bearer(token))  # fmt: skip
    assert answer.status_code == 403, answer.text
    run.expect(Access(VIEWER, "deny", "E", patient="Patient/elena-alvarez", status=403))
