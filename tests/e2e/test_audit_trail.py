"""The audit trail of the end-to-end run: one AuditEvent per access, denies included, reads aggregated, no token.

Runs after the other e2e modules (tests/e2e/conftest.py orders it last) and checks every access
they declared (`E2ERun.expect`) at `GET /fhir/AuditEvent`, read with a Backend Services token
whose registered scope is `system/AuditEvent.rs`. Its own accesses make the aggregation
measurable: N frame reads of one study by one token, within a minute, are one event whose count
extension is N (docs/authorization.md §Aggregation).

The trail is printed as `aperture audit --data <demo folder>` shows it; with APERTURE_E2E_TRAIL=FILE
in the environment it is also written to FILE (the closing note of issue 14 quotes it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aperture.audit.events import COUNT_EXTENSION
from tests.e2e.conftest import VIEWER, Access, BackendClient, E2ERun
from tests.e2e.imaging import instances_of, studies_of
from tests.stack import DemoStack

TOMAS = "tomas-berg"
(TOMAS_STUDY,) = studies_of(TOMAS)
FRAME = 'multipart/related; type="application/octet-stream"'


@dataclass(frozen=True)
class Event:
    """What the trail says about one AuditEvent, read from the FHIR resource."""

    client_id: str | None
    outcome: str  # permit / deny
    action: str
    status: int
    patients: frozenset[str]
    studies: frozenset[str]
    count: int
    query: str | None

    @classmethod
    def of(cls, event: dict[str, Any]) -> Event:
        client = event["agent"][0]["who"].get("identifier", {}).get("value")
        entities = event.get("entity", [])
        patients = frozenset(e["what"]["reference"] for e in entities if "reference" in e.get("what", {}))
        studies = frozenset(
            e["what"]["identifier"]["value"].removeprefix("urn:oid:")
            for e in entities
            if e.get("what", {}).get("identifier", {}).get("system") == "urn:dicom:uid"
        )
        queries = [base64.b64decode(e["query"]).decode() for e in entities if "query" in e]
        counts = [x["valueInteger"] for x in event.get("extension", []) if x["url"] == COUNT_EXTENSION]
        return cls(
            client_id=client,
            outcome={"0": "permit", "4": "deny"}[event["outcome"]],
            action=event["action"],
            status=int(event["outcomeDesc"].rsplit(" ", 1)[1]),
            patients=patients,
            studies=studies,
            count=counts[0] if counts else 1,
            query=queries[0] if queries else None,
        )

    def matches(self, access: Access) -> bool:
        return (
            (self.client_id or "") == access.client_id  # "": no client (the token was refused unread)
            and self.outcome == access.outcome
            and self.action == access.action
            and (access.patient is None or access.patient in self.patients)
            and (access.study is None or access.study in self.studies)
            and (access.status is None or self.status == access.status)
        )


@pytest.fixture(scope="module")
def frame_reads(demo_stack: DemoStack, viewer: str, run: E2ERun) -> int:
    """Tomas's token reads frames of his study one request at a time, and asks once for someone else."""
    token = demo_stack.token(viewer, "launch/patient patient/ImagingStudy.rs", patient=TOMAS, user=f"Patient/{TOMAS}")
    reads = 0
    with httpx.Client(timeout=60, headers=run.bearer(token)) as http:
        for instance in instances_of(TOMAS_STUDY)[:5]:
            url = f"{demo_stack.dicomweb}/studies/{TOMAS_STUDY}/series/{instance.series}/instances/{instance.sop}"
            for _ in range(2):
                assert http.get(f"{url}/frames/1", headers={"Accept": FRAME}).status_code == 200
                reads += 1
        refused = http.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": "walter-nguyen"})
        assert refused.status_code == 403
        (walter,) = studies_of("walter-nguyen")
        assert http.get(f"{demo_stack.dicomweb}/studies/{walter}/metadata").status_code == 404
        # a token in the URL is refused (RFC 6750 §2.3 is not served), and the audited query loses it
        in_url = httpx.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": TOMAS, "access_token": token})
        assert in_url.status_code == 401
    run.expect(Access(viewer, "permit", "R", patient=f"Patient/{TOMAS}", study=TOMAS_STUDY))
    run.expect(Access(viewer, "deny", "E", patient="Patient/walter-nguyen", status=403))
    run.expect(Access(viewer, "deny", "R", study=walter, status=404))
    run.expect(Access("", "deny", "E", status=401))  # no client: the token in the URL was never looked at
    return reads


