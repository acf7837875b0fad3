"""Which DICOM patient a FHIR `patient` search value names: issuer-qualified, always.

The imaging server knows a study's PatientID (0010,0020) and IssuerOfPatientID (0010,0021), not
the EHR's logical Patient id. Two ways in (docs/fhir.md#patients):

- `patient.identifier=system|value` (FHIR R4 chained search on the Patient's identifier): `system`
  is looked up in `fhir.patient_identifier_systems` (identifier system URI -> DICOM issuer), as
  the EHR sandbox links a Patient's MRN to the issuer of its studies (aperture/ehr/seed.json).
- `patient=<id>` or `patient=Patient/<id>`: goes through `resolve_patient`. Under `--auth smart`
  the binding is the token's: the EHR's id must be one the token reaches (else 403), and the
  patient's studies are those of its issuer-qualified identifiers, as the policy put them in the
  request's AccessScope (`aperture.auth.policy.narrowed`).

A PatientID of another issuer is another person: no lookup ever matches on PatientID alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from aperture.auth.requirements import AUDIT_PATIENT, current_decision
from aperture.config import FhirConfig
from aperture.dicom.identifiers import PatientKey
from aperture.errors import Forbidden, InvalidRequest


@dataclass(frozen=True)
class DicomPatient:
    """A patient as the index knows one; `ehr_id` is the EHR's Patient id when the request named it.

    `patient_id` None (under --auth smart): the patient is the one the request's narrowed
    AccessScope reaches, possibly under several issuer-qualified identifiers.
    """

    patient_id: str | None
    issuer: str | None
    ehr_id: str | None = None


def resolve_patient(request: Request, value: str) -> DicomPatient:
    """The DICOM patient that `patient=<value>` (`123` or `Patient/123`) names.

    Under `--auth smart` (after `authorize`) the id must be one the token reaches; its DICOM
    identities are in the request's Decision. Under `--auth none` there is no binding: the value is
    taken as a PatientID of the configured `fhir.default_issuer`, and without one the search is
    refused (400) rather than guessed.
    """
    config: FhirConfig = request.app.state.config.fhir
    reference = value.removeprefix("Patient/")
    if not reference or "/" in reference:
        raise InvalidRequest(f"patient={value[:80]!r} is not a Patient id (write 123 or Patient/123).")
    decision = current_decision(request)
    if decision is not None and decision.bound:
        request.scope[AUDIT_PATIENT] = reference  # the patient asked about, in the audit of a permit or a deny
        if decision.patient(reference) is None:
            raise Forbidden(f"patient={value[:80]!r} is not a patient this access token reaches.")
        return DicomPatient(None, None, ehr_id=reference)
    if not config.default_issuer:
        raise InvalidRequest(
            "patient=<id> cannot be mapped to a DICOM patient on this server: no EHR binding is available "
            "(--auth none) and fhir.default_issuer is not set. Search with "
            "patient.identifier=<system>|<MRN> instead, or set fhir.default_issuer (docs/fhir.md#patients)."
        )
    return DicomPatient(reference, config.default_issuer, ehr_id=reference)


def patient_by_identifier(request: Request, token: str) -> DicomPatient:
    """`patient.identifier=system|value` as a DICOM patient, through `fhir.patient_identifier_systems`."""
    config: FhirConfig = request.app.state.config.fhir
    system, bar, value = token.partition("|")
    if not bar or not system or not value:
        raise InvalidRequest(
            f"patient.identifier={token[:80]!r} must be <system>|<value>: the system names the issuer "
            "(a value alone is ambiguous across issuers)."
        )
    issuer = config.patient_identifier_systems.get(system)
    if issuer is None:
        known = ", ".join(sorted(config.patient_identifier_systems)) or "none configured"
        raise InvalidRequest(
            f"Identifier system {system[:120]!r} is not mapped to a DICOM issuer "
            f"(fhir.patient_identifier_systems; known: {known})."
        )
    decision = current_decision(request)
    if decision is not None and decision.bound:
        key = PatientKey(value, issuer).text
        reached = next((p for p in decision.patients if key in p.keys), None)
        if reached is None:
            raise Forbidden(f"patient.identifier={token[:80]!r} is not a patient this access token reaches.")
        return DicomPatient(None, None, ehr_id=reached.ehr_id)
    return DicomPatient(value, issuer)
