"""A study stored while the demo runs reaches the EHR's own ImagingStudy index (the imaging server publishes it).

A backend client pre-authorized for Walter writes a new study of his (his MRN and issuer) through
STOW-RS; once it has been stable for the demo's `fhir.publish_after_seconds`, the imaging server
sends its ImagingStudy to the sandbox with its own Backend Services token, and Walter's own app
finds it in the EHR's search, with an Endpoint pointing at the imaging server.
"""

from __future__ import annotations

import time

import httpx
from pydicom.uid import generate_uid

from aperture.ehr.people import load_directory
from tests.e2e.conftest import register_backend
from tests.helpers import make_instance, multipart_body
from tests.stack import DemoStack


def test_a_study_stored_after_start_up_appears_in_the_ehr_search(demo_stack: DemoStack, http: httpx.Client) -> None:
    directory = load_directory()
    walter = directory.patients["walter-nguyen"]
    writer = register_backend(demo_stack, "e2e-modality", "system/ImagingStudy.crs", "--patients", walter.id)
    token = writer.access_token("system/ImagingStudy.crs")
    study = generate_uid()
    body, content_type = multipart_body(
        [make_instance(study=study, patient_id=walter.mrn, issuer=directory.issuers[walter.mrn_system],
                       patient_name="Nguyen^Walter", accession="AGH-A-NEW", modality="OT")]
    )  # fmt: skip
    stored = http.post(f"{demo_stack.dicomweb}/studies", content=body,
                       headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"})  # fmt: skip
    assert stored.status_code == 200, stored.text

    app = demo_stack.token("sample-viewer", "launch/patient patient/ImagingStudy.rs", patient=walter.id,
                           user=f"Patient/{walter.id}")  # fmt: skip
    deadline = time.monotonic() + 60  # published PUBLISH_AFTER_SECONDS (5 s) after the last change, then a round
    found: dict[str, object] | None = None
    while time.monotonic() < deadline and found is None:
        bundle = http.get(f"{demo_stack.ehr_fhir}/ImagingStudy", params={"patient": walter.id},
                          headers={"Authorization": f"Bearer {app}"}).json()  # fmt: skip
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            if any(i.get("value") == f"urn:oid:{study}" for i in resource.get("identifier", [])):
                found = resource
        time.sleep(0.5)
    assert found is not None, f"study {study} did not reach the EHR's ImagingStudy search within 60 s"
    addresses = [c.get("address") for c in found.get("contained", []) if c.get("resourceType") == "Endpoint"]  # type: ignore[attr-defined]
    assert demo_stack.dicomweb in addresses, found
