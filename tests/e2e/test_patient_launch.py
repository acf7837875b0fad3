"""A patient's app, end to end: standalone launch in chromium, discovery, ImagingStudy search, byte-identical download.

Maya signs in at the EHR as herself; the app (fhirclient) finds the imaging FHIR server in the
EHR's smart-configuration (`associated_endpoints`, SMART Imaging Access §Discovery), searches her
studies there with the token, follows the included Endpoint to WADO-RS and downloads each study
whole with `transfer-syntax=*` (PS3.18 §8.7.3.5.2: the instances as stored). Every instance must
be byte for byte the file the demo stored (see tests/e2e/imaging.py for why regenerating the seed
studies yields those bytes).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest
from fhirclient import client as smart

from tests.browser.launch import access_token, app_page, standalone_launch
from tests.e2e.conftest import APP, REDIRECT_URI, VIEWER, Access, E2ERun
from tests.e2e.imaging import (
    bearer,
    download_study,
    find_studies,
    imaging_fhir_base,
    instances_of,
    sop_instance_uid,
    stored_instances,
    studies_of,
)
from tests.stack import DemoStack

if TYPE_CHECKING:
    from playwright.sync_api import Browser

MAYA = "maya-alvarez"
SCOPE = "openid fhirUser patient/Patient.rs patient/ImagingStudy.rs"


@pytest.fixture(scope="module")
def maya_app(demo_stack: DemoStack, viewer: str, browser: Browser) -> smart.FHIRClient:
    with app_page(browser, APP) as page:
        return standalone_launch(
            page, client_id=viewer, fhir_base=demo_stack.ehr_fhir, redirect_uri=REDIRECT_URI, scope=SCOPE,
            login="maya", password="maya-demo",
        )  # fmt: skip


def test_seed_studies_are_deterministic() -> None:
    """Another process regenerates the same files: what the test compares with is what the demo sent."""
    here = hashlib.sha256(b"".join(i.data for i in stored_instances().values())).hexdigest()
    script = (
        "import hashlib, io, pydicom\n"
        "from aperture.cli.demo import _seed_studies\n"
        "files = {str(pydicom.dcmread(io.BytesIO(d), stop_before_pixels=True).SOPInstanceUID): d "
        "for d in _seed_studies()}\n"
        "print(hashlib.sha256(b''.join(files.values())).hexdigest())\n"
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert other.stdout.strip() == here


def test_patient_app_finds_and_downloads_every_study_byte_identical(
    demo_stack: DemoStack, maya_app: smart.FHIRClient, run: E2ERun, http: httpx.Client
) -> None:
    assert maya_app.patient_id == MAYA
    token = access_token(maya_app)
    run.bearer(token)
    fhir = imaging_fhir_base(demo_stack.ehr_fhir)
    assert fhir == demo_stack.imaging_fhir

    found = find_studies(http, fhir, MAYA, token)
    run.expect(Access(VIEWER, "permit", "E", patient=f"Patient/{MAYA}"))
    assert set(found.studies) == studies_of(MAYA)  # the patient sees all of her own, the confidential one too
    assert found.address == demo_stack.dicomweb

    compared = set()
    for uid, study in found.studies.items():
        parts = download_study(http, found.address, uid, token)
        run.expect(Access(VIEWER, "permit", "R", patient=f"Patient/{MAYA}", study=uid))
        expected = {i.sop: i.data for i in instances_of(uid)}
        assert study["numberOfInstances"] == len(expected) == len(parts)
        for part in parts:
            sop = sop_instance_uid(part)
            assert sop in expected, f"{sop} is not an instance of study {uid}"
            assert part == expected[sop], f"instance {sop} differs from the stored file"
            compared.add(sop)
    assert compared == {i.sop for uid in studies_of(MAYA) for i in instances_of(uid)}
    assert len(compared) > 2


def test_patient_token_reaches_no_one_else(
    demo_stack: DemoStack, maya_app: smart.FHIRClient, run: E2ERun, http: httpx.Client
) -> None:
    token = access_token(maya_app)
    answer = http.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": "walter-nguyen"},
                      headers=run.bearer(token))  # fmt: skip
    assert answer.status_code == 403, answer.text
    run.expect(Access(VIEWER, "deny", "E", patient="Patient/walter-nguyen", status=403))
    walter = next(iter(studies_of("walter-nguyen")))
    answer = http.get(f"{demo_stack.dicomweb}/studies/{walter}/metadata", headers=bearer(token))
    assert answer.status_code == 404, answer.text  # another patient's study does not exist for this token
    run.expect(Access(VIEWER, "deny", "R", study=walter, status=404))
    assert http.get(f"{demo_stack.dicomweb}/studies/{walter}/metadata").status_code == 401