@pytest.fixture(scope="module")
def trail(demo_stack: DemoStack, auditor: BackendClient, run: E2ERun, frame_reads: int) -> dict[str, Any]:
    token = auditor.access_token("system/AuditEvent.rs")
    answer = httpx.get(f"{demo_stack.imaging_fhir}/AuditEvent", params={"_count": "1000", "date": f"ge{run.started}"},
                       headers=run.bearer(token), timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    bundle: dict[str, Any] = answer.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert len(bundle.get("entry", [])) < 1000, "more events than one page: raise _count or page"
    return bundle


def events(bundle: dict[str, Any]) -> list[Event]:
    return [Event.of(entry["resource"]) for entry in bundle.get("entry", [])]


def test_every_access_of_the_run_is_in_the_trail(trail: dict[str, Any], run: E2ERun) -> None:
    found = events(trail)
    missing = [access for access in run.accesses if not any(event.matches(access) for event in found)]
    assert not missing, f"{len(missing)} of {len(run.accesses)} accesses are not audited: {missing}"
    assert {a.outcome for a in run.accesses} == {"permit", "deny"}


def test_frame_reads_of_one_study_by_one_token_are_one_event_with_a_count(
    trail: dict[str, Any], frame_reads: int
) -> None:
    reads = [e for e in events(trail) if e.action == "R" and e.outcome == "permit" and TOMAS_STUDY in e.studies]
    assert len(reads) == 1, reads
    (event,) = reads
    assert event.client_id == VIEWER and event.patients == {f"Patient/{TOMAS}"}
    assert event.count == frame_reads > 1


def test_denies_are_events_of_their_own(trail: dict[str, Any]) -> None:
    denies = [e for e in events(trail) if e.outcome == "deny"]
    assert {e.status for e in denies} >= {403, 404}
    assert all(e.count == 1 for e in denies)


def test_the_trail_can_be_filtered(demo_stack: DemoStack, auditor: BackendClient, run: E2ERun) -> None:
    token = auditor.access_token("system/AuditEvent.rs")
    answer = httpx.get(f"{demo_stack.imaging_fhir}/AuditEvent",
                       params={"patient": f"Patient/{TOMAS}", "outcome": "permit", "client": VIEWER},
                       headers=run.bearer(token), timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    found = events(answer.json())
    assert found and all(e.patients == {f"Patient/{TOMAS}"} and e.outcome == "permit" for e in found)
    assert all(e.client_id == VIEWER for e in found)


def _no_token_in(text: str, tokens: list[str]) -> list[str]:
    """The tokens (or their SHA-256, whole or as the 12-digit prefix logs use) that appear in `text`."""
    leaks = []
    for token in set(tokens):
        digest = hashlib.sha256(token.encode()).hexdigest()
        if token in text or digest in text or digest[:12] in text:
            leaks.append(token[:6] + "...")
    return leaks


def test_no_token_appears_in_the_audit_json(trail: dict[str, Any], demo_stack: DemoStack, run: E2ERun) -> None:
    assert len(set(run.tokens)) >= 2  # in a full run, every flow's: patient, proxy, clinician, backends, ...
    stored = aperture_audit(demo_stack, "--format", "json")
    assert json.loads(stored), "aperture audit lists the events"
    for text in (json.dumps(trail), stored):
        assert not _no_token_in(text, run.tokens)
    queries = [event.query or "" for event in events(trail)]  # base64 in the JSON: read them decoded too
    assert any("patient=" in query for query in queries)
    assert not _no_token_in("\n".join(queries), run.tokens)


def aperture_audit(demo: DemoStack, *args: str) -> str:
    command = [sys.executable, "-m", "aperture", "audit", "--data", str(demo.data), "--limit", "1000", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout


def test_print_the_trail(trail: dict[str, Any], demo_stack: DemoStack) -> None:
    """`aperture audit` as a table: what the closing note shows. Printed (pytest -s) and, if asked, saved."""
    table = aperture_audit(demo_stack)
    assert VIEWER in table and "e2e-auditor" in table and "deny" in table
    print(f"\n{table}")
    target = os.environ.get("APERTURE_E2E_TRAIL")
    if target:
        Path(target).write_text(table, encoding="utf-8")
