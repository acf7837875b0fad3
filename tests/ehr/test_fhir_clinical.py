"""The clinical FHIR R4 server against a real sandbox: every resource type read and searched, under real tokens.

Tokens come from `mint_token`, the code behind `aperture ehr token`, run against the sandbox's data
folder with the sandbox's own URL so the token's `aud` is its FHIR base. The seed (aperture/ehr/seed.json)
gives the expectations: Maya has an ankle X-ray (7001) and a pelvic ultrasound withheld from her
mother's proxy access (7002); one of Priya's MRIs (7031) is restricted to Priya by consent; Dr. Chen's
panel is Walter, Priya and Maya.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aperture.ehr.config import EhrConfig
from aperture.ehr.mint import mint_token
from aperture.ehr.store import open_store
from tests.ehr.conftest import IMAGING_FHIR_BASE, Sandbox, jwks_file, register, start_sandbox

WADO_RS_BASE = "http://imaging.test/dicom-web"  # what the sandbox derives from IMAGING_FHIR_BASE
MRN = "http://aperture.example.org/fhir/sid/mrn"
ANKLE = "2.25.268441305134709541612117823451873091501"
PELVIS = "2.25.268441305134709541612117823451873091502"
PRIYA_MRI = "2.25.268441305134709541612117823451873091531"
TOMAS_KNEE = "2.25.268441305134709541612117823451873091541"


class Fhir:
    """A FHIR client holding one access token."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.base}/{path}", params=params, headers=self.headers)

    def search(self, resource_type: str, **params: str) -> dict[str, Any]:
        response = self.get(resource_type, **params)
        assert response.status_code == 200, response.text
        bundle: dict[str, Any] = response.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        assert bundle["link"][0]["relation"] == "self"
        assert bundle["link"][0]["url"].startswith(f"{self.base}/{resource_type}")
        return bundle

    def ids(self, resource_type: str, **params: str) -> list[str]:
        bundle = self.search(resource_type, **params)
        for entry in bundle.get("entry", []):
            assert entry["fullUrl"] == f"{self.base}/{resource_type}/{entry['resource']['id']}"
            assert entry["search"] == {"mode": "match"}
        return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


class Minter:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.config = EhrConfig(port=sandbox.server.port, data=sandbox.server.data, imaging_fhir_base=IMAGING_FHIR_BASE)

    def __call__(self, scope: str, *, patient: str | None = None, user: str | None = None,
                 client_id: str = "clinical-app") -> Fhir:  # fmt: skip
        engine = open_store(self.config.data)
        try:
            response = mint_token(engine, self.config, client_id=client_id, scope=scope, patient=patient, user=user)
        finally:
            engine.dispose()
        return Fhir(f"{self.sandbox.url}/fhir", str(response["access_token"]))


