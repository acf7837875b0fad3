"""The chart an app reads on start-up (AllergyIntolerance, Condition, MedicationRequest, Observation, Encounter,
DocumentReference, Procedure) against a real sandbox, under real tokens.

The seed (aperture/ehr/seed.json, `clinical`) gives the expectations. Walter's chest CT was done without
contrast: he is allergic to iodinated contrast and his eGFR fell to 52. Maya's ankle sprain came to the
emergency department; her pelvic ultrasound visit (cyst, pregnancy test) is withheld from her mother's proxy
access with the study. Priya's migraine visit, labs and naproxen are restricted to her by consent with her
brain MRI; her bronchitis visit is not. Elena has two allergies and nothing else; Tomas has no Observation.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from aperture.ehr.errors import EhrError
from aperture.ehr.fhir.clinical import chart_resource, check_ties
from aperture.ehr.fhir.resources import Record
from aperture.ehr.people import load_directory
from tests.ehr.conftest import Sandbox, jwks_file, register
from tests.ehr.test_fhir_clinical import Fhir, Minter

WALTER_CT = "2.25.268441305134709541612117823451873091521"
CHART = ["AllergyIntolerance", "Condition", "MedicationRequest", "Observation", "Encounter", "DocumentReference",
         "Procedure"]  # fmt: skip
PATIENTS = ["maya-alvarez", "elena-alvarez", "walter-nguyen", "priya-raman", "tomas-berg"]
ALLERGY_STATUS = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"


class ChartMinter(Minter):
    """Tokens of this module's clients (the other FHIR test module registers its own)."""

    def token(self, scope: str, *, patient: str | None = None, user: str | None = None,
              client_id: str = "chart-app") -> Fhir:  # fmt: skip
        return self(scope, patient=patient, user=user, client_id=client_id)

    def patient(self, patient_id: str, scope: str = "patient/*.rs") -> Fhir:
        return self.token(scope, patient=patient_id, user=f"Patient/{patient_id}")


