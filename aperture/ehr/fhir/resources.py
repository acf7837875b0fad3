"""The sandbox's clinical record as FHIR R4 resources, built from the seed people and studies.

One seed file feeds the EHR and the demo's DICOM, so every identifier here is one the imaging
server will see too: the Patient's MRN (`system` maps to IssuerOfPatientID through the seed's
`identifier_systems`, `value` is the PatientID), the accession number on the ServiceRequest (the
order the RIS fulfils) and on the ImagingStudy, and the StudyInstanceUID as `urn:oid:` on the
ImagingStudy and on the DiagnosticReport's reference to it. ImagingStudy is the EHR's own index
of a patient's imaging; its contained Endpoint is the imaging server's WADO-RS base from config,
so an app can go from a study straight to its pixels with the same token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aperture.ehr.people import Directory, Patient, Practitioner, RelatedPerson, Study

DICOM_UID = "urn:dicom:uid"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
# Accession numbers are assigned by the sandbox hospital's RIS; the DICOM side carries the value alone.
ACCESSION_SYSTEM = "http://aperture.example.org/fhir/sid/accession"
REQUIRES_ACCESS_TOKEN = "http://fhir.org/argonaut/smart-imaging/StructureDefinition/requires-access-token"
SMART_IMAGING_STUDY = "http://fhir.org/argonaut/smart-imaging/StructureDefinition/smart-imaging-study"
SMART_WADO_ENDPOINT = "http://fhir.org/argonaut/smart-imaging/StructureDefinition/smart-wado-endpoint"
ENDPOINT_ID = "wado-rs"  # the contained Endpoint's local id (referenced as #wado-rs)
ORDERING_PRACTITIONER = "dr-chen"


@dataclass(frozen=True)
class Record:
    """One stored resource: its JSON, the patient whose compartment holds it, and the study it is about."""

    resource: dict[str, Any]
    patient: str | None = None  # None: not patient data (Practitioner)
    study_uid: str | None = None  # set on the resources that would reveal a study

    @property
    def type(self) -> str:
        return str(self.resource["resourceType"])

    @property
    def id(self) -> str:
        return str(self.resource["id"])


def study_key(study: Study) -> str:
    """The id stem of a study's resources: its accession number, which is unique and id-safe."""
    return study.accession.lower()


def _human_name(given: tuple[str, ...], family: str, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    name: dict[str, Any] = {"use": "official", "family": family, "given": list(given)}
    if prefix:
        name["prefix"] = list(prefix)
    name["text"] = " ".join([*prefix, *given, family])
    return name


def _accession(study: Study) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
        "system": ACCESSION_SYSTEM,
        "value": study.accession,
    }


def study_identifier(study: Study) -> dict[str, str]:
    return {"system": DICOM_UID, "value": f"urn:oid:{study.uid}"}


def patient(p: Patient) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": p.id,
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                "system": p.mrn_system,
                "value": p.mrn,
            }  # fmt: skip
        ],
        "active": True,
        "name": [{"use": "official", "family": p.family, "given": list(p.given)}],
        "gender": p.gender,
        "birthDate": p.birth_date,
    }


def related_person(rp: RelatedPerson) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "id": rp.id,
        "active": True,
        "patient": {"reference": f"Patient/{rp.patient}"},
        "relationship": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": rp.relationship}]}
        ],
        "name": [_human_name(rp.given, rp.family)],
    }


def practitioner(pr: Practitioner) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": pr.id,
        "active": True,
        "name": [_human_name(pr.given, pr.family, pr.prefix)],
    }


def service_request(study: Study, p: Patient) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": f"order-{study_key(study)}",
        "identifier": [_accession(study)],
        "status": "completed",
        "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": "363679005", "display": "Imaging"}]}],
        "code": {"text": study.description},
        "subject": {"reference": f"Patient/{p.id}"},
        "authoredOn": study.date,
        "requester": {"reference": f"Practitioner/{ORDERING_PRACTITIONER}"},
    }


def diagnostic_report(study: Study, p: Patient) -> dict[str, Any]:
    """The imaging report; it names its study by the `urn:oid:` StudyInstanceUID, as the IG asks."""
    key = study_key(study)
    return {
        "resourceType": "DiagnosticReport",
        "id": f"report-{key}",
        "identifier": [_accession(study)],
        "basedOn": [{"reference": f"ServiceRequest/order-{key}"}],
        "status": "final",
        "category": [
            {"coding": [{"system": LOINC, "code": "LP29684-5", "display": "Radiology"}]},
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]},
        ],
        "code": {
            "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}],
            "text": study.description,
        },
        "subject": {"reference": f"Patient/{p.id}"},
        "effectiveDateTime": study.date,
        "issued": f"{study.date}T18:00:00Z",
        "imagingStudy": [
            {"reference": f"ImagingStudy/{key}", "identifier": study_identifier(study), "display": study.description}
        ],
        "conclusion": f"{study.description}: synthetic sandbox report, no findings recorded.",
    }


def wado_endpoint(address: str) -> dict[str, Any]:
    """The SMART WADO-RS Endpoint: apps append /studies/{uid} to `address` and send the same token."""
    return {
        "resourceType": "Endpoint",
        "id": ENDPOINT_ID,
        "meta": {"profile": [SMART_WADO_ENDPOINT]},
        "extension": [{"url": REQUIRES_ACCESS_TOKEN, "valueBoolean": True}],
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "dicom-wado-rs",
        },
        "payloadType": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "code": "any"}]}
        ],
        "address": address,
    }


def imaging_study(study: Study, p: Patient, wado_rs_base: str) -> dict[str, Any]:
    """The EHR's index entry for one study; without a configured WADO-RS base it has no endpoint."""
    key = study_key(study)
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": key,
        "identifier": [study_identifier(study), _accession(study)],
        "status": "available",
        "modality": [{"system": DCM, "code": study.modality}],
        "subject": {"reference": f"Patient/{p.id}"},
        "started": study.date,
        "basedOn": [{"reference": f"ServiceRequest/order-{key}"}],
        "description": study.description,
    }
    if study.number_of_series is not None:
        resource["numberOfSeries"] = study.number_of_series
    if study.number_of_instances is not None:
        resource["numberOfInstances"] = study.number_of_instances
    if wado_rs_base:
        resource["meta"] = {"profile": [SMART_IMAGING_STUDY]}
        resource["contained"] = [wado_endpoint(wado_rs_base)]
        resource["endpoint"] = [{"reference": f"#{ENDPOINT_ID}"}]
    return resource


def seed_records(directory: Directory, wado_rs_base: str) -> Iterator[Record]:
    """Every resource of the sandbox's record, each with the patient and study it belongs to."""
    for pr in directory.practitioners.values():
        yield Record(practitioner(pr))
    for rp in directory.related_persons.values():
        yield Record(related_person(rp), rp.patient)
    for p in directory.patients.values():
        yield Record(patient(p), p.id)
        for study in p.studies:
            yield Record(service_request(study, p), p.id, study.uid)
            yield Record(diagnostic_report(study, p), p.id, study.uid)
            yield Record(imaging_study(study, p, wado_rs_base), p.id, study.uid)
