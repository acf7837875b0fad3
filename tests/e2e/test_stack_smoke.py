"""The demo stack answers a patient token end to end: discovery, ImagingStudy search, byte-identical retrieval."""

from __future__ import annotations

import httpx

from tests.stack import DemoStack


def test_a_patient_token_finds_and_retrieves_its_study(demo_stack: DemoStack) -> None:
    maya = demo_stack.patient("maya-alvarez")
    token = demo_stack.token(
        "sample-viewer", "launch/patient patient/ImagingStudy.rs", patient="maya-alvarez", user="Patient/maya-alvarez"
    )
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=60) as http:
        bundle = http.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": "maya-alvarez"}, headers=bearer)
        assert bundle.status_code == 200, bundle.text
        assert bundle.headers["cache-control"] == "private, no-store"  # the FHIR answer's own, kept
        found = {e["resource"]["id"] for e in bundle.json()["entry"] if e["resource"]["resourceType"] == "ImagingStudy"}
        assert found == set(maya["studies"])
        assert http.get(f"{demo_stack.dicomweb}/studies").status_code == 401
