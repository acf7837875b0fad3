"""ImagingStudy published to the EHR by the imaging server: checked, matched to a Patient, or queued.

The imaging server sends `PUT {fhir}/ImagingStudy?identifier=urn:dicom:uid|urn:oid:<UID>`, FHIR R4
conditional update (§3.1.0.4.3, http.html#cond-update): no resource matches, the server creates one
(201); one matches, it is updated (200); several match, 412. It knows the study by its
StudyInstanceUID and not by the EHR's id, and sending the same study again is an update, never a
duplicate, which is why a real EHR is fed this way rather than by plain create (POST).

The subject is the patient as DICOM knows them: `subject.identifier` = {system, value}, the MRN
under the EHR's identifier system. It is linked to the Patient whose MRN has that system AND that
value; the same value under another system is another person. A study that matches no Patient is
never attached by guess: it is answered 422 and kept in `fhir_unmatched_studies`, which
`aperture ehr reconcile list` shows. A study the record already holds for another patient is 409
and queued the same way (a patient merge is a person's decision, too).

The stored resource is the one sent, with the sandbox's id (a seeded study keeps its id; a new one
gets its UID as id), `subject.reference` = `Patient/{id}` added beside the identifier, and
`meta.lastUpdated` set by the sandbox; an update keeps what the EHR itself linked to the study
before (its `basedOn` order, identifiers such as the accession number that the sender lacks).
It is then read and searched like a seeded study, under the same policy (`access.py`).

Validation is by hand, of what the sandbox relies on: resourceType, the `urn:dicom:uid`
identifier and the query naming the same UID, `status`, the subject identifier, and that `#`
endpoint references name a contained Endpoint; anything else is stored as sent.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from aperture.ehr.errors import InsufficientScope, InvalidRequest, PreconditionFailed, ResourceConflict, Unprocessable
from aperture.ehr.fhir.records import (
    canonical,
    instant_now,
    metadata,
    put_submitted,
    resources,
    submitted_studies,
    unmatched_studies,
)
from aperture.ehr.people import Directory

DICOM_UID = "urn:dicom:uid"
STATUSES = ("registered", "available", "cancelled", "entered-in-error", "unknown")  # R4 ImagingStudy.status
MAX_BODY = 16 * 1024 * 1024  # bytes: a study of tens of thousands of instances still fits
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


@dataclass(frozen=True)
class Submission:
    study_uid: str
    system: str  # subject.identifier.system
    value: str  # subject.identifier.value
    resource: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    created: bool
    resource: dict[str, Any]


def study_uid_of(criteria: list[tuple[str, str]]) -> str:
    """The UID a conditional update names: exactly `identifier=urn:dicom:uid|urn:oid:<UID>`."""
    names = sorted({name for name, _ in criteria})
    if names != ["identifier"] or len(criteria) != 1:
        raise InvalidRequest(
            "Update an ImagingStudy by its StudyInstanceUID: PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:<UID> "
            f"(one identifier parameter and nothing else; got {', '.join(names) or 'none'})."
        )
    value = criteria[0][1]
    system, bar, token = value.partition("|")
    if not bar or system != DICOM_UID or not token.startswith("urn:oid:"):
        raise InvalidRequest(f"identifier={value[:100]!r} must be urn:dicom:uid|urn:oid:<StudyInstanceUID>.")
    uid = token.removeprefix("urn:oid:")
    if len(uid) > 64 or not _UID.fullmatch(uid):
        raise InvalidRequest(
            f"identifier={value[:100]!r}: {uid[:80]!r} is not a DICOM UID (digits and dots, 64 at most)."
        )
    return uid


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def check(document: Any, study_uid: str) -> Submission:
    """The submission in `document`, or InvalidRequest saying what to change."""
    if not isinstance(document, dict) or document.get("resourceType") != "ImagingStudy":
        raise InvalidRequest('The body must be one FHIR ImagingStudy resource (resourceType "ImagingStudy").')
    identifiers = document.get("identifier")
    if not isinstance(identifiers, list) or not all(isinstance(i, dict) for i in identifiers):
        raise InvalidRequest(
            "ImagingStudy.identifier must be a list holding {system: urn:dicom:uid, value: urn:oid:<UID>}."
        )
    uids = [i.get("value") for i in identifiers if i.get("system") == DICOM_UID]
    if uids != [f"urn:oid:{study_uid}"]:
        raise InvalidRequest(
            f"ImagingStudy.identifier must hold exactly one urn:dicom:uid identifier, urn:oid:{study_uid}, "
            f"the study the URL names (found {json.dumps(uids)[:200]})."
        )
    status = document.get("status")
    if status not in STATUSES:
        raise InvalidRequest(
            f"ImagingStudy.status must be one of {', '.join(STATUSES)}, not {json.dumps(status)[:60]}."
        )
    subject = document.get("subject")
    if not isinstance(subject, dict):
        subject = {}
    identifier = subject.get("identifier")
    if not isinstance(identifier, dict) or not _text(identifier.get("system")) or not _text(identifier.get("value")):
        raise InvalidRequest(
            "ImagingStudy.subject.identifier must give the patient's MRN as {system, value}: the EHR's identifier "
            "system and the value (the DICOM PatientID). A value without a system names nobody."
        )
    system, value = identifier["system"], identifier["value"]
    if not _URI.fullmatch(system):
        raise InvalidRequest(f"ImagingStudy.subject.identifier.system {system[:100]!r} is not an absolute URI.")
    if not isinstance(subject.get("reference", ""), str):
        raise InvalidRequest("ImagingStudy.subject.reference must be a string when sent.")
    contained = document.get("contained", [])
    if not isinstance(contained, list) or not all(isinstance(c, dict) for c in contained):
        raise InvalidRequest("ImagingStudy.contained must be a list of resources.")
    local = {c.get("id") for c in contained if c.get("resourceType") == "Endpoint"}
    endpoints = document.get("endpoint", [])
    if not isinstance(endpoints, list) or not all(isinstance(e, dict) and _text(e.get("reference")) for e in endpoints):
        raise InvalidRequest("ImagingStudy.endpoint must be a list of references ({reference: ...}).")
    for endpoint in endpoints:
        reference = endpoint["reference"]
        if reference.startswith("#") and reference[1:] not in local:
            raise InvalidRequest(f"ImagingStudy.endpoint {reference[:80]!r} names no contained Endpoint.")
    return Submission(study_uid, system, value, document)


def _patient_for(directory: Directory, system: str, value: str) -> str | None:
    """The one Patient whose MRN has this system and this value (never the value alone)."""
    found = [p.id for p in directory.patients.values() if p.mrn_system == system and p.mrn == value]
    return found[0] if len(found) == 1 else None


def _queue(engine: Engine, submission: Submission, client_id: str, reason: str) -> None:
    now = instant_now()
    content = canonical(submission.resource)
    with engine.begin() as conn:
        changed = conn.execute(
            update(unmatched_studies)
            .where(unmatched_studies.c.study_uid == submission.study_uid)
            .values(identifier_system=submission.system, identifier_value=submission.value, reason=reason,
                    client_id=client_id, last_received=now, times=unmatched_studies.c.times + 1, content=content)
        ).rowcount  # fmt: skip
        if not changed:
            conn.execute(
                insert(unmatched_studies).values(
                    study_uid=submission.study_uid,
                    identifier_system=submission.system,
                    identifier_value=submission.value,
                    reason=reason,
                    client_id=client_id,
                    first_received=now,
                    last_received=now,
                    times=1,
                    content=content,
                )  # fmt: skip
            )


def submit(engine: Engine, directory: Directory, submission: Submission, client_id: str, *, may_create: bool,
           may_update: bool) -> Outcome:  # fmt: skip
    """Create or update the study's ImagingStudy for its patient; queue it when no patient matches.

    `may_create` / `may_update` are what the token's scopes allow (`c` and `u`); the caller has
    checked that at least one holds.
    """
    metadata.create_all(engine)  # the record's tables exist once the server has started; the CLI may be first
    uid, system, value = submission.study_uid, submission.system, submission.value
    patient = _patient_for(directory, system, value)
    if patient is None:
        reason = f"no patient has identifier {system}|{value}"
        _queue(engine, submission, client_id, reason)
        raise Unprocessable(
            f"No patient matches subject.identifier {system}|{value} (the system and the value must both match a "
            f"Patient's MRN): ImagingStudy {uid} was not attached to anyone and is queued for reconciliation."
        )
    with engine.connect() as conn:
        held = conn.execute(
            select(resources.c.id, resources.c.patient, resources.c.content, resources.c.last_updated).where(
                resources.c.type == "ImagingStudy", resources.c.study_uid == uid
            )
        ).all()
    if len(held) > 1:
        raise PreconditionFailed(f"{len(held)} ImagingStudy resources hold study {uid}; nothing was changed.")
    if held and held[0].patient != patient:
        reason = f"the record holds study {uid} for Patient/{held[0].patient}, not for {system}|{value}"
        _queue(engine, submission, client_id, reason)
        raise ResourceConflict(
            f"ImagingStudy {uid} belongs to another patient in this record than {system}|{value}: nothing was "
            "changed, and it is queued for reconciliation."
        )
    if held and not may_update:
        raise InsufficientScope("The token's scopes allow creating ImagingStudy, not updating it (needs .u).")
    if not held and not may_create:
        raise InsufficientScope("The token's scopes allow updating ImagingStudy, not creating it (needs .c).")
    resource_id = held[0].id if held else uid
    resource = dict(submission.resource)
    if held:  # the EHR's own links stay: its order (basedOn) and identifiers (the accession) the sender lacks
        previous = json.loads(held[0].content)
        sent = {(i.get("system"), i.get("value")) for i in resource["identifier"]}
        kept = [i for i in previous.get("identifier", []) if (i.get("system"), i.get("value")) not in sent]
        resource["identifier"] = [*resource["identifier"], *kept]
        if "basedOn" in previous:
            resource["basedOn"] = previous["basedOn"]
    resource["id"] = resource_id
    resource["subject"] = {**resource["subject"], "reference": f"Patient/{patient}"}
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in ("lastUpdated", "versionId")}
    if meta:
        resource["meta"] = meta
    else:
        resource.pop("meta", None)
    content = canonical(resource)
    last_updated = held[0].last_updated if held and held[0].content == content else instant_now()
    with engine.begin() as conn:
        put_submitted(conn, resource_id, patient, uid, content, last_updated)
        changed = conn.execute(
            update(submitted_studies)
            .where(submitted_studies.c.study_uid == uid)
            .values(id=resource_id, patient=patient, client_id=client_id, last_updated=last_updated, content=content)
        ).rowcount
        if not changed:
            conn.execute(
                insert(submitted_studies).values(
                    study_uid=uid,
                    id=resource_id,
                    patient=patient,
                    client_id=client_id,
                    received=int(time.time()),
                    last_updated=last_updated,
                    content=content,
                )  # fmt: skip
            )
        conn.execute(delete(unmatched_studies).where(unmatched_studies.c.study_uid == uid))
    stored = json.loads(content)
    stored["meta"] = {**stored.get("meta", {}), "lastUpdated": last_updated}
    return Outcome(created=not held, resource=stored)


def unmatched(engine: Engine) -> list[dict[str, Any]]:
    """The reconciliation list: studies no patient matched, oldest first, without their full JSON."""
    metadata.create_all(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(unmatched_studies).order_by(unmatched_studies.c.first_received)).all()
    return [
        {
            "study_instance_uid": row.study_uid,
            "subject_identifier": {"system": row.identifier_system, "value": row.identifier_value},
            "reason": row.reason,
            "client_id": row.client_id,
            "first_received": row.first_received,
            "last_received": row.last_received,
            "times": row.times,
        }
        for row in rows
    ]
