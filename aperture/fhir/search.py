"""The ImagingStudy search parameters this server answers, checked: SMART Imaging `smart-imaging-server`.

`patient` (or the chained `patient.identifier`) is required: the IG's search combinations all name
a patient, and without one the answer has no subject. `identifier` is the study's UID as
`urn:oid:<UID>` (optionally with the `urn:dicom:uid|` system), `_lastUpdated` may repeat (`ge`
and `lt` make a window), `_include=ImagingStudy:endpoint` is accepted (the Endpoint is on every
page anyway), `_count` sizes the page and `_page_after` is the cursor that `next` links carry.
Other parameters are ignored, as R4 §3.1.1.2.1 allows a server without `Prefer: handling=strict`;
the `self` link lists only the parameters that were applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from aperture.config import FhirConfig
from aperture.dicom.identifiers import uid_problem
from aperture.errors import InvalidRequest
from aperture.fhir.dates import updated_bounds
from aperture.fhir.patients import DicomPatient, patient_by_identifier, resolve_patient

INCLUDES = ("ImagingStudy:endpoint",)


@dataclass(frozen=True)
class StudySearch:
    patient: DicomPatient
    study_uid: str | None
    updated_from: int | None
    updated_before: int | None
    count: int
    after_pk: int | None
    applied: tuple[tuple[str, str], ...]  # the parameters used, in order, for self and next links


def parse_search(request: Request) -> StudySearch:
    config: FhirConfig = request.app.state.config.fhir
    params = request.query_params
    applied: list[tuple[str, str]] = []
    patients = params.getlist("patient")
    chained = params.getlist("patient.identifier")
    if len(patients) + len(chained) != 1:
        raise InvalidRequest(
            "Search ImagingStudy with exactly one patient: patient=<id> (or Patient/<id>) or "
            "patient.identifier=<system>|<value>."
        )
    if patients:
        patient = resolve_patient(request, patients[0])
        applied.append(("patient", patients[0]))
    else:
        patient = patient_by_identifier(request, chained[0])
        applied.append(("patient.identifier", chained[0]))
    study_uid = None
    identifiers = params.getlist("identifier")
    if len(identifiers) > 1:
        raise InvalidRequest("Give at most one identifier (urn:oid:<StudyInstanceUID>).")
    if identifiers:
        study_uid = _study_uid(identifiers[0])
        applied.append(("identifier", identifiers[0]))
    last_updated = params.getlist("_lastUpdated")
    updated_from, updated_before = updated_bounds(last_updated)
    applied += [("_lastUpdated", v) for v in last_updated]
    for include in params.getlist("_include"):
        if include not in INCLUDES:
            raise InvalidRequest(
                f"_include={include[:60]!r} is not supported; this server includes ImagingStudy:endpoint."
            )
        applied.append(("_include", include))
    count = _integer(params.get("_count"), "_count", config.default_count)
    if count < 1:
        raise InvalidRequest("_count must be at least 1.")
    count = min(count, config.max_count)
    applied.append(("_count", str(count)))
    after = params.get("_page_after")
    after_pk = None if after is None else _integer(after, "_page_after", 0)
    return StudySearch(patient, study_uid, updated_from, updated_before, count, after_pk, tuple(applied))


def _study_uid(token: str) -> str:
    system, bar, value = token.rpartition("|")
    if bar and system != "urn:dicom:uid":
        raise InvalidRequest(
            f"identifier system {system[:80]!r} is not served; studies are identified by urn:dicom:uid."
        )
    if not value.startswith("urn:oid:"):
        raise InvalidRequest(f"identifier={token[:80]!r} must be urn:oid:<StudyInstanceUID>.")
    uid = value.removeprefix("urn:oid:")
    problem = uid_problem(uid)
    if problem:
        raise InvalidRequest(f"identifier {token[:80]!r} does not hold a valid UID: {problem}.")
    return uid


def _integer(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise InvalidRequest(f"{name}={value[:20]!r} must be a whole number.")
    return int(value)
