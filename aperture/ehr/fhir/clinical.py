"""The patient's chart around the imaging: allergies, problems, medications, observations, visits and
documents, and the Procedure and report DocumentReference of every study, as FHIR R4 resources.

The seed (`clinical` under each patient in seed.json) writes each record as its FHIR resource
without the patient: the reference to the seed Patient (`subject`, or `patient` on
AllergyIntolerance) is added here, so a record cannot name anyone else. `_study`, an accession
number of the same patient, ties a record to a study: the record is then hidden wherever the study
is (consent, a proxy's restrictions, a backend's grant of other studies), as the study's own order
and report are. `_why` is a note for the reader and is dropped.

Strict on write: at start-up a record is refused, naming it, when it lacks an element FHIR R4
requires of its type, has an id that is not unique or not id-safe, a Coding without system, code
and display, names a study its patient does not have, or refers to a record tied to another study
(which would tell whoever may see it that the hidden record exists).
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterator, Sequence
from typing import Any

from aperture.ehr.errors import EhrError
from aperture.ehr.fhir.resources import LOINC, SNOMED, Record, study_key
from aperture.ehr.people import Directory, Patient, Study

US_CORE_DOCUMENT_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
# The elements FHIR R4 gives a minimum cardinality of 1 ("medication[x]": any of the choices).
REQUIRED = {
    "AllergyIntolerance": ("patient",),
    "Condition": ("subject",),
    "Encounter": ("status", "class"),
    "MedicationRequest": ("status", "intent", "medication[x]", "subject"),
    "Observation": ("status", "code"),
    "Procedure": ("status", "subject"),
    "DocumentReference": ("status", "content"),
}
# The imaging exam of each modality as a SNOMED CT procedure (Procedure.code; the study description is its text).
MODALITY_PROCEDURES = {
    "CT": ("77477000", "Computerized axial tomography"),
    "MR": ("113091000", "Magnetic resonance imaging"),
    "US": ("16310003", "Diagnostic ultrasonography"),
    "MG": ("71651007", "Mammography"),
    "DX": ("363680008", "Radiographic imaging procedure"),
    "CR": ("363680008", "Radiographic imaging procedure"),
}
IMAGING = ("363679005", "Imaging")  # the fallback for other modalities
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NOTES = ("_study", "_why")


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _patient_element(resource_type: str) -> str:
    return "patient" if resource_type == "AllergyIntolerance" else "subject"


def _missing(resource: dict[str, Any]) -> list[str]:
    missing = []
    for element in REQUIRED[resource["resourceType"]]:
        stem = element.removesuffix("[x]")
        present = any(key.startswith(stem) for key in resource) if element != stem else element in resource
        if not present:
            missing.append(element)
    if resource["resourceType"] == "DocumentReference":
        missing += ["content.attachment"] * any("attachment" not in c for c in resource.get("content", ()))
    return missing


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON value, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _check(resource: dict[str, Any], where: str) -> None:
    problems = [f"no {element}" for element in _missing(resource)]
    if not _ID.fullmatch(str(resource.get("id", ""))):
        problems.append("an id of 1 to 64 letters, digits, '-' or '.' is needed")
    for key, value in _walk(resource):
        if key == "coding" and any(not all(c.get(k) for k in ("system", "code", "display")) for c in value):
            problems.append("a Coding without system, code and display")
    if problems:
        raise EhrError(f"The seed's clinical record {where} is refused: {'; '.join(problems)}.")


def chart_resource(raw: dict[str, Any], patient: Patient) -> Record:
    """One seed record as a FHIR resource of `patient`, with the study it is tied to."""
    where = f"{raw.get('resourceType')}/{raw.get('id')} of {patient.id}"
    if raw.get("resourceType") not in REQUIRED:
        raise EhrError(f"The seed's clinical record {where}: the type is not one of {', '.join(REQUIRED)}.")
    element = _patient_element(raw["resourceType"])
    if element in raw:
        raise EhrError(f"The seed's clinical record {where} names its patient itself; leave {element} out.")
    resource = {k: copy.deepcopy(v) for k, v in raw.items() if k not in _NOTES}
    resource[element] = {"reference": f"Patient/{patient.id}"}
    _check(resource, where)
    study_uid = None
    if "_study" in raw:
        studies = {s.accession: s.uid for s in patient.studies}
        if raw["_study"] not in studies:
            raise EhrError(f"The seed's clinical record {where} names {raw['_study']!r}, not a study of the patient.")
        study_uid = studies[raw["_study"]]
    return Record(resource, patient.id, study_uid)


def _visit(records: list[Record], study: Study) -> dict[str, Any] | None:
    """The Encounter the seed ties to `study`: the imaging visit."""
    return next((r.resource for r in records if r.type == "Encounter" and r.study_uid == study.uid), None)


def procedure(study: Study, p: Patient, visit: dict[str, Any] | None) -> dict[str, Any]:
    """The imaging exam as a Procedure, with the visit it was done at and that visit's reason."""
    code, display = MODALITY_PROCEDURES.get(study.modality, IMAGING)
    key = study_key(study)
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": f"procedure-{key}",
        "basedOn": [{"reference": f"ServiceRequest/order-{key}"}],
        "status": "completed",
        "category": {"coding": [_coding(SNOMED, "103693007", "Diagnostic procedure")]},
        "code": {"coding": [_coding(SNOMED, code, display)], "text": study.description},
        "subject": {"reference": f"Patient/{p.id}"},
        "performedDateTime": study.date,
    }
    if visit is not None:
        resource["encounter"] = {"reference": f"Encounter/{visit['id']}"}
        if "reasonReference" in visit:
            resource["reasonReference"] = copy.deepcopy(visit["reasonReference"])
    return resource


