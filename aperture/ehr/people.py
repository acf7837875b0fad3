"""The sandbox's people, from one seed file: patients, proxies (RelatedPerson), clinicians, and their logins.

One file (`seed.json` beside this module) holds them so the demo can generate DICOM studies for the
same patients: a patient's MRN value is the DICOM PatientID and its identifier system maps to the
IssuerOfPatientID (`identifier_systems`); each study names its StudyInstanceUID and accession number
and, where policy restricts it, who may not see it (`withheld_from`, `patient_only`). A patient's
`clinical` records (allergies, problems, medications, observations, visits) are carried as written;
the FHIR server makes resources of them.

Who may act for whom is decided here and nowhere else: a user may see their own record, the records
of patients they are a proxy for (through a RelatedPerson), and, for a clinician, the care-team
panel. The FHIR reference the user acts as depends on the patient: Elena is `Patient/elena-alvarez`
for her own record and `RelatedPerson/elena-for-maya` for her daughter's, which is what lets a
resource server tell a proxy from the patient.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aperture.ehr.errors import EhrError

SEED_FILE = Path(__file__).with_name("seed.json")


@dataclass(frozen=True)
class Study:
    uid: str
    accession: str
    modality: str
    description: str
    date: str
    withheld_from: tuple[str, ...] = ()  # FHIR references of users who may not see it
    patient_only: bool = False  # consent: nobody but the patient
    number_of_series: int | None = None  # when the seed knows them (ImagingStudy.numberOfSeries)
    number_of_instances: int | None = None


@dataclass(frozen=True)
class Patient:
    id: str
    mrn_system: str
    mrn: str
    given: tuple[str, ...]
    family: str
    gender: str
    birth_date: str
    studies: tuple[Study, ...] = ()
    # The chart beyond imaging as the seed writes it (`clinical`): made FHIR by aperture.ehr.fhir.clinical.
    clinical: tuple[dict[str, Any], ...] = field(default=(), hash=False)

    @property
    def display_name(self) -> str:
        return f"{' '.join(self.given)} {self.family}"


@dataclass(frozen=True)
class RelatedPerson:
    id: str
    patient: str
    relationship: str  # v3 RoleCode, e.g. MTH
    given: tuple[str, ...]
    family: str


@dataclass(frozen=True)
class Practitioner:
    id: str
    given: tuple[str, ...]
    family: str
    prefix: tuple[str, ...]
    care_team: tuple[str, ...]


@dataclass(frozen=True)
class User:
    """A person who signs in to the sandbox."""

    login: str
    password: str  # the documented demo password; only its hash is stored
    patient: str | None = None  # their own record
    practitioner: str | None = None
    proxy_for: tuple[str, ...] = ()  # RelatedPerson ids


@dataclass(frozen=True)
class Directory:
    patients: dict[str, Patient]
    related_persons: dict[str, RelatedPerson]
    practitioners: dict[str, Practitioner]
    users: dict[str, User]
    issuers: dict[str, str] = field(default_factory=dict)  # MRN system -> DICOM IssuerOfPatientID

    def user(self, login: str) -> User | None:
        return self.users.get(login)

    def patients_for(self, user: User) -> list[Patient]:
        """The patients `user` may act for, own record first, in seed order after that."""
        ids: list[str] = []
        if user.patient:
            ids.append(user.patient)
        ids += [self.related_persons[rp].patient for rp in user.proxy_for]
        if user.practitioner:
            ids += list(self.practitioners[user.practitioner].care_team)
        return [self.patients[i] for i in dict.fromkeys(ids)]

    def may_see(self, user: User, patient_id: str) -> bool:
        return any(p.id == patient_id for p in self.patients_for(user))

    def acting_as(self, user: User, patient_id: str | None) -> str:
        """The FHIR reference `user` acts as for `patient_id` (fhirUser): themself, or their RelatedPerson."""
        if user.practitioner:
            return f"Practitioner/{user.practitioner}"
        if patient_id is not None and patient_id != user.patient:
            for rp in user.proxy_for:
                if self.related_persons[rp].patient == patient_id:
                    return f"RelatedPerson/{rp}"
        if user.patient:
            return f"Patient/{user.patient}"
        if user.proxy_for:  # someone with no record of their own (Arjun) acts as their proxy
            return f"RelatedPerson/{user.proxy_for[0]}"
        raise EhrError(f"User {user.login!r} has no FHIR identity in the seed file.")

    def user_for_reference(self, reference: str) -> User | None:
        """The user behind a fhirUser reference (Patient/…, RelatedPerson/…, Practitioner/…)."""
        kind, _, ident = reference.partition("/")
        for user in self.users.values():
            if (
                (kind == "Patient" and user.patient == ident)
                or (kind == "Practitioner" and user.practitioner == ident)
                or (kind == "RelatedPerson" and ident in user.proxy_for)
            ):
                return user
        return None

    def patients_for_reference(self, reference: str) -> list[str]:
        """Patient ids a fhirUser reference may reach: a RelatedPerson reaches only its one patient."""
        kind, _, ident = reference.partition("/")
        if kind == "RelatedPerson":
            related = self.related_persons.get(ident)
            return [related.patient] if related else []
        user = self.user_for_reference(reference)
        if user is None:
            return []
        if kind == "Patient":
            return [user.patient] if user.patient else []
        return [p.id for p in self.patients_for(user)]


def _names(raw: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    return tuple(raw["given"]), str(raw["family"])


def parse_directory(document: dict[str, Any]) -> Directory:
    """Build the directory from the seed document, refusing references that point nowhere."""
    patients: dict[str, Patient] = {}
    for raw in document["patients"]:
        given, family = _names(raw["name"])
        studies = tuple(
            Study(
                uid=s["uid"],
                accession=s["accession"],
                modality=s["modality"],
                description=s["description"],
                date=s["date"],
                withheld_from=tuple(s.get("withheld_from", ())),
                patient_only=bool(s.get("patient_only", False)),
                number_of_series=s.get("number_of_series"),
                number_of_instances=s.get("number_of_instances"),
            )
            for s in raw.get("studies", ())
        )
        patients[raw["id"]] = Patient(
            raw["id"],
            raw["mrn"]["system"],
            raw["mrn"]["value"],
            given,
            family,
            raw["gender"],
            raw["birth_date"],
            studies,
            tuple(raw.get("clinical", ())),
        )
    related = {}
    for raw in document.get("related_persons", ()):
        given, family = _names(raw["name"])
        related[raw["id"]] = RelatedPerson(raw["id"], raw["patient"], raw["relationship"], given, family)
    practitioners = {}
    for raw in document.get("practitioners", ()):
        given, family = _names(raw["name"])
        practitioners[raw["id"]] = Practitioner(
            raw["id"], given, family, tuple(raw["name"].get("prefix", ())), tuple(raw.get("care_team", ()))
        )
    users = {
        raw["login"]: User(
            raw["login"], raw["password"], raw.get("patient"), raw.get("practitioner"), tuple(raw.get("proxy_for", ()))
        )
        for raw in document["users"]
    }
    issuers = {raw["system"]: raw["issuer_of_patient_id"] for raw in document.get("identifier_systems", ())}
    directory = Directory(patients, related, practitioners, users, issuers)
    _check(directory)
    return directory


def _check(directory: Directory) -> None:
    dangling = [rp.patient for rp in directory.related_persons.values() if rp.patient not in directory.patients]
    dangling += [p for pr in directory.practitioners.values() for p in pr.care_team if p not in directory.patients]
    for user in directory.users.values():
        dangling += [user.patient] if user.patient and user.patient not in directory.patients else []
        dangling += [rp for rp in user.proxy_for if rp not in directory.related_persons]
        if user.practitioner and user.practitioner not in directory.practitioners:
            dangling.append(user.practitioner)
    dangling += [p.mrn_system for p in directory.patients.values() if p.mrn_system not in directory.issuers]
    if dangling:
        raise EhrError(f"The seed file refers to ids it does not define: {', '.join(sorted(set(dangling)))}")


@cache
def load_directory(path: Path = SEED_FILE) -> Directory:
    """The seed file's directory (read once per process)."""
    return parse_directory(json.loads(path.read_text(encoding="utf-8")))
