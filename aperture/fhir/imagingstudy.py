"""Index rows -> FHIR R4 ImagingStudy (SmartImagingStudy profile) and the SmartWadoEndpoint.

Element choices (SMART Imaging Access IG, profiles page, and FHIR R4 ImagingStudy):
- `identifier[0]` is `urn:dicom:uid` / `urn:oid:<StudyInstanceUID>` (clients strip its first 8
  characters); the resource id is the UID itself (a UID's digits and dots are a valid FHIR id).
- `status`: `available` when the index holds instances, `registered` (no series, no endpoint; the
  IG's metadata-only shape) when it holds a study row without any.
- `subject`: the EHR's Patient as an absolute reference `{fhir.ehr_base}/Patient/{id}` when the
  request named that id; always also the DICOM identity as `identifier` (system from
  `fhir.patient_identifier_systems` when the issuer is mapped, else the issuer itself when it is a
  URI). `started` is the StudyDate only: DICOM StudyTime carries no zone, and R4 dateTime with a
  time SHALL have one.
- `basedOn`: the AccessionNumber as a ServiceRequest identifier (type v2-0203 ACSN), as the IG's
  Imaging Identifiers page describes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aperture.config import FhirConfig
from aperture.fhir.patients import DicomPatient
from aperture.store.index import SeriesSummary, StudySummary

DCM = "http://dicom.nema.org/resources/ontology/DCM"
STUDY_PROFILE = "http://fhir.org/argonaut/smart-imaging/StructureDefinition/smart-imaging-study"
ENDPOINT_PROFILE = "http://fhir.org/argonaut/smart-imaging/StructureDefinition/smart-wado-endpoint"
REQUIRES_TOKEN = "http://fhir.org/argonaut/smart-imaging/StructureDefinition/requires-access-token"
ENDPOINT_ID = "dicom-wado-rs"


def instant(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fhir_date(study_date: str) -> str | None:
    if len(study_date) == 8 and study_date.isdigit():
        return f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"
    return None


def subject(study: StudySummary, asked: DicomPatient | None, config: FhirConfig) -> dict[str, Any]:
    system = next((s for s, issuer in config.patient_identifier_systems.items() if issuer == study.issuer), None)
    if system is None and ":" in study.issuer:
        system = study.issuer  # an issuer written as a URI (urn:oid:…) is a system already
    identifier: dict[str, Any] = {"value": study.patient_id} if study.patient_id else {}
    if identifier and system:
        identifier["system"] = system
    out: dict[str, Any] = {"type": "Patient"}
    if asked is not None and asked.ehr_id is not None:
        base = config.ehr_base
        out["reference"] = f"{base}/Patient/{asked.ehr_id}" if base else f"Patient/{asked.ehr_id}"
    if identifier:
        out["identifier"] = identifier
    if "reference" not in out and not identifier:
        out["display"] = "patient without a PatientID"
    return out


def _series(one: SeriesSummary) -> dict[str, Any]:
    out: dict[str, Any] = {"uid": one.series_uid}
    if one.number is not None:
        out["number"] = one.number
    out["modality"] = {"system": DCM, "code": one.modality or "OT"}
    if one.description:
        out["description"] = one.description
    out["numberOfInstances"] = len(one.instances)
    out["instance"] = []
    for instance in one.instances:
        item: dict[str, Any] = {
            "uid": instance.sop_uid,
            "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{instance.sop_class_uid}"},
        }
        if instance.number is not None:
            item["number"] = instance.number
        out["instance"].append(item)
    return out


def imaging_study(
    study: StudySummary,
    series: list[SeriesSummary],
    *,
    asked: DicomPatient | None,
    config: FhirConfig,
    endpoint_reference: str,
) -> dict[str, Any]:
    """The SmartImagingStudy for one indexed study (all from the index; no file is read)."""
    available = bool(series) and study.num_instances > 0
    modalities = list(dict.fromkeys([*study.modalities, *(s.modality for s in series if s.modality)]))
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": study.study_uid,
        "meta": {"lastUpdated": instant(study.updated), "profile": [STUDY_PROFILE]},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.study_uid}"}],
        "status": "available" if available else "registered",
        "modality": [{"system": DCM, "code": m} for m in modalities],
        "subject": subject(study, asked, config),
    }
    started = _fhir_date(study.study_date)
    if started:
        resource["started"] = started
    if study.accession_number:
        resource["basedOn"] = [{
            "type": "ServiceRequest",
            "identifier": {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                "value": study.accession_number,
            },
        }]  # fmt: skip
    if available:
        resource["endpoint"] = [{"reference": endpoint_reference}]
        resource["numberOfSeries"] = len(series)
        resource["numberOfInstances"] = sum(len(s.instances) for s in series)
    if study.description:
        resource["description"] = study.description
    if available:
        resource["series"] = [_series(s) for s in series]
    if not modalities:
        del resource["modality"]  # nothing to say; never an invented code
    return resource


def wado_endpoint(address: str) -> dict[str, Any]:
    """The SmartWadoEndpoint: WADO-RS base, same token required (R1-R4 extension kept, R5/R6 allow it)."""
    return {
        "resourceType": "Endpoint",
        "id": ENDPOINT_ID,
        "meta": {"profile": [ENDPOINT_PROFILE]},
        "extension": [{"url": REQUIRES_TOKEN, "valueBoolean": True}],
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "dicom-wado-rs",
        },
        "name": "Aperture DICOMweb WADO-RS",
        "payloadType": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "code": "any"}]}
        ],  # fmt: skip
        "payloadMimeType": ["application/dicom"],
        "address": address,
    }
