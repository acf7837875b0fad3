"""The same MRN value under another issuer is another person: Maya's token never reaches that study.

The suite's own store holds Maya's studies (PatientID AGH-100234, IssuerOfPatientID APERTURE-GH,
the issuer her EHR identifier system maps to) and an impostor's CT with PatientID AGH-100234 under
IssuerOfPatientID OTHER-HOSPITAL. The policy keys patients by (PatientID, issuer)
(`aperture.auth.policy.identities`); a value alone never names a patient.
"""

from __future__ import annotations

import httpx
import pytest

from tests.security.attacks import ORIGIN, assert_no_leak, attack_every_route, json_of
from tests.security.conftest import OwnStore, patient_token
from tests.stack import DemoStack

MRN_SYSTEM = "http://aperture.example.org/fhir/sid/mrn"


def test_the_impostors_study_is_not_found_on_any_route(
    http: httpx.Client, demo_stack: DemoStack, own_store: OwnStore
) -> None:
    token = patient_token(demo_stack, "maya-alvarez")
    attack_every_route(http, own_store.url, token, own_store.impostor, reaching_patient="maya-alvarez", deletes=True)


@pytest.mark.parametrize("level", ["studies", "series", "instances"])
@pytest.mark.parametrize(
    "query",
    ["PatientID=AGH-100234", "PatientID=AGH-100234&IssuerOfPatientID=OTHER-HOSPITAL",
     "IssuerOfPatientID=OTHER-HOSPITAL", "PatientID=AGH-10023*", "PatientName=Quist*", "", "00100021=OTHER-HOSPITAL"],
    ids=["mrn", "mrn-and-issuer", "issuer", "wildcard", "name", "everything", "issuer-tag"],
)  # fmt: skip
def test_qido_by_the_shared_mrn_finds_only_mayas_studies(
    http: httpx.Client, demo_stack: DemoStack, own_store: OwnStore, level: str, query: str
) -> None:
    token = patient_token(demo_stack, "maya-alvarez")
    answer = http.get(
        f"{own_store.url}/dicom-web/{level}?{query}&includefield=all",
        headers={"Authorization": f"Bearer {token}", "Origin": ORIGIN},
    )
    assert answer.status_code == 200, answer.text[:300]
    for document in json_of(answer) or []:
        assert document["0020000D"]["Value"][0] in demo_stack.patient("maya-alvarez")["studies"], document
        assert document.get("00100021", {}).get("Value") in (None, ["APERTURE-GH"]), document
    assert_no_leak(answer, own_store.impostor, asked="OTHER-HOSPITAL Quist")
    if query in ("PatientID=AGH-100234", ""):
        assert {d["0020000D"]["Value"][0] for d in json_of(answer)} == set(
            demo_stack.patient("maya-alvarez")["studies"]
        )


@pytest.mark.parametrize(
    "params", [{"patient": "maya-alvarez"}, {"patient.identifier": f"{MRN_SYSTEM}|AGH-100234"}], ids=["id", "mrn"]
)
def test_fhir_search_for_maya_leaves_the_impostor_out(
    http: httpx.Client, demo_stack: DemoStack, own_store: OwnStore, params: dict[str, str]
) -> None:
    token = patient_token(demo_stack, "maya-alvarez")
    bundle = http.get(
        f"{own_store.url}/fhir/ImagingStudy",
        params=params,
        headers={"Authorization": f"Bearer {token}", "Origin": ORIGIN},
    )
    assert bundle.status_code == 200, bundle.text
    found = {
        e["resource"]["id"] for e in bundle.json().get("entry", []) if e["resource"]["resourceType"] == "ImagingStudy"
    }
    assert found == set(demo_stack.patient("maya-alvarez")["studies"])
    assert_no_leak(bundle, own_store.impostor)