def report_document(study: Study, p: Patient, visit: dict[str, Any] | None) -> dict[str, Any]:
    """The imaging report as a clinical-note DocumentReference (how US Core apps look for notes)."""
    key = study_key(study)
    text = f"{study.description}, {study.date}: synthetic sandbox report, no findings recorded."
    context: dict[str, Any] = {"related": [{"reference": f"DiagnosticReport/report-{key}"}]}
    if visit is not None:
        context["encounter"] = [{"reference": f"Encounter/{visit['id']}"}]
    context["period"] = {"start": study.date}
    return {
        "resourceType": "DocumentReference",
        "id": f"document-{key}",
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [_coding(LOINC, "18748-4", "Diagnostic imaging study")], "text": study.description},
        "category": [
            {"coding": [_coding(US_CORE_DOCUMENT_CATEGORY, "clinical-note", "Clinical Note")]},
            {"coding": [_coding(LOINC, "LP29684-5", "Radiology")]},
        ],
        "subject": {"reference": f"Patient/{p.id}"},
        "date": f"{study.date}T18:00:00Z",
        "description": f"Imaging report: {study.description}",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode()).decode("ascii"),
                    "title": f"{study.description} report",
                }
            }
        ],
        "context": context,
    }


def chart_records(directory: Directory) -> Iterator[Record]:
    """Every patient's seed chart, then the Procedure and report document of each of their studies."""
    for p in directory.patients.values():
        chart = [chart_resource(raw, p) for raw in p.clinical]
        yield from chart
        for study in p.studies:
            visit = _visit(chart, study)
            yield Record(procedure(study, p, visit), p.id, study.uid)
            yield Record(report_document(study, p, visit), p.id, study.uid)


def check_ties(records: Sequence[Record]) -> None:
    """Refuse duplicate ids, and references from a record to one hidden with another study."""
    tied: dict[str, str | None] = {}
    for record in records:
        key = f"{record.type}/{record.id}"
        if key in tied:
            raise EhrError(f"The seed's clinical record has {key} twice.")
        tied[key] = record.study_uid
    for record in records:
        for name, value in _walk(record.resource):
            if name == "reference" and tied.get(value) not in (None, record.study_uid):
                raise EhrError(
                    f"The seed's {record.type}/{record.id} refers to {value}, which is tied to another study "
                    "and would be hidden with it: tie both to the same study (_study), or neither."
                )