@pytest.fixture(scope="module")
def mint(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> ChartMinter:
    data = sandbox.server.data
    app = [
        "--kind",
        "public",
        "--name",
        "Chart app",
        "--client-id",
        "chart-app",
        "--redirect-uri",
        "https://chart.test/cb",
    ]
    register(data, *app, "--scope", "launch/patient openid fhirUser patient/*.* user/*.*")
    jwks = jwks_file(tmp_path_factory.mktemp("chart"), "chart-1")
    backends = {"chart-everyone": ["--patients", *PATIENTS], "chart-one-study": ["--studies", WALTER_CT]}
    for client_id, reach in backends.items():  # every patient; Walter's chest CT alone
        register(data, "--kind", "backend", "--name", client_id, "--client-id", client_id, "--scope", "system/*.rs",
                 "--jwks", str(jwks), *reach)  # fmt: skip
    return ChartMinter(sandbox)


def test_each_type_is_searched_by_patient_with_the_seeded_chart(mint: ChartMinter) -> None:
    walter = mint.patient("walter-nguyen")
    expected = {
        "AllergyIntolerance": ["walter-contrast-allergy"],
        "Condition": ["walter-copd", "walter-hypertension", "walter-ckd", "walter-lung-nodule"],
        "MedicationRequest": ["walter-lisinopril", "walter-acetaminophen"],
        "Observation": ["walter-creatinine-2025-07", "walter-egfr-2025-07", "walter-creatinine-2026-01",
                        "walter-egfr-2026-01", "walter-spo2-2026-01", "walter-bp-2026-01"],
        "Encounter": ["encounter-agh-a-7021", "walter-follow-up"],
        "DocumentReference": ["walter-progress-note-2026-01", "document-agh-a-7021"],
        "Procedure": ["procedure-agh-a-7021"],
    }  # fmt: skip
    for resource_type, ids in expected.items():
        assert walter.ids(resource_type, patient="Patient/walter-nguyen") == ids, resource_type
        assert walter.ids(resource_type, patient="walter-nguyen") == ids, resource_type
        assert walter.ids(resource_type) == ids, resource_type  # no patient: confined to his own
        assert walter.search(resource_type, patient="walter-nguyen")["total"] == len(ids)
        if resource_type != "AllergyIntolerance":
            assert walter.ids(resource_type, subject=f"{walter.base}/Patient/walter-nguyen") == ids, resource_type


def test_a_patient_with_nothing_of_a_type_gets_an_empty_searchset(mint: ChartMinter) -> None:
    empty = {"maya-alvarez": ["AllergyIntolerance"], "elena-alvarez": ["Condition", "MedicationRequest", "Observation"],
             "tomas-berg": ["AllergyIntolerance", "Observation"]}  # fmt: skip
    for patient_id, types in empty.items():
        fhir = mint.patient(patient_id)
        for resource_type in types:
            bundle = fhir.search(resource_type, patient=patient_id)  # 200, checked by search()
            assert bundle["total"] == 0 and not bundle.get("entry"), (patient_id, resource_type)


def test_read_by_id_returns_a_resource_of_the_patient_with_its_last_updated(mint: ChartMinter) -> None:
    walter = mint.patient("walter-nguyen")
    reads = {"AllergyIntolerance": "walter-contrast-allergy", "Condition": "walter-lung-nodule",
             "MedicationRequest": "walter-lisinopril", "Observation": "walter-egfr-2026-01",
             "Encounter": "encounter-agh-a-7021", "DocumentReference": "document-agh-a-7021",
             "Procedure": "procedure-agh-a-7021"}  # fmt: skip
    for resource_type, resource_id in reads.items():
        answer = walter.get(f"{resource_type}/{resource_id}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/fhir+json")
        resource = answer.json()
        assert resource["resourceType"] == resource_type and resource["id"] == resource_id
        assert resource["meta"]["lastUpdated"].endswith("Z")
        element = "patient" if resource_type == "AllergyIntolerance" else "subject"
        assert resource[element] == {"reference": "Patient/walter-nguyen"}
        assert "_study" not in resource and "_why" not in resource  # the seed's notes stay in the seed
    allergy = walter.get("AllergyIntolerance/walter-contrast-allergy").json()
    assert allergy["code"]["coding"][0] == {"system": SCT, "code": "293637006", "display": "Allergy to contrast media"}
    assert allergy["criticality"] == "high"
    procedure = walter.get("Procedure/procedure-agh-a-7021").json()
    assert (
        procedure["code"]["coding"][0]["code"] == "77477000"
        and procedure["code"]["text"] == "CT chest without contrast"
    )
    assert procedure["encounter"] == {"reference": "Encounter/encounter-agh-a-7021"}
    assert procedure["reasonReference"] == [{"reference": "Condition/walter-lung-nodule"}]
    assert procedure["basedOn"] == [{"reference": "ServiceRequest/order-agh-a-7021"}]
    assert walter.get(procedure["basedOn"][0]["reference"]).status_code == 200
    document = walter.get("DocumentReference/document-agh-a-7021").json()
    text = base64.b64decode(document["content"][0]["attachment"]["data"]).decode()
    assert text.startswith("CT chest without contrast, 2026-01-17")
    assert document["context"]["related"] == [{"reference": "DiagnosticReport/report-agh-a-7021"}]
    assert walter.get("Condition/nobody-here").status_code == 404


# (patient, type, parameters, the ids found): each would fail if the parameter were ignored.
FILTERS = [
    ("elena-alvarez", "AllergyIntolerance", {"clinical-status": "resolved"}, ["elena-egg-allergy"]),
    ("elena-alvarez", "AllergyIntolerance", {"clinical-status": f"{ALLERGY_STATUS}|active"},
     ["elena-penicillin-allergy"]),
    ("elena-alvarez", "AllergyIntolerance", {"clinical-status": "http://other.test|active"}, []),
    ("elena-alvarez", "AllergyIntolerance", {"clinical-status": "active,resolved"},
     ["elena-penicillin-allergy", "elena-egg-allergy"]),
    ("priya-raman", "Condition", {"category": "encounter-diagnosis"}, ["priya-bronchitis"]),
    ("priya-raman", "Condition", {"category": "problem-list-item"}, ["priya-migraine"]),
    ("priya-raman", "Condition", {"clinical-status": "resolved"}, ["priya-bronchitis"]),
    ("priya-raman", "Condition", {"code": f"{SCT}|4473006"}, ["priya-migraine"]),
    ("priya-raman", "Condition", {"code": "10509002"}, ["priya-bronchitis"]),
    ("priya-raman", "Condition", {"code": f"{LOINC}|"}, []),
    ("walter-nguyen", "Condition", {"onset-date": "lt2020"}, ["walter-copd", "walter-hypertension"]),
    ("walter-nguyen", "Condition", {"onset-date": "2025-07"}, ["walter-ckd", "walter-lung-nodule"]),
    ("walter-nguyen", "MedicationRequest", {"intent": "plan"}, ["walter-acetaminophen"]),
    ("walter-nguyen", "MedicationRequest", {"intent": "order,proposal"}, ["walter-lisinopril"]),
    ("priya-raman", "MedicationRequest", {"status": "completed"}, ["priya-acetaminophen"]),
    ("priya-raman", "MedicationRequest", {"status": "active"}, ["priya-naproxen"]),
    ("walter-nguyen", "MedicationRequest", {"authoredon": "ge2026-01-01"}, ["walter-acetaminophen"]),
    ("walter-nguyen", "MedicationRequest", {"authoredon": "2024-05"}, ["walter-lisinopril"]),
    ("walter-nguyen", "Observation", {"category": "vital-signs"}, ["walter-spo2-2026-01", "walter-bp-2026-01"]),
    ("walter-nguyen", "Observation", {"code": f"{LOINC}|98979-8"}, ["walter-egfr-2025-07", "walter-egfr-2026-01"]),
    ("walter-nguyen", "Observation", {"code": "2160-0", "date": "ge2026"}, ["walter-creatinine-2026-01"]),
    ("walter-nguyen", "Observation", {"date": "lt2026-01-01"}, ["walter-creatinine-2025-07", "walter-egfr-2025-07"]),
    ("walter-nguyen", "Observation", {"status": "preliminary,amended"}, []),
    ("maya-alvarez", "Observation", {"status": "final", "category": "laboratory"}, ["maya-hcg-2026-04"]),
    ("walter-nguyen", "Encounter", {"status": "planned"}, ["walter-follow-up"]),
    ("walter-nguyen", "Encounter", {"date": "ge2027-06-01"}, ["walter-follow-up"]),  # no end: still open
    ("walter-nguyen", "Encounter", {"date": "2026-01-17"}, ["encounter-agh-a-7021"]),
    ("maya-alvarez", "Encounter", {"class": "EMER"}, ["encounter-agh-a-7001"]),
    ("maya-alvarez", "Encounter", {"class": "http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB"},
     ["encounter-agh-a-7002"]),
    ("maya-alvarez", "Encounter", {"type": f"{SCT}|50849002"}, ["encounter-agh-a-7001"]),
    ("walter-nguyen", "DocumentReference", {"type": f"{LOINC}|11506-3"}, ["walter-progress-note-2026-01"]),
    ("walter-nguyen", "DocumentReference", {"type": "18748-4"}, ["document-agh-a-7021"]),
    ("walter-nguyen", "DocumentReference", {"category": f"{LOINC}|LP29684-5"}, ["document-agh-a-7021"]),
    ("walter-nguyen", "DocumentReference", {"date": "lt2026-01-17T12:00:00Z"}, ["walter-progress-note-2026-01"]),
    ("walter-nguyen", "DocumentReference", {"status": "superseded"}, []),
    ("priya-raman", "Procedure", {"code": f"{SCT}|113091000"}, ["procedure-agh-a-7031"]),
    ("priya-raman", "Procedure", {"date": "2026-03-12"}, ["procedure-agh-a-7032"]),
    ("priya-raman", "Procedure", {"status": "not-done"}, []),
    ("walter-nguyen", "Condition", {"_id": "walter-copd,walter-ckd"}, ["walter-copd", "walter-ckd"]),
    ("walter-nguyen", "Procedure", {"_lastUpdated": "lt2001"}, []),
]  # fmt: skip


FILTER_IDS = [f"{t}-{'&'.join(f'{k}={v}' for k, v in p.items())}" for _, t, p, _ in FILTERS]


@pytest.mark.parametrize(("patient_id", "resource_type", "params", "expected"), FILTERS, ids=FILTER_IDS)
def test_each_parameter_filters(
    mint: ChartMinter, patient_id: str, resource_type: str, params: dict[str, str], expected: list[str]
) -> None:
    fhir = mint.patient(patient_id)
    assert fhir.ids(resource_type, patient=patient_id, **params) == expected


def test_last_updated_and_count(mint: ChartMinter) -> None:
    walter = mint.patient("walter-nguyen")
    assert len(walter.ids("Observation", _lastUpdated="gt2001")) == 6
    page = walter.search("Observation", patient="walter-nguyen", _count="4")
    assert page["total"] == 6 and len(page["entry"]) == 4
    (following,) = [link["url"] for link in page["link"] if link["relation"] == "next"]
    rest = httpx.get(following, headers=walter.headers).json()
    assert [e["resource"]["id"] for e in rest["entry"]] == ["walter-spo2-2026-01", "walter-bp-2026-01"]


def test_unknown_parameters_and_bad_values_are_400_as_for_the_other_types(mint: ChartMinter) -> None:
    walter = mint.patient("walter-nguyen")
    for resource_type, params, named in [
        ("Condition", {"severity": "x"}, "'severity'"),
        ("AllergyIntolerance", {"subject": "walter-nguyen"}, "'subject'"),  # AllergyIntolerance has only patient
        ("Observation", {"_sort": "-date"}, "'_sort'"),
        ("Condition", {"onset-date": "yesterday"}, "onset-date:"),
        ("MedicationRequest", {"authoredon": "ge2026-13"}, "authoredon:"),
        ("Encounter", {"status:not": "finished"}, "status:not"),
        ("Procedure", {"_revinclude": "Provenance:target"}, "'_revinclude'"),
    ]:
        refused = walter.get(resource_type, patient="walter-nguyen", **params)
        assert refused.status_code == 400, (resource_type, params, refused.text)
        (issue,) = refused.json()["issue"]
        assert issue["code"] == "invalid" and named in issue["diagnostics"], issue["diagnostics"]


def test_another_patient_is_403_and_searches_without_patient_are_confined(mint: ChartMinter) -> None:
    walter = mint.patient("walter-nguyen")
    for resource_type in CHART:
        refused = walter.get(resource_type, patient="tomas-berg")
        assert refused.status_code == 403 and refused.json()["issue"][0]["code"] == "forbidden", resource_type
        assert walter.get(resource_type, patient="walter-nguyen,tomas-berg").status_code == 403
    assert walter.get("Condition", subject="Patient/tomas-berg").status_code == 403
    for path in ("Condition/tomas-meniscus-tear", "MedicationRequest/tomas-naproxen", "Encounter/encounter-agh-a-7041",
                 "Procedure/procedure-agh-a-7041", "DocumentReference/document-agh-a-7041",
                 "AllergyIntolerance/elena-penicillin-allergy", "Observation/maya-weight-2026-02"):  # fmt: skip
        assert walter.get(path).status_code == 403, path
    assert walter.ids("Condition", code="239720000") == []  # Tomas's meniscus tear: confined, not revealed
    assert walter.ids("Procedure", _id="procedure-agh-a-7041") == []


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ("patient/Patient.rs", set()),
        ("patient/ImagingStudy.rs patient/DiagnosticReport.rs", set()),
        ("patient/Condition.rs", {"Condition"}),
        ("patient/Condition.read patient/AllergyIntolerance.read", {"Condition", "AllergyIntolerance"}),
        ("patient/MedicationRequest.rs patient/Observation.s", {"MedicationRequest", "Observation"}),
        ("patient/*.rs", set(CHART)),
        ("patient/*.read", set(CHART)),
        ("patient/*.cud", set()),
    ],
)
def test_scopes_decide_the_types(mint: ChartMinter, scope: str, allowed: set[str]) -> None:
    walter = mint.patient("walter-nguyen", scope=scope)
    for resource_type in CHART:
        answer = walter.get(resource_type, patient="walter-nguyen")
        assert answer.status_code == (200 if resource_type in allowed else 403), (scope, resource_type)
        if answer.status_code == 403:
            assert answer.json()["resourceType"] == "OperationOutcome"
    assert walter.get("Condition/walter-copd").status_code == (200 if "Condition" in allowed else 403)


