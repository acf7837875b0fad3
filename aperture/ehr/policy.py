"""The EHR's imaging policy for one token, passed on as RFC 9396 `authorization_details`.

Proxy access, consent and sensitive studies are the EHR's policy, and the imaging server must apply
it without policy logic of its own (SMART Imaging Access: "underlying permissions"). So for every
token that may read or search ImagingStudy, the EHR lists, per patient the token reaches, which of
that patient's studies it may see and which are withheld, by StudyInstanceUID and accession number,
in one `authorization_details` entry of type `IMAGING_STUDY_ACCESS` (docs/authorization.md has the
format and what a resource server does with it, and without it).

Who reaches which patient:
- `patient/` scopes: the token's patient;
- `user/` scopes: the patients the user may act for (a RelatedPerson: its one patient);
- `system/` scopes (no user): the backend client's pre-authorized patients or studies, never all.

Which studies, for the FHIR reference the user acts as (`accessor`):
- the patient themself sees every study of their own;
- a study under consent (`patient_only`) is withheld from everyone else;
- a study `withheld_from` a reference (a parent's proxy access) is withheld from that reference;
- with no known accessor (a token minted without a user), every restricted study is withheld;
- a backend client pre-authorized for single studies sees only those.

Every study the EHR knows for a reached patient is in exactly one of the two lists. Studies the EHR
does not know (`unlisted_studies`) are permitted where access is by patient, and denied where it is
by study. The client's own token response gets the same entries without the withheld list (RFC 9396
§7 lets the AS omit values): an app must not learn what is being hidden from its user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine

from aperture.ehr import scopes
from aperture.ehr.config import EhrConfig
from aperture.ehr.people import Directory, Patient, Study, load_directory
from aperture.ehr.preauthorization import Preauthorization, find_preauthorization

IMAGING_STUDY_ACCESS = "http://aperture.example.org/auth/imaging-study-access"
IMAGING_RESOURCE = "ImagingStudy"

Unlisted = Literal["permit", "deny"]


@dataclass(frozen=True)
class PatientReach:
    """One patient a token reaches, and how far into their studies."""

    patient: Patient
    permitted: tuple[Study, ...]
    withheld: tuple[Study, ...]
    unlisted: Unlisted


def imaging_contexts(scope: str) -> frozenset[str]:
    """The contexts (patient, user, system) in which `scope` allows reading or searching ImagingStudy."""
    readable = scopes.contexts_allowing(scope, IMAGING_RESOURCE, "r")
    return readable | scopes.contexts_allowing(scope, IMAGING_RESOURCE, "s")


def visible_to(study: Study, patient: Patient, accessor: str | None) -> bool:
    """Whether `accessor` (a FHIR reference, or None when nobody is known) may see `study` of `patient`."""
    if accessor == f"Patient/{patient.id}":
        return True
    if study.patient_only:
        return False
    if accessor is None:
        return not study.withheld_from
    return accessor not in study.withheld_from


def patient_reach(patient: Patient, accessor: str | None, studies: frozenset[str] | None = None) -> PatientReach:
    """Split `patient`'s studies for `accessor`; `studies` narrows to those UIDs (None: by patient)."""
    permitted: list[Study] = []
    withheld: list[Study] = []
    for study in patient.studies:
        allowed = visible_to(study, patient, accessor) and (studies is None or study.uid in studies)
        (permitted if allowed else withheld).append(study)
    return PatientReach(patient, tuple(permitted), tuple(withheld), "permit" if studies is None else "deny")


def token_reach(
    directory: Directory,
    *,
    scope: str,
    client_id: str,
    patient: str | None,
    user: str | None,
    preauthorization: Preauthorization | None = None,
) -> list[PatientReach]:
    """Every patient the token reaches for imaging, in a stable order, once each."""
    contexts = imaging_contexts(scope)
    reach: dict[str, PatientReach] = {}
    if "patient" in contexts and patient in directory.patients:
        reach[patient] = patient_reach(directory.patients[patient], user)
    if "user" in contexts and user is not None:
        for patient_id in directory.patients_for_reference(user):
            reach.setdefault(patient_id, patient_reach(directory.patients[patient_id], user))
    if "system" in contexts and user is None and preauthorization is not None:
        accessor = f"Client/{client_id}"  # no FHIR identity: only the consent restriction can name it
        for patient_id in sorted(preauthorization.reached_patients()):
            studies = preauthorization.studies_of(patient_id)
            reach.setdefault(patient_id, patient_reach(directory.patients[patient_id], accessor, studies))
    return list(reach.values())


def _study(study: Study) -> dict[str, str]:
    return {"study_instance_uid": study.uid, "accession_number": study.accession}


def authorization_details(reach: list[PatientReach], locations: tuple[str, ...]) -> list[dict[str, Any]]:
    """The RFC 9396 entries for introspection: one per patient, with permitted and withheld studies."""
    return [
        {
            "type": IMAGING_STUDY_ACCESS,
            "locations": list(locations),
            "patient": item.patient.id,
            "patient_identifiers": [{"system": item.patient.mrn_system, "value": item.patient.mrn}],
            "permitted_studies": [_study(s) for s in item.permitted],
            "withheld_studies": [_study(s) for s in item.withheld],
            "unlisted_studies": item.unlisted,
        }
        for item in reach
    ]


def for_client(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries as the app itself may see them: without what is withheld from its user."""
    return [{k: v for k, v in entry.items() if k != "withheld_studies"} for entry in details]


def details_for_token(
    engine: Engine,
    config: EhrConfig,
    directory: Directory,
    *,
    scope: str,
    client_id: str,
    patient: str | None,
    user: str | None,
) -> list[dict[str, Any]]:
    """What introspection says of a token: its entries, or [] when it has no imaging scope."""
    backend = user is None and "system" in imaging_contexts(scope)
    preauthorization = find_preauthorization(engine, client_id) if backend else None
    reach = token_reach(
        directory, scope=scope, client_id=client_id, patient=patient, user=user, preauthorization=preauthorization
    )
    return authorization_details(reach, config.audiences)


def system_patients(engine: Engine, client_id: str) -> frozenset[str]:
    """The patients a backend client's `system/` scopes reach at all (for the clinical FHIR server)."""
    return find_preauthorization(engine, client_id).reached_patients()


def attach_details(
    engine: Engine,
    config: EhrConfig,
    response: dict[str, Any],
    *,
    client_id: str,
    patient: str | None,
    user: str | None,
) -> None:
    """Add the token's entries, as its client may see them, to a token response (RFC 9396 §7)."""
    if not config.authorization_details:
        return
    details = details_for_token(
        engine, config, load_directory(), scope=response["scope"], client_id=client_id, patient=patient, user=user
    )
    if details:
        response["authorization_details"] = for_client(details)
