"""What one access token may read and search on the clinical FHIR server, decided once per request.

The scopes say which resource types (`aperture.ehr.scopes.contexts_allowing`, v1 and v2 alike);
the token's context says whose: a `patient/` scope reaches the token's patient, a `user/` scope the
patients its user may act for (a clinician's care-team panel, a proxy's one child), a `system/`
scope the backend client's pre-authorized patients. Within those patients the EHR's own policy
(`aperture.ehr.policy`: consent, what is withheld from a proxy, study-level pre-authorization)
hides studies, and with them their order and report, as if they did not exist. Studies the imaging
server published (`submissions.py`) fall under the same rules: by UID when the seed knows the study,
and, unknown to the seed, reached wherever the patient is reached, but never by a grant of single
studies (as introspection's `unlisted_studies` says: permit by patient, deny by study).

Practitioner is not patient data: any token whose scopes allow the type sees every practitioner.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from aperture.ehr import policy, scopes
from aperture.ehr.errors import InsufficientScope
from aperture.ehr.fhir import records
from aperture.ehr.fhir.params import CHART, PATIENT_COMPARTMENT
from aperture.ehr.fhir.records import Confinement
from aperture.ehr.people import Directory
from aperture.ehr.preauthorization import find_preauthorization
from aperture.ehr.tokens import AccessToken

_VERBS = {"r": "read", "s": "search"}


@dataclass(frozen=True)
class Access:
    """The patients a token reaches for one resource type and interaction, and the studies hidden from it."""

    resource_type: str
    patients: frozenset[str] | None  # None: not patient data, every instance
    hidden_studies: frozenset[str]
    by_study: frozenset[str] = frozenset()  # patients whose records only a study reaches (tied to it)

    def confinement(self) -> Confinement:
        return Confinement(self.patients, self.hidden_studies, self.by_study)

    def reaches(self, patient: str | None, study_uid: str | None) -> bool:
        if study_uid is None and patient in self.by_study:
            return False
        return (self.patients is None or patient in self.patients) and study_uid not in self.hidden_studies


def access(engine: Engine, directory: Directory, token: AccessToken, resource_type: str, permission: str) -> Access:
    """What `token` may `permission` ('r' or 's') of `resource_type`; InsufficientScope if nothing."""
    contexts = scopes.contexts_allowing(token.scope, resource_type, permission)
    verb = _VERBS[permission]
    if not contexts:
        raise InsufficientScope(f"The token's scopes do not allow {verb} on {resource_type}.")
    if resource_type not in PATIENT_COMPARTMENT:
        return Access(resource_type, None, frozenset())
    accessor = token.user
    reached: dict[str, frozenset[str] | None] = {}  # patient -> the study UIDs reached (None: all of them)
    if "patient" in contexts and token.patient in directory.patients:
        reached[token.patient] = None
    if "user" in contexts and token.user is not None:
        for patient_id in directory.patients_for_reference(token.user):
            reached.setdefault(patient_id, None)
    if "system" in contexts and token.user is None:
        accessor = f"Client/{token.client_id}"  # as introspection names a backend client (aperture.ehr.policy)
        grant = find_preauthorization(engine, token.client_id)
        for patient_id in sorted(grant.reached_patients()):
            reached.setdefault(patient_id, grant.studies_of(patient_id))
    if not reached:
        raise InsufficientScope(f"The token reaches no patient to {verb} {resource_type} of.")
    hidden = {
        study.uid
        for patient_id, studies in reached.items()
        for study in policy.patient_reach(directory.patients[patient_id], accessor, studies).withheld
    }
    for patient_id, studies in reached.items():
        if studies is not None:  # reached by study: what the seed does not list (published later) is not reached
            hidden |= records.study_uids_of(engine, patient_id) - studies
    by_study = frozenset(p for p, studies in reached.items() if studies is not None and resource_type in CHART)
    return Access(resource_type, frozenset(reached), frozenset(hidden), by_study)
