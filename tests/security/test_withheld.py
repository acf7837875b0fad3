"""Withheld studies: the proxy case (Elena for her daughter Maya) and the consent case (Priya's own study).

The token reaches the patient, so the EHR's `authorization_details` list the study as withheld:
every route must answer as if it did not exist, and searches must leave it out. The UIDs were
learned from the patient's own metadata.
"""

from __future__ import annotations

import httpx
import pytest

from tests.security.attacks import ORIGIN, Target, assert_no_leak, attack_every_route, json_of
from tests.security.conftest import VIEWER
from tests.stack import DemoStack

PROXY_SCOPE = "launch/patient patient/ImagingStudy.rs"
USER_SCOPE = "user/ImagingStudy.rs"


def elena_for_maya(stack: DemoStack) -> str:
    return stack.token(VIEWER, PROXY_SCOPE, patient="maya-alvarez", user="RelatedPerson/elena-for-maya")


def arjun_for_priya(stack: DemoStack) -> str:
    return stack.token(VIEWER, PROXY_SCOPE, patient="priya-raman", user="RelatedPerson/arjun-for-priya")


def dr_chen(stack: DemoStack) -> str:
    return stack.token(VIEWER, USER_SCOPE, user="Practitioner/dr-chen")


CASES = {
    "proxy": ("maya_withheld", elena_for_maya, "maya-alvarez"),
    "consent-proxy": ("priya_consent", arjun_for_priya, "priya-raman"),
    "consent-clinician": ("priya_consent", dr_chen, "priya-raman"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_withheld_study_is_not_found_on_any_route(
    request: pytest.FixtureRequest, http: httpx.Client, root: str, demo_stack: DemoStack, case: str
) -> None:
    fixture, mint, patient = CASES[case]
    target: Target = request.getfixturevalue(fixture)
    attack_every_route(http, root, mint(demo_stack), target, reaching_patient=patient)


@pytest.mark.parametrize("case", list(CASES))
def test_searches_for_the_patient_leave_the_withheld_study_out(
    request: pytest.FixtureRequest, http: httpx.Client, demo_stack: DemoStack, case: str
) -> None:
    fixture, mint, patient = CASES[case]
    target: Target = request.getfixturevalue(fixture)
    bearer = {"Authorization": f"Bearer {mint(demo_stack)}", "Origin": ORIGIN}
    expected = set(demo_stack.patient(patient)["studies"]) - {target.study}
    bundle = http.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": patient}, headers=bearer)
    assert bundle.status_code == 200, bundle.text
    found = {
        e["resource"]["id"] for e in bundle.json().get("entry", []) if e["resource"]["resourceType"] == "ImagingStudy"
    }
    assert found == expected
    assert_no_leak(bundle, target)
    for level in ("studies", "series", "instances"):
        answer = http.get(f"{demo_stack.dicomweb}/{level}", params={"PatientID": target.mrn}, headers=bearer)
        assert answer.status_code == 200, answer.text
        assert {d["0020000D"]["Value"][0] for d in json_of(answer)} == expected, level
        assert_no_leak(answer, target, asked=target.mrn)
        everything = http.get(f"{demo_stack.dicomweb}/{level}", headers=bearer)
        assert everything.status_code == 200, everything.text
        assert_no_leak(everything, target)
