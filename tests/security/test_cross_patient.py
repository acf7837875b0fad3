"""Another patient's data, asked for by a patient's own valid token: never served, never hinted at.

Maya's token (patient/ImagingStudy.rs) aims at Walter's CT, whose UIDs were learned from Walter's
own metadata, on every route of the route tables; then asks for Walter by FHIR patient id, by
MRN (QIDO PatientID, FHIR patient.identifier) and by name.
"""

from __future__ import annotations

import httpx
import pytest

from tests.security.attacks import ORIGIN, Target, assert_cors, assert_no_leak, attack_every_route, json_of
from tests.security.conftest import patient_token
from tests.stack import DemoStack

MRN_SYSTEM = "http://aperture.example.org/fhir/sid/mrn"
MAYA_STUDY = "2.25.268441305134709541612117823451873091501"


def test_another_patients_study_on_every_route_is_not_found(
    http: httpx.Client, root: str, maya_token: str, walter: Target
) -> None:
    made = attack_every_route(http, root, maya_token, walter, reaching_patient="maya-alvarez")
    assert made >= 40


def test_another_patients_series_and_instances_under_ones_own_study_are_not_found(
    http: httpx.Client, root: str, maya_token: str, walter: Target
) -> None:
    """Maya's study UID in the path (she may read it), Walter's series and SOP Instance UIDs below it:
    a server that checks the study and then fetches the instance by its own UID would serve Walter."""
    attack_every_route(http, root, maya_token, walter.under(MAYA_STUDY), reaching_patient="maya-alvarez")


@pytest.mark.parametrize(
    "patient", ["walter-nguyen", "Patient/walter-nguyen", "no-such-patient"], ids=["id", "reference", "unknown"]
)
def test_fhir_search_for_someone_else_is_forbidden(
    http: httpx.Client, demo_stack: DemoStack, maya_token: str, walter: Target, patient: str
) -> None:
    answer = http.get(
        f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": patient},
        headers={"Authorization": f"Bearer {maya_token}", "Origin": ORIGIN},
    )  # fmt: skip
    assert answer.status_code == 403, answer.text
    assert answer.json()["issue"][0]["code"] == "forbidden"
    assert_cors(answer)
    assert_no_leak(answer, walter)


def test_fhir_search_by_someone_elses_mrn_is_forbidden(
    http: httpx.Client, demo_stack: DemoStack, maya_token: str, walter: Target
) -> None:
    answer = http.get(
        f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient.identifier": f"{MRN_SYSTEM}|{walter.mrn}"},
        headers={"Authorization": f"Bearer {maya_token}", "Origin": ORIGIN},
    )  # fmt: skip
    assert answer.status_code == 403, answer.text
    assert_cors(answer)
    assert_no_leak(answer, walter, asked=walter.mrn)


@pytest.mark.parametrize("level", ["studies", "series", "instances", f"studies/{MAYA_STUDY}/series",
                                   f"studies/{MAYA_STUDY}/instances"])  # fmt: skip
@pytest.mark.parametrize("form", ["PatientID={mrn}", "00100020={mrn}", "PatientID={own}\\{mrn}",
                                  "PatientID={own}&PatientID={mrn}", "PatientID={mrn}&00100020={own}"],
                         ids=["keyword", "tag", "list", "repeated", "keyword-and-tag"])  # fmt: skip
def test_qido_by_someone_elses_patient_id_is_forbidden(
    http: httpx.Client, demo_stack: DemoStack, maya_token: str, walter: Target, level: str, form: str
) -> None:
    query = form.format(mrn=walter.mrn, own="AGH-100234")
    answer = http.get(
        f"{demo_stack.dicomweb}/{level}?{query}", headers={"Authorization": f"Bearer {maya_token}", "Origin": ORIGIN}
    )
    assert answer.status_code == 403, f"{level}?{query}: {answer.status_code} {answer.text[:200]}"
    assert_cors(answer)
    assert_no_leak(answer, walter, asked=walter.mrn)


@pytest.mark.parametrize("query", ["PatientName=Nguyen*", "PatientID=AGH-1003*", "PatientID=*",
                                   "AccessionNumber=AGH-A-7021", "00100010=*Walter*"])  # fmt: skip
@pytest.mark.parametrize("level", ["studies", "series", "instances"])
def test_qido_by_pattern_finds_only_ones_own_studies(
    http: httpx.Client, demo_stack: DemoStack, maya_token: str, walter: Target, level: str, query: str
) -> None:
    answer = http.get(
        f"{demo_stack.dicomweb}/{level}?{query}&includefield=all",
        headers={"Authorization": f"Bearer {maya_token}", "Origin": ORIGIN},
    )
    assert answer.status_code == 200, answer.text
    for document in json_of(answer):
        assert document["00100020"]["Value"] == ["AGH-100234"], document
    assert_no_leak(answer, walter, asked="AGH-A-7021")


def test_a_validator_learned_by_the_owner_gets_no_304_for_another_token(
    http: httpx.Client, demo_stack: DemoStack, maya_token: str, walter: Target
) -> None:
    """Walter's own answer carries an ETag and `Cache-Control: private`; Maya sending that ETag gets the
    404 of a study that does not exist, never a 304 that would confirm it (and its content) to her."""
    own = patient_token(demo_stack, "walter-nguyen")
    series, sop = walter.instances[0]
    frame = f"{demo_stack.dicomweb}/studies/{walter.study}/series/{series}/instances/{sop}/frames/1"
    for url in (f"{demo_stack.dicomweb}/studies/{walter.study}/metadata", frame):
        first = http.get(url, headers={"Authorization": f"Bearer {own}"})
        assert first.status_code == 200, first.text
        assert first.headers["cache-control"] == "private" and "Authorization" in first.headers["vary"]
        etag = first.headers["etag"]
        again = http.get(url, headers={"Authorization": f"Bearer {own}", "If-None-Match": etag})
        assert again.status_code == 304  # the validator works for its owner
        other = http.get(url, headers={"Authorization": f"Bearer {maya_token}", "If-None-Match": etag})
        assert other.status_code == 404, other.text
        assert "etag" not in other.headers
        assert_no_leak(other, walter)
