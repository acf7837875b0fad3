"""Each kind of access becomes the BALP AuditEvent its profile describes (IHE ITI BALP, FHIR R4).

fhir.resources is not installed in the project's environment, so the R4 structure is asserted
here directly (the required elements of R4 AuditEvent) together with BALP's fixed codes and agent
and entity slices (shared/specs/ihe-profiles.md §10).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from aperture.audit.events import COUNT_EXTENSION, AccessRecord, Action, Outcome, audit_event

SERVER = "https://imaging.example.org/dicomweb"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
REST = "http://hl7.org/fhir/restful-interaction"
STUDY = "1.2.826.0.1.3680043.8.498.1"
WHEN = datetime(2026, 12, 2, 5, 0, 0, tzinfo=UTC)


def _record(action: Action, outcome: Outcome = Outcome.PERMIT, **fields: Any) -> AccessRecord:
    base: dict[str, Any] = {
        "status": 200 if outcome is Outcome.PERMIT else 403,
        "time": WHEN,
        "client_id": "viewer-app",
        "user": "Practitioner/dr-1",
        "patient": "Patient/p-1",
        "studies": (STUDY,),
        "source_address": "192.0.2.7",
    }
    return AccessRecord(action, outcome, **{**base, **fields})


def _codes(codings: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in codings}


def _agent(event: dict[str, Any], system: str, code: str) -> dict[str, Any]:
    (agent,) = [a for a in event["agent"] if (system, code) in _codes(a["type"]["coding"])]
    return agent


def _assert_r4_structure(event: dict[str, Any]) -> None:
    """The 1..1 and 1..* elements of R4 AuditEvent, and its required action/outcome codes."""
    assert event["resourceType"] == "AuditEvent"
    assert {"system", "code"} <= set(event["type"])
    assert event["action"] in {"C", "R", "U", "D", "E"}
    assert event["outcome"] in {"0", "4", "8", "12"}
    assert datetime.fromisoformat(event["recorded"].replace("Z", "+00:00")).tzinfo is not None
    assert event["agent"] and all(isinstance(a["requestor"], bool) for a in event["agent"])
    assert sum(a["requestor"] for a in event["agent"]) == 1
    assert event["source"]["observer"]
    for entity in event["entity"]:
        assert {"system", "code"} <= set(entity["type"]) and {"system", "code"} <= set(entity["role"])


# action -> (profile, AuditEvent.action, subtypes, client agent type, server agent type, user agent type)
PATTERNS = {
    Action.READ: ("PatientRead", "R", {(REST, "read"), (DCM, "110104")}, (DCM, "110152"), (DCM, "110153"), "IRCP"),
    Action.SEARCH: (
        "PatientQuery", "E", {(REST, "search-type"), (DCM, "110112")}, (DCM, "110153"), (DCM, "110152"), "IRCP"
    ),
    Action.WRITE: ("PatientCreate", "C", {(REST, "create"), (DCM, "110104")}, (DCM, "110153"), (DCM, "110152"), "AUT"),
    Action.DELETE: (
        "PatientDelete", "D", {(REST, "delete")}, (DCM, "110150"),
        ("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "custodian"), "AUT",
    ),
}  # fmt: skip


@pytest.mark.parametrize("action", list(Action))
def test_a_permit_follows_its_balp_patient_profile(action: Action) -> None:
    profile, code, subtypes, client_type, server_type, user_type = PATTERNS[action]
    event = audit_event(_record(action, query="PatientID=123"), SERVER)
    _assert_r4_structure(event)
    assert event["meta"]["profile"] == [
        f"https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.{profile}"
    ]
    assert (event["type"]["system"], event["type"]["code"]) == (
        "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "rest",
    )
    assert _codes(event["subtype"]) == subtypes
    assert (event["action"], event["outcome"], event["recorded"]) == (code, "0", "2026-12-02T05:00:00.000Z")
    client = _agent(event, *client_type)
    assert client["who"] == {"identifier": {"value": "viewer-app"}}
    assert client["network"] == {"address": "192.0.2.7", "type": "2"} and client["requestor"] is False
    server = _agent(event, *server_type)
    assert server["network"] == {"address": SERVER, "type": "5"} and server["requestor"] is False
    user = _agent(event, "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", user_type)
    assert user == {**user, "who": {"reference": "Practitioner/dr-1"}, "requestor": True} and "network" not in user
    assert _codes(event["source"]["type"]) == {("http://terminology.hl7.org/CodeSystem/security-source-type", "4")}
    roles = {(e["type"]["code"], e["role"]["code"]): e for e in event["entity"]}
    assert roles[("1", "1")]["what"] == {"reference": "Patient/p-1"}
    assert roles[("2", "3")]["what"] == {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY}"}}
    if action is Action.SEARCH:
        assert base64.b64decode(roles[("2", "24")]["query"]) == b"PatientID=123"
    else:
        assert ("2", "24") not in roles


@pytest.mark.parametrize("action", list(Action))
def test_without_a_patient_the_non_patient_profile_and_no_patient_entity(action: Action) -> None:
    event = audit_event(_record(action, patient=None), SERVER)
    _assert_r4_structure(event)
    assert event["meta"]["profile"][0].endswith("IHE.BasicAudit." + PATTERNS[action][0].removeprefix("Patient"))
    assert all(e["role"]["code"] != "1" for e in event["entity"])


@pytest.mark.parametrize("action", list(Action))
def test_a_deny_is_the_same_pattern_with_a_failure_outcome(action: Action) -> None:
    event = audit_event(_record(action, Outcome.DENY, status=403), SERVER)
    _assert_r4_structure(event)
    assert (event["outcome"], event["outcomeDesc"]) == ("4", "deny: HTTP 403")
    assert "meta" not in event  # every BALP profile fixes outcome 0: a failure claims none
    assert _codes(event["subtype"]) == PATTERNS[action][2]


def test_a_sub_without_fhir_user_is_an_identifier_and_the_client_requests_without_a_user() -> None:
    event = audit_event(_record(Action.READ, user="3f2a-subject"), SERVER)
    assert event["agent"][2]["who"] == {"identifier": {"value": "3f2a-subject"}}
    alone = audit_event(_record(Action.READ, user=None), SERVER)
    assert len(alone["agent"]) == 2 and alone["agent"][0]["requestor"] is True
    _assert_r4_structure(alone)


def test_an_aggregated_read_carries_its_count_and_period() -> None:
    later = datetime(2026, 12, 2, 5, 0, 42, tzinfo=UTC)
    event = audit_event(_record(Action.READ, count=7, last=later), SERVER)
    assert event["extension"] == [{"url": COUNT_EXTENSION, "valueInteger": 7}]
    assert event["period"] == {"start": "2026-12-02T05:00:00.000Z", "end": "2026-12-02T05:00:42.000Z"}
    assert "extension" not in audit_event(_record(Action.READ), SERVER)


def test_credential_parameters_never_reach_the_query_entity() -> None:
    query = "PatientID=123&access_token=eyJsecret&Code=abc&client_secret=s3&limit=5"
    event = audit_event(_record(Action.SEARCH, query=query), SERVER)
    (entity,) = [e for e in event["entity"] if e["role"]["code"] == "24"]
    assert base64.b64decode(entity["query"]) == b"PatientID=123&limit=5"


def test_a_time_without_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        AccessRecord(Action.READ, Outcome.PERMIT, 200, time=datetime(2026, 12, 2, 5, 0))