def test_withheld_studies_hide_their_visit_from_a_proxy_and_the_care_team(mint: ChartMinter) -> None:
    elena = mint.token("user/*.rs", user="RelatedPerson/elena-for-maya")
    maya = mint.patient("maya-alvarez")
    seen_by_her_mother = {
        "Condition": ["maya-ankle-sprain"], "Observation": ["maya-weight-2026-02"],
        "Encounter": ["encounter-agh-a-7001"], "Procedure": ["procedure-agh-a-7001"],
        "DocumentReference": ["document-agh-a-7001"], "MedicationRequest": ["maya-ibuprofen"],
    }  # fmt: skip
    for resource_type, ids in seen_by_her_mother.items():
        assert elena.ids(resource_type, patient="maya-alvarez") == ids, resource_type
        assert set(ids) <= set(maya.ids(resource_type)), resource_type
    for path in ("Condition/maya-ovarian-cyst", "Observation/maya-hcg-2026-04", "Encounter/encounter-agh-a-7002",
                 "Procedure/procedure-agh-a-7002", "DocumentReference/document-agh-a-7002"):  # fmt: skip
        assert elena.get(path).status_code == 404, path
        assert maya.get(path).status_code == 200, path
    assert elena.ids("Observation", code="2106-3") == []

    priya = mint.patient("priya-raman")
    assert priya.ids("Condition") == ["priya-migraine", "priya-bronchitis"]
    for who in (mint.token("user/*.rs", user="Practitioner/dr-chen"),
                mint.token("user/*.rs", user="RelatedPerson/arjun-for-priya")):  # fmt: skip
        assert who.ids("Condition", patient="priya-raman") == ["priya-bronchitis"]
        assert who.ids("MedicationRequest", patient="priya-raman") == ["priya-acetaminophen"]
        assert who.ids("Observation", patient="priya-raman") == [
            "priya-temperature-2026-03",
            "priya-heart-rate-2026-03",
        ]
        assert who.ids("Procedure", patient="priya-raman") == ["procedure-agh-a-7032"]
        assert who.ids("Encounter", patient="priya-raman") == ["encounter-agh-a-7032"]
        assert who.ids("AllergyIntolerance", patient="priya-raman") == ["priya-latex-allergy"]
        assert who.get("Condition/priya-migraine").status_code == 404
        assert who.get("DocumentReference/document-agh-a-7031").status_code == 404
    chen = mint.token("user/*.rs", user="Practitioner/dr-chen")
    assert chen.get("Condition", patient="tomas-berg").status_code == 403  # not on his panel
    assert set(chen.ids("Procedure")) == {"procedure-agh-a-7001", "procedure-agh-a-7002", "procedure-agh-a-7021",
                                          "procedure-agh-a-7032"}  # fmt: skip


