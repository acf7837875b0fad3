"""The EHR's policy passed on to the imaging server: RFC 9396 `authorization_details` in introspection.

Tokens come from the real sandbox: the browser launch driven through its forms (proxy, patient,
clinician), and Backend Services assertions for clients the admin pre-authorized by patient or by
study. Each test reads what introspection tells the imaging server, and what the token response
tells the app, and where it matters checks that the sandbox's own FHIR read agrees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.ehr.conftest import IMAGING_FHIR_BASE, Sandbox, ehr, public_jwks, register
from tests.ehr.test_launch import Flow, User, code_from

TYPE = "http://aperture.example.org/auth/imaging-study-access"
MAYA_ANKLE = "2.25.268441305134709541612117823451873091501"
MAYA_PELVIS = "2.25.268441305134709541612117823451873091502"  # withheld from her mother's proxy access
PRIYA_BRAIN = "2.25.268441305134709541612117823451873091531"  # consent: Priya alone
PRIYA_CHEST = "2.25.268441305134709541612117823451873091532"
WALTER_CT = "2.25.268441305134709541612117823451873091521"
SCOPE = "launch/patient openid fhirUser patient/Patient.rs patient/ImagingStudy.rs"


def launch(sandbox: Sandbox, login: str, patient: str | None = None) -> dict[str, Any]:
    """A token from the browser launch, signed in as `login` (demo password `<login>-demo`)."""
    flow = Flow(sandbox, scope=SCOPE)
    password = "chen-demo" if login == "dr.chen" else f"{login}-demo"
    answer = flow.exchange(code_from(User(login, password).consent(flow.url(), patient=patient), flow.state))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def entries(info: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in info.get("authorization_details", []) if entry["type"] == TYPE]


def uids(studies: list[dict[str, str]]) -> list[str]:
    return [study["study_instance_uid"] for study in studies]


def only_entry(sandbox: Sandbox, token: str, patient: str) -> dict[str, Any]:
    info = sandbox.introspect(token).json()
    assert info["active"] is True
    found = entries(info)
    assert [entry["patient"] for entry in found] == [patient]
    return found[0]


def test_proxy_sees_the_ankle_x_ray_and_not_the_pelvic_ultrasound(sandbox: Sandbox) -> None:
    token = launch(sandbox, "elena", patient="maya-alvarez")
    entry = only_entry(sandbox, token["access_token"], "maya-alvarez")
    assert uids(entry["permitted_studies"]) == [MAYA_ANKLE]
    assert entry["permitted_studies"][0]["accession_number"] == "AGH-A-7001"
    assert uids(entry["withheld_studies"]) == [MAYA_PELVIS]
    assert entry["unlisted_studies"] == "permit"
    assert IMAGING_FHIR_BASE in entry["locations"]
    assert entry["patient_identifiers"] == [
        {"system": "http://aperture.example.org/fhir/sid/mrn", "value": "AGH-100234"}
    ]
    # The app is told what it may see (RFC 9396 §7), never what is hidden from its user.
    (granted,) = token["authorization_details"]
    assert uids(granted["permitted_studies"]) == [MAYA_ANKLE] and "withheld_studies" not in granted
    assert MAYA_PELVIS not in json.dumps(token)


def test_the_teenager_herself_sees_both_of_her_studies(sandbox: Sandbox) -> None:
    entry = only_entry(sandbox, launch(sandbox, "maya")["access_token"], "maya-alvarez")
    assert uids(entry["permitted_studies"]) == [MAYA_ANKLE, MAYA_PELVIS] and entry["withheld_studies"] == []


def test_a_study_under_consent_is_the_patients_alone(sandbox: Sandbox) -> None:
    own = only_entry(sandbox, launch(sandbox, "priya")["access_token"], "priya-raman")
    assert uids(own["permitted_studies"]) == [PRIYA_BRAIN, PRIYA_CHEST] and own["withheld_studies"] == []
    for login in ("arjun", "dr.chen"):  # her husband's proxy access, her clinician's care-team access
        entry = only_entry(sandbox, launch(sandbox, login, patient="priya-raman")["access_token"], "priya-raman")
        assert uids(entry["permitted_studies"]) == [PRIYA_CHEST], login
        assert uids(entry["withheld_studies"]) == [PRIYA_BRAIN], login


def test_a_token_without_imaging_scopes_carries_no_authorization_details(sandbox: Sandbox) -> None:
    flow = Flow(sandbox, scope="launch/patient openid fhirUser patient/Patient.rs")
    token = flow.exchange(code_from(User("walter", "walter-demo").consent(flow.url()), flow.state)).json()
    assert "authorization_details" not in token
    info = sandbox.introspect(token["access_token"]).json()
    assert info["active"] is True and "authorization_details" not in info


@pytest.fixture(scope="module")
def preauthorized(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Backend clients the admin pre-authorized: for two patients, and for one of Maya's studies."""
    folder = tmp_path_factory.mktemp("preauthorized")
    answers = {}
    for client_id, reach in {
        "research": ["--patients", "walter-nguyen", "priya-raman"],
        "ankle-study": ["--studies", MAYA_ANKLE],
    }.items():
        key = RSAKey.generate_key(2048, parameters={"kid": f"{client_id}-1"})
        (folder / f"{client_id}.json").write_text(json.dumps(public_jwks(key)))
        answers[client_id] = register(sandbox.server.data, "--kind", "backend", "--name", client_id,
                                      "--client-id", client_id, "--scope", "system/ImagingStudy.rs system/Patient.rs",
                                      "--jwks", str(folder / f"{client_id}.json"), *reach)  # fmt: skip
        sandbox.keys[client_id] = key
    return answers


