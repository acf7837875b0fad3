"""What a backend client is pre-authorized for: whole patients, or single studies of a patient.

SMART Backend Services tokens carry `system/` scopes and no patient, and a `system/` scope grants
only the client's pre-authorized access, never every patient (SMART Imaging Access §Backend
Services). The EHR's admin records that access when registering the client (`aperture ehr clients
add --kind backend --patients ... --studies ...`); the FHIR server enforces it and introspection
passes it on to the imaging server (`aperture.ehr.policy`).

It is kept in its own table, one row per (client, patient, study), where an empty study means every
study of the patient. A study is named by its StudyInstanceUID and must be one the EHR knows, so the
row can name its patient too and nothing dangles.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select

from aperture.ehr.errors import InvalidClientMetadata
from aperture.ehr.people import Directory
from aperture.ehr.store import preauthorizations

EVERY_STUDY = ""


@dataclass(frozen=True)
class Preauthorization:
    """A backend client's reach: patients in full, and single studies (StudyInstanceUID -> patient id)."""

    patients: frozenset[str] = frozenset()
    studies: tuple[tuple[str, str], ...] = ()  # (patient id, StudyInstanceUID)

    def reached_patients(self) -> frozenset[str]:
        """Every patient the client reaches at all: in full, or through one of their studies."""
        return self.patients | {patient for patient, _ in self.studies}

    def studies_of(self, patient_id: str) -> frozenset[str] | None:
        """The study UIDs of `patient_id` the client reaches; None means all of them."""
        if patient_id in self.patients:
            return None
        return frozenset(uid for patient, uid in self.studies if patient == patient_id)

    def describe(self) -> dict[str, list[str]]:
        """For `aperture ehr clients add/list`: what the admin registered."""
        answer: dict[str, list[str]] = {}
        if self.patients:
            answer["patients"] = sorted(self.patients)
        if self.studies:
            answer["studies"] = [uid for _, uid in self.studies]
        return answer


def check_preauthorization(
    directory: Directory, kind: str, patients: Collection[str], studies: Collection[str]
) -> Preauthorization:
    """Resolve the admin's lists against the directory, refusing ids the EHR does not know."""
    if (patients or studies) and kind != "backend":
        raise InvalidClientMetadata(
            "Only backend clients are pre-authorized (--patients, --studies); an app reaches what its user may."
        )
    unknown = [p for p in patients if p not in directory.patients]
    if unknown:
        raise InvalidClientMetadata(
            f"No patient {unknown[0]!r} in the sandbox; known: {', '.join(directory.patients)}."
        )
    owner = {study.uid: patient.id for patient in directory.patients.values() for study in patient.studies}
    missing = [uid for uid in studies if uid not in owner]
    if missing:
        raise InvalidClientMetadata(f"No study with StudyInstanceUID {missing[0]!r} in the sandbox.")
    pairs = tuple(dict.fromkeys((owner[uid], uid) for uid in studies))
    return Preauthorization(frozenset(patients), pairs)


def store_preauthorization(engine: Engine, client_id: str, grant: Preauthorization) -> None:
    rows = [{"client_id": client_id, "patient": p, "study": EVERY_STUDY} for p in sorted(grant.patients)]
    rows += [{"client_id": client_id, "patient": p, "study": uid} for p, uid in grant.studies]
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(preauthorizations), rows)


def find_preauthorization(engine: Engine, client_id: str) -> Preauthorization:
    """The client's pre-authorization; empty (reaching nothing) for a client without one."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(preauthorizations.c.patient, preauthorizations.c.study).where(
                preauthorizations.c.client_id == client_id
            )
        ).all()
    patients = frozenset(patient for patient, study in rows if study == EVERY_STUDY)
    studies = tuple((patient, study) for patient, study in rows if study != EVERY_STUDY)
    return Preauthorization(patients, studies)