def test_backend_tokens_reach_their_patients_and_a_study_grant_only_that_studys_records(mint: ChartMinter) -> None:
    everyone = mint.token("system/*.rs", client_id="chart-everyone")
    assert everyone.ids("AllergyIntolerance") == ["elena-penicillin-allergy", "elena-egg-allergy",
                                                  "walter-contrast-allergy", "priya-latex-allergy"]  # fmt: skip
    assert everyone.ids("Condition", patient="walter-nguyen", code="427359005") == ["walter-lung-nodule"]

    one_study = mint.token("system/*.rs", client_id="chart-one-study")
    assert one_study.get("Patient/walter-nguyen").status_code == 200
    assert one_study.ids("ImagingStudy") == ["agh-a-7021"]
    assert one_study.ids("Encounter", patient="walter-nguyen") == ["encounter-agh-a-7021"]  # not the follow-up
    assert one_study.ids("Observation") == ["walter-spo2-2026-01", "walter-bp-2026-01"]  # not his labs
    assert one_study.ids("DocumentReference") == ["walter-progress-note-2026-01", "document-agh-a-7021"]
    assert one_study.ids("Procedure") == ["procedure-agh-a-7021"]
    assert one_study.search("Condition", patient="walter-nguyen")["total"] == 0
    assert one_study.search("AllergyIntolerance", patient="walter-nguyen")["total"] == 0
    assert one_study.get("AllergyIntolerance/walter-contrast-allergy").status_code == 403
    assert one_study.get("Encounter/encounter-agh-a-7021").status_code == 200
    assert one_study.get("Condition", patient="tomas-berg").status_code == 403