def system_token(sandbox: Sandbox, client_id: str) -> dict[str, Any]:
    answer = sandbox.backend_token(sandbox.assertion(client_id), scope="system/ImagingStudy.rs system/Patient.rs")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def read_patient(sandbox: Sandbox, token: str, patient: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{sandbox.url}/fhir/Patient/{patient}", headers=headers).status_code


def test_registration_prints_the_pre_authorization(preauthorized: dict[str, Any]) -> None:
    assert preauthorized["research"]["patients"] == ["priya-raman", "walter-nguyen"]
    assert preauthorized["ankle-study"]["studies"] == [MAYA_ANKLE]


def test_backend_token_reaches_only_its_pre_authorized_patients(sandbox: Sandbox, preauthorized: object) -> None:
    token = system_token(sandbox, "research")
    info = sandbox.introspect(token["access_token"]).json()
    reached = {entry["patient"]: entry for entry in entries(info)}
    assert sorted(reached) == ["priya-raman", "walter-nguyen"]
    assert uids(reached["walter-nguyen"]["permitted_studies"]) == [WALTER_CT]
    assert uids(reached["priya-raman"]["permitted_studies"]) == [PRIYA_CHEST]  # consent holds for services too
    assert uids(reached["priya-raman"]["withheld_studies"]) == [PRIYA_BRAIN]
    assert all(entry["unlisted_studies"] == "permit" for entry in reached.values())
    assert {entry["patient"] for entry in token["authorization_details"]} == set(reached)
    assert read_patient(sandbox, token["access_token"], "walter-nguyen") == 200
    assert read_patient(sandbox, token["access_token"], "priya-raman") == 200
    for other in ("maya-alvarez", "tomas-berg", "elena-alvarez"):
        assert read_patient(sandbox, token["access_token"], other) == 403, other


def test_backend_token_pre_authorized_for_one_study(sandbox: Sandbox, preauthorized: object) -> None:
    token = system_token(sandbox, "ankle-study")["access_token"]
    entry = only_entry(sandbox, token, "maya-alvarez")
    assert uids(entry["permitted_studies"]) == [MAYA_ANKLE]
    assert uids(entry["withheld_studies"]) == [MAYA_PELVIS]
    assert entry["unlisted_studies"] == "deny"  # by study: a study the EHR does not list is not reached
    assert read_patient(sandbox, token, "maya-alvarez") == 200
    assert read_patient(sandbox, token, "walter-nguyen") == 403


def test_backend_client_without_pre_authorization_reaches_nothing(sandbox: Sandbox) -> None:
    answer = sandbox.backend_token(sandbox.assertion("backend-rs"), scope="system/ImagingStudy.rs system/Patient.read")
    token = answer.json()["access_token"]
    assert "authorization_details" not in sandbox.introspect(token).json()
    assert read_patient(sandbox, token, "walter-nguyen") == 403


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--kind", "backend", "--patients", "nobody"], "No patient 'nobody'"),
        (["--kind", "backend", "--studies", "1.2.3"], "No study with StudyInstanceUID '1.2.3'"),
        (
            ["--kind", "public", "--redirect-uri", "https://app.test/cb", "--patients", "walter-nguyen"],
            "Only backend clients are pre-authorized",
        ),
    ],  # fmt: skip
    ids=["unknown-patient", "unknown-study", "not-backend"],
)
def test_pre_authorization_names_only_what_the_ehr_knows(tmp_path: Path, arguments: list[str], message: str) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(public_jwks(RSAKey.generate_key(2048, parameters={"kid": "k"}))))
    keys = ["--jwks", str(jwks)] if "backend" in arguments else []
    result = ehr("clients", "add", "--data", str(tmp_path / "data"), "--name", "x", *arguments, *keys,
                 "--scope", "system/ImagingStudy.rs" if "backend" in arguments else "patient/ImagingStudy.rs",
                 check=False)  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_proxy_without_a_record_of_their_own_can_use_the_ehr_launch_page(sandbox: Sandbox) -> None:
    page = User("arjun", "arjun-demo").start(f"{sandbox.url}/ehr/launch")
    assert page.status_code == 200 and "RelatedPerson/arjun-for-priya" in page.text