@pytest.fixture(scope="module")
def mint(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Minter:
    data = sandbox.server.data
    register(data, "--kind", "public", "--name", "Clinical app", "--client-id", "clinical-app",
             "--scope", "launch/patient openid fhirUser patient/*.* user/*.*",
             "--redirect-uri", "https://clinical.test/cb")  # fmt: skip
    jwks = jwks_file(tmp_path_factory.mktemp("clinical"), "clinical-1")
    register(data, "--kind", "backend", "--name", "Clinical pipeline", "--client-id", "clinical-backend",
             "--scope", "system/*.rs", "--jwks", str(jwks), "--patients", "walter-nguyen")  # fmt: skip
    return Minter(sandbox)


def test_patient_read_and_search_by_the_usual_parameters(mint: Minter) -> None:
    walter = mint("patient/*.rs", patient="walter-nguyen", user="Patient/walter-nguyen")
    patient = walter.get("Patient/walter-nguyen")
    assert patient.status_code == 200 and patient.headers["content-type"].startswith("application/fhir+json")
    assert patient.json()["identifier"][0]["system"] == MRN and patient.json()["identifier"][0]["value"] == "AGH-100377"
    assert walter.ids("Patient") == ["walter-nguyen"]  # confined to the token's patient
    for params in ({"identifier": f"{MRN}|AGH-100377"}, {"identifier": "AGH-100377"}, {"name": "walt"},
                   {"family": "nguyen"}, {"given": "Minh"}, {"birthdate": "1951-07-30"}, {"birthdate": "lt1960"},
                   {"_id": "walter-nguyen"}, {"name:exact": "Walter"}):  # fmt: skip
        assert walter.ids("Patient", **params) == ["walter-nguyen"], params
    for params in ({"birthdate": "ge1960"}, {"family": "Berg"}, {"identifier": f"{MRN}|AGH-100455"},
                   {"name:exact": "walter"}, {"identifier": "http://other.test/mrn|AGH-100377"}):  # fmt: skip
        assert walter.ids("Patient", **params) == [], params
    bundle = walter.search("Patient", identifier=f"{MRN}|AGH-100455")  # Tomas: confined, not revealed
    assert bundle["total"] == 0


def test_imaging_study_by_patient_and_study_uid_with_its_wado_rs_endpoint(mint: Minter) -> None:
    maya = mint("patient/ImagingStudy.rs", patient="maya-alvarez", user="Patient/maya-alvarez")
    assert maya.ids("ImagingStudy", patient="maya-alvarez") == ["agh-a-7001", "agh-a-7002"]
    assert maya.ids("ImagingStudy", patient="Patient/maya-alvarez") == ["agh-a-7001", "agh-a-7002"]
    assert maya.ids("ImagingStudy", subject=f"{maya.base}/Patient/maya-alvarez") == ["agh-a-7001", "agh-a-7002"]
    for params in ({"identifier": f"urn:oid:{ANKLE}"}, {"identifier": f"urn:dicom:uid|urn:oid:{ANKLE}"},
                   {"identifier": "AGH-A-7001"}, {"modality": "DX"},
                   {"modality": "http://dicom.nema.org/resources/ontology/DCM|DX"},
                   {"started": "2026-02"}, {"started": "lt2026-03-01"}):  # fmt: skip
        assert maya.ids("ImagingStudy", patient="maya-alvarez", **params) == ["agh-a-7001"], params
    assert maya.ids("ImagingStudy", identifier=f"urn:oid:{PELVIS}") == ["agh-a-7002"]
    assert maya.ids("ImagingStudy", endpoint=WADO_RS_BASE) == ["agh-a-7001", "agh-a-7002"]
    assert maya.ids("ImagingStudy", endpoint="http://elsewhere.test/dicom-web") == []
    included = maya.search("ImagingStudy", patient="maya-alvarez", _include="ImagingStudy:endpoint")
    assert included["total"] == 2

    study = maya.get("ImagingStudy/agh-a-7001").json()
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{ANKLE}"}
    assert {"system": "http://aperture.example.org/fhir/sid/accession", "value": "AGH-A-7001"}.items() <= (
        study["identifier"][1].items()
    )
    assert study["subject"] == {"reference": "Patient/maya-alvarez"} and study["started"] == "2026-02-03"
    assert study["modality"] == [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX"}]
    assert study["status"] == "available" and "lastUpdated" in study["meta"]
    (reference,) = study["endpoint"]
    endpoint = next(c for c in study["contained"] if f"#{c['id']}" == reference["reference"])
    assert endpoint["resourceType"] == "Endpoint" and endpoint["address"] == WADO_RS_BASE
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs" and endpoint["status"] == "active"
    assert endpoint["payloadType"][0]["coding"][0]["code"] == "any"
    assert endpoint["extension"][0]["valueBoolean"] is True


def test_diagnostic_report_names_its_study_by_uid(mint: Minter) -> None:
    maya = mint("patient/DiagnosticReport.rs patient/ImagingStudy.rs", patient="maya-alvarez",
                user="Patient/maya-alvarez")  # fmt: skip
    assert maya.ids("DiagnosticReport", patient="maya-alvarez") == ["report-agh-a-7001", "report-agh-a-7002"]
    for params in ({"category": "http://loinc.org|LP29684-5"}, {"code": "http://loinc.org|18748-4"},
                   {"category": "RAD"}):  # fmt: skip
        assert maya.ids("DiagnosticReport", subject="Patient/maya-alvarez", **params) == [
            "report-agh-a-7001", "report-agh-a-7002",
        ], params  # fmt: skip
    assert maya.ids("DiagnosticReport", date="2026-02") == ["report-agh-a-7001"]
    assert maya.ids("DiagnosticReport", date="ge2026-04-21") == ["report-agh-a-7002"]
    assert maya.ids("DiagnosticReport", code="http://loinc.org|0000-0") == []
    report = maya.get("DiagnosticReport/report-agh-a-7001").json()
    (reference,) = report["imagingStudy"]
    assert reference["identifier"] == {"system": "urn:dicom:uid", "value": f"urn:oid:{ANKLE}"}
    found = maya.ids("ImagingStudy", patient="maya-alvarez", identifier=reference["identifier"]["value"])
    assert [f"ImagingStudy/{i}" for i in found] == [reference["reference"]]


def test_service_request_related_person_and_practitioner(mint: Minter) -> None:
    elena = mint("user/*.rs", user="RelatedPerson/elena-for-maya")
    assert elena.ids("ServiceRequest", patient="maya-alvarez") == ["order-agh-a-7001"]  # the US is withheld
    assert elena.ids("ServiceRequest", identifier="AGH-A-7001") == ["order-agh-a-7001"]
    assert elena.ids("ServiceRequest", identifier="http://aperture.example.org/fhir/sid/accession|AGH-A-7001") == [
        "order-agh-a-7001"
    ]
    order = elena.get("ServiceRequest/order-agh-a-7001").json()
    assert order["identifier"][0]["value"] == "AGH-A-7001" and order["subject"] == {"reference": "Patient/maya-alvarez"}
    assert elena.ids("RelatedPerson", patient="maya-alvarez") == ["elena-for-maya"]
    related = elena.get("RelatedPerson/elena-for-maya").json()
    assert related["patient"] == {"reference": "Patient/maya-alvarez"}
    assert related["relationship"][0]["coding"][0]["code"] == "MTH"
    assert elena.get(order["requester"]["reference"]).json()["name"][0]["family"] == "Chen"
    assert elena.ids("Practitioner", family="chen") == ["dr-chen"]
    assert elena.ids("Practitioner", name="lin") == ["dr-chen"]


def test_a_patient_token_is_refused_another_patient_and_confined_in_searches(mint: Minter) -> None:
    walter = mint("patient/*.rs", patient="walter-nguyen", user="Patient/walter-nguyen")
    for path in ("Patient/tomas-berg", "ImagingStudy/agh-a-7041", "DiagnosticReport/report-agh-a-7041",
                 "ServiceRequest/order-agh-a-7041", "RelatedPerson/elena-for-maya"):  # fmt: skip
        refused = walter.get(path)
        assert refused.status_code == 403, path
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert refused.json()["issue"][0]["code"] == "forbidden"
    for resource_type, param in (("ImagingStudy", "patient"), ("DiagnosticReport", "subject"),
                                 ("ServiceRequest", "patient"), ("RelatedPerson", "patient")):  # fmt: skip
        refused = walter.get(resource_type, **{param: "tomas-berg"})
        assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    assert walter.get("ImagingStudy", patient="walter-nguyen,tomas-berg").status_code == 403
    assert walter.ids("ImagingStudy", identifier=f"urn:oid:{TOMAS_KNEE}") == []  # confined, not 403
    assert walter.ids("ImagingStudy") == ["agh-a-7021"]
    assert walter.ids("DiagnosticReport") == ["report-agh-a-7021"]
    assert walter.get("Patient/nobody-here").status_code == 404


def test_a_token_without_the_imaging_scope_reads_patient_but_not_imaging_study(mint: Minter) -> None:
    walter = mint("patient/Patient.rs", patient="walter-nguyen", user="Patient/walter-nguyen")
    assert walter.get("Patient/walter-nguyen").status_code == 200
    assert walter.ids("Patient") == ["walter-nguyen"]
    for path in ("ImagingStudy/agh-a-7021", "ImagingStudy", "DiagnosticReport", "Practitioner/dr-chen"):
        refused = walter.get(path, **({"patient": "walter-nguyen"} if "/" not in path else {}))
        assert refused.status_code == 403, path
        assert refused.json()["issue"][0]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("scope", "read", "search"),
    [
        ("patient/ImagingStudy.read", 200, 200),
        ("patient/ImagingStudy.*", 200, 200),
        ("patient/*.read", 200, 200),
        ("patient/*.*", 200, 200),
        ("patient/ImagingStudy.rs", 200, 200),
        ("patient/ImagingStudy.r", 200, 403),
        ("patient/ImagingStudy.s", 403, 200),
        ("patient/ImagingStudy.cud", 403, 403),
        ("patient/Patient.read", 403, 403),
    ],
)
def test_v1_and_v2_scope_forms(mint: Minter, scope: str, read: int, search: int) -> None:
    walter = mint(scope, patient="walter-nguyen", user="Patient/walter-nguyen")
    assert walter.get("ImagingStudy/agh-a-7021").status_code == read
    assert walter.get("ImagingStudy", patient="walter-nguyen").status_code == search


def test_user_tokens_reach_the_care_team_panel_and_the_proxy_child(mint: Minter) -> None:
    chen = mint("user/*.rs", user="Practitioner/dr-chen")
    assert chen.ids("Patient") == ["maya-alvarez", "walter-nguyen", "priya-raman"]
    assert chen.get("Patient/tomas-berg").status_code == 403
    assert chen.get("ImagingStudy", patient="elena-alvarez").status_code == 403
    assert chen.ids("ImagingStudy", patient="priya-raman") == ["agh-a-7032"]  # the MRI: Priya's consent
    assert chen.get("ImagingStudy/agh-a-7031").status_code == 404
    assert chen.ids("ImagingStudy", identifier=f"urn:oid:{PRIYA_MRI}") == []
    priya = mint("user/ImagingStudy.rs", user="Patient/priya-raman")
    assert priya.ids("ImagingStudy") == ["agh-a-7031", "agh-a-7032"]

    elena = mint("user/*.read", patient="maya-alvarez", user="RelatedPerson/elena-for-maya")
    assert elena.ids("ImagingStudy", patient="maya-alvarez") == ["agh-a-7001"]  # not the withheld ultrasound
    assert elena.get("ImagingStudy/agh-a-7002").status_code == 404
    assert elena.get("DiagnosticReport/report-agh-a-7002").status_code == 404
    assert elena.ids("DiagnosticReport", patient="maya-alvarez") == ["report-agh-a-7001"]
    assert elena.get("Patient/elena-alvarez").status_code == 403  # as a proxy she reaches Maya only
    assert elena.ids("Patient") == ["maya-alvarez"]


def test_a_backend_token_reaches_its_pre_authorized_patients(mint: Minter) -> None:
    service = mint("system/*.rs", client_id="clinical-backend")
    assert service.get("Patient/walter-nguyen").status_code == 200
    assert service.get("Patient/tomas-berg").status_code == 403
    assert service.ids("ImagingStudy") == ["agh-a-7021"]
    assert service.get("ImagingStudy", patient="tomas-berg").status_code == 403
    assert service.ids("Practitioner") == ["dr-chen"]


def test_no_valid_token_is_401_with_a_bearer_challenge(mint: Minter) -> None:
    anonymous = Fhir(mint("patient/*.rs", patient="walter-nguyen").base, None)
    for path in ("Patient/walter-nguyen", "ImagingStudy", "DiagnosticReport/report-agh-a-7021"):
        refused = anonymous.get(path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer"), path
        assert refused.json()["issue"][0]["code"] == "login"
    bogus = Fhir(anonymous.base, "not-a-token").get("ImagingStudy", patient="walter-nguyen")
    assert bogus.status_code == 401 and 'error="invalid_token"' in bogus.headers["www-authenticate"]


def test_paging_errors_and_post_search(mint: Minter) -> None:
    chen = mint("user/*.rs", user="Practitioner/dr-chen")
    first = chen.search("Patient", _count="2")
    assert first["total"] == 3 and len(first["entry"]) == 2
    (following,) = [link["url"] for link in first["link"] if link["relation"] == "next"]
    second = httpx.get(following, headers=chen.headers).json()
    assert [e["resource"]["id"] for e in second["entry"]] == ["priya-raman"]
    assert not [link for link in second["link"] if link["relation"] == "next"]
    assert "entry" not in chen.search("Patient", _count="0") or not chen.search("Patient", _count="0")["entry"]
    for params in ({"colour": "blue"}, {"birthdate": "yesterday"}, {"name:missing": "true"}, {"_count": "many"},
                   {"_include": "ImagingStudy:subject"}):  # fmt: skip
        refused = chen.get("Patient", **params)
        assert refused.status_code == 400 and refused.json()["issue"][0]["code"] == "invalid", params
    unheld = chen.get("Goal", patient="walter-nguyen")  # a type this server does not hold: says where the list is
    assert unheld.status_code == 404
    assert unheld.json()["issue"][0]["diagnostics"] == f"This server has no Goal resources; see {chen.base}/metadata."
    posted = httpx.post(f"{chen.base}/ImagingStudy/_search", data={"patient": "walter-nguyen"}, headers=chen.headers)
    assert posted.status_code == 200 and [e["resource"]["id"] for e in posted.json()["entry"]] == ["agh-a-7021"]


def test_metadata_lists_what_is_supported(mint: Minter) -> None:
    statement = httpx.get(f"{mint.sandbox.url}/fhir/metadata").json()
    (rest,) = statement["rest"]
    supported = {r["type"]: {p["name"] for p in r["searchParam"]} for r in rest["resource"]}
    assert set(supported) == {"Patient", "RelatedPerson", "Practitioner", "ServiceRequest", "DiagnosticReport",
                              "ImagingStudy", "AllergyIntolerance", "Condition", "MedicationRequest", "Observation",
                              "Encounter", "DocumentReference", "Procedure"}  # fmt: skip
    assert {"identifier", "name", "family", "given", "birthdate", "_id"} <= supported["Patient"]
    assert {"patient", "subject", "identifier", "started", "modality", "endpoint", "_count"} <= supported[
        "ImagingStudy"
    ]
    assert {"patient", "subject", "category", "code", "date"} <= supported["DiagnosticReport"]
    oauth = {e["url"]: e["valueUri"] for e in rest["security"]["extension"][0]["extension"]}
    assert oauth["token"] == f"{mint.sandbox.url}/auth/token"


@pytest.fixture
def configured_sandbox(tmp_path: Path) -> Iterator[tuple[str, Fhir]]:
    data = tmp_path / "data"
    register(data, "--kind", "public", "--name", "Viewer", "--client-id", "viewer",
             "--scope", "patient/ImagingStudy.rs", "--redirect-uri", "https://viewer.test/cb")  # fmt: skip
    wado = "https://pacs.test/wado-rs"
    server = start_sandbox(data, config=f'[ehr]\nimaging_dicomweb_base = "{wado}"\n')
    try:
        config = EhrConfig(port=server.port, data=data, imaging_fhir_base=IMAGING_FHIR_BASE)
        engine = open_store(data)
        try:
            scope = "patient/ImagingStudy.rs"
            token = mint_token(engine, config, client_id="viewer", scope=scope, patient="tomas-berg")
        finally:
            engine.dispose()
        yield wado, Fhir(f"{server.url}/fhir", str(token["access_token"]))
    finally:
        server.stop()


def test_the_endpoint_address_is_the_configured_wado_rs_base(configured_sandbox: tuple[str, Fhir]) -> None:
    wado, tomas = configured_sandbox
    (entry,) = tomas.search("ImagingStudy", patient="tomas-berg")["entry"]
    assert entry["resource"]["contained"][0]["address"] == wado
    assert tomas.ids("ImagingStudy", endpoint=wado) == ["agh-a-7041"]


def test_fhir_answers_and_errors_are_not_kept_in_shared_caches(mint: Minter) -> None:
    walter = mint("patient/*.rs", patient="walter-nguyen", user="Patient/walter-nguyen")
    answers = [
        walter.get("Patient/walter-nguyen"),  # 200
        walter.get("ImagingStudy", patient="walter-nguyen"),  # 200 Bundle
        walter.get("Patient/tomas-berg"),  # 403
        walter.get("Patient/nobody"),  # 404
        walter.get("Patient", foo="1"),  # 400
        walter.get("metadata"),
        Fhir(walter.base, None).get("Patient/walter-nguyen"),  # 401
    ]
    for response in answers:
        directives = {d.strip() for d in response.headers.get("cache-control", "").split(",")}
        assert {"private", "no-store"} <= directives, (response.status_code, response.headers.get("cache-control"))
    not_allowed = httpx.post(f"{walter.base}/Patient/walter-nguyen", headers=walter.headers)  # 405, OAuth shape
    assert not_allowed.status_code == 405 and "no-store" in not_allowed.headers["cache-control"]


@pytest.mark.parametrize(
    "resource_type, name, value",
    [
        ("Patient", "_count", "²"),  # '²'.isdigit() is True, int('²') fails
        ("Patient", "_offset", "²"),
        ("Patient", "_count", "٥"),  # an Arabic-Indic five: a digit to Python, not to FHIR
        ("Patient", "_count", "9" * 5000),  # past int()'s 4300-digit limit
        ("Patient", "_offset", "1" * 40),
        ("ImagingStudy", "started", "9999-12-31"),  # the day after is past datetime.max
        ("Patient", "birthdate", "9999-12-31"),
        ("ImagingStudy", "started", "0001-01-01T00:00:00+14:00"),  # before datetime.min in UTC
        ("ImagingStudy", "started", "9999-12-31T23:59:59-14:00"),
        ("ImagingStudy", "started", "9999-12-31T23:59Z"),
        ("ImagingStudy", "_lastUpdated", "ge9999-12-31"),
        ("DiagnosticReport", "date", "le9999-12-31T23:59:59Z"),
        ("ServiceRequest", "authored", "9999"),
        ("ImagingStudy", "started", "２０２６"),  # fullwidth digits
        ("ImagingStudy", "started", "0000"),
        ("Patient", "birthdate", "ge"),
        ("Patient", "name", ",".join(["a"] * 1200)),  # more ORed values than SQLite's expression depth
    ],  # fmt: skip
)
def test_malformed_parameters_are_400_naming_the_parameter(
    mint: Minter, resource_type: str, name: str, value: str
) -> None:
    """Issue 12: these were 500s. The OperationOutcome names the parameter and says what it takes."""
    chen = mint("user/*.rs", user="Practitioner/dr-chen")
    refused = chen.get(resource_type, **{name: value})
    assert refused.status_code == 400, refused.text
    (issue,) = refused.json()["issue"]
    assert issue["code"] == "invalid"
    assert issue["diagnostics"].startswith(f"{name}:"), issue["diagnostics"]


def test_oversized_searches_are_400_not_500(mint: Minter) -> None:
    chen = mint("user/*.rs", user="Practitioner/dr-chen")
    url = f"{chen.base}/Patient/_search"
    form = {**chen.headers, "Content-Type": "application/x-www-form-urlencoded"}
    long_name = httpx.post(url, content="name=" + "a" * 60000, headers=form)  # past SQLite's LIKE pattern limit
    assert long_name.status_code == 400 and long_name.json()["issue"][0]["diagnostics"].startswith("name:")
    many = httpx.post(url, content="&".join(["name=a"] * 1001), headers=form)
    assert many.status_code == 400 and "parameters" in many.json()["issue"][0]["diagnostics"]
    huge = httpx.post(url, content="_id=" + ",".join(["a"] * 40000), headers=form)
    assert huge.status_code == 400, huge.text
    assert chen.get("Patient", _count="2").status_code == 200  # the ordinary search still works


def test_a_method_the_fhir_server_does_not_serve_is_an_operation_outcome(mint: Minter) -> None:
    walter = mint("patient/*.rs", patient="walter-nguyen", user="Patient/walter-nguyen")
    answer = httpx.post(f"{walter.base}//_search", headers=walter.headers)  # was 405 in OAuth shape (fuzz test)
    assert answer.status_code == 405 and answer.headers["content-type"].startswith("application/fhir+json")
    (issue,) = answer.json()["issue"]
    assert issue["code"] == "not-supported" and "POST is not supported" in issue["diagnostics"]


def test_search_by_get_at_underscore_search_and_a_405_that_lists_both_methods(mint: Minter) -> None:
    walter = mint("patient/*.rs", patient="walter-nguyen", user="Patient/walter-nguyen")
    found = walter.get("Patient/_search")  # was read as the Patient with id "_search"
    assert found.status_code == 200 and found.json()["type"] == "searchset", found.text
    assert [entry["resource"]["id"] for entry in found.json()["entry"]] == ["walter-nguyen"]
    put = httpx.put(f"{walter.base}/Patient/_search", headers=walter.headers)
    assert put.status_code == 405 and {"GET", "POST"} <= {m.strip() for m in put.headers["allow"].split(",")}