def _codings(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        found = list(value.get("coding", [])) if isinstance(value.get("coding"), list) else []
        return found + [c for item in value.values() for c in _codings(item)]
    if isinstance(value, list):
        return [c for item in value for c in _codings(item)]
    return []


REQUIRED = {"AllergyIntolerance": ["patient"], "Condition": ["subject"], "Encounter": ["status", "class"],
            "MedicationRequest": ["status", "intent", "medicationCodeableConcept", "subject"],
            "Observation": ["status", "code"], "Procedure": ["status", "subject"],
            "DocumentReference": ["status", "content"]}  # fmt: skip


def test_every_served_chart_resource_is_coded_dated_and_of_a_seed_patient(mint: ChartMinter) -> None:
    everyone = mint.token("system/*.rs", client_id="chart-everyone")
    for resource_type in CHART:
        bundle = everyone.search(resource_type, _count="500")
        assert bundle["total"] >= len(PATIENTS) - 1, resource_type
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert all(element in resource for element in REQUIRED[resource_type]), resource["id"]
            element = "patient" if resource_type == "AllergyIntolerance" else "subject"
            assert resource[element]["reference"].removeprefix("Patient/") in PATIENTS
            assert resource["meta"]["lastUpdated"]
            for coding in _codings(resource):
                assert coding.get("system") and coding.get("code") and coding.get("display"), (resource["id"], coding)


def test_capability_statement_lists_the_chart_types_with_exactly_their_parameters(mint: ChartMinter) -> None:
    statement = httpx.get(f"{mint.sandbox.url}/fhir/metadata").json()
    supported = {r["type"]: {p["name"] for p in r["searchParam"]} for r in statement["rest"][0]["resource"]}
    common = {"_id", "_lastUpdated", "_count"}
    assert supported["AllergyIntolerance"] == common | {"patient", "clinical-status"}
    assert supported["Condition"] == common | {"patient", "subject", "category", "clinical-status", "code",
                                               "onset-date"}  # fmt: skip
    assert supported["MedicationRequest"] == common | {"patient", "subject", "status", "intent", "authoredon"}
    assert supported["Observation"] == common | {"patient", "subject", "category", "code", "date", "status"}
    assert supported["Encounter"] == common | {"patient", "subject", "date", "status", "class", "type"}
    assert supported["DocumentReference"] == common | {"patient", "subject", "category", "type", "date", "status"}
    assert supported["Procedure"] == common | {"patient", "subject", "date", "code", "status"}
    walter = mint.patient("walter-nguyen")
    sample = {"date": "ge2020", "reference": "walter-nguyen", "token": "x", "number": "5"}
    for entry in statement["rest"][0]["resource"]:
        if entry["type"] in CHART:  # every parameter listed is served: a 400 would say it is not
            for param in entry["searchParam"]:
                answer = walter.get(entry["type"], **{param["name"]: sample[param["type"]]})
                assert answer.status_code == 200, (entry["type"], param, answer.text)


def _seed_patient(patient_id: str) -> Any:
    return load_directory().patients[patient_id]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"resourceType": "MedicationRequest", "id": "m", "status": "active", "intent": "order"}, "no medication[x]"),
        ({"resourceType": "Observation", "id": "o", "status": "final"}, "no code"),
        ({"resourceType": "Encounter", "id": "e", "status": "finished"}, "no class"),
        ({"resourceType": "DocumentReference", "id": "d", "status": "current", "content": [{}]}, "content.attachment"),
        ({"resourceType": "Condition", "id": "c", "code": {"coding": [{"system": SCT, "code": "1"}]}},
         "without system, code and display"),
        ({"resourceType": "Condition", "id": "bad/id"}, "an id of"),
        ({"resourceType": "Condition", "id": "c", "_study": "AGH-A-7041"}, "not a study of the patient"),
        ({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/tomas-berg"}}, "names its patient"),
        ({"resourceType": "CarePlan", "id": "c"}, "the type is not one of"),
    ],
)  # fmt: skip
def test_a_seed_record_that_is_not_valid_fhir_is_refused_naming_it(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(EhrError) as refused:
        chart_resource(raw, _seed_patient("walter-nguyen"))
    assert message in refused.value.message and "of walter-nguyen" in refused.value.message


def test_a_record_may_not_point_at_one_hidden_with_another_study() -> None:
    maya = _seed_patient("maya-alvarez")
    hidden = chart_resource({"resourceType": "Condition", "id": "c1", "_study": "AGH-A-7002"}, maya)
    raw = {
        "resourceType": "Procedure",
        "id": "p1",
        "status": "completed",
        "reasonReference": [{"reference": "Condition/c1"}],
    }
    with pytest.raises(EhrError, match="tied to another study"):
        check_ties([hidden, chart_resource({**raw, "_study": "AGH-A-7001"}, maya)])
    with pytest.raises(EhrError, match="tied to another study"):
        check_ties([hidden, chart_resource(raw, maya)])  # an untied record would reveal it too
    check_ties([hidden, chart_resource({**raw, "_study": "AGH-A-7002"}, maya)])
    with pytest.raises(EhrError, match="twice"):
        check_ties([hidden, Record(hidden.resource, "maya-alvarez")])
