"""The sole producer of `AccessScope` values.

- `allow_everything`: `aperture serve --auth none` (the server warns loudly at startup).
- `for_token`: `--auth smart`, the EHR's decision for one verified token (docs/authorization.md
  §What an imaging server does): which issuer-qualified patients and which of their studies it
  reaches. The store then filters in SQL; nothing here reads the index.
- `restricted`: the same shape built directly, for the store's own tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aperture.auth.tokens import ImagingAccess, TokenFacts
from aperture.dicom.identifiers import PatientKey
from aperture.store.scope import _ISSUER, AccessScope


def allow_everything(*, may_write: bool = True, may_delete: bool = True) -> AccessScope:
    """Every study (`--auth none`); writing and deleting as the request's action needs."""
    return AccessScope(None, frozenset(), frozenset(), may_write, may_delete, _ISSUER)


def restricted(
    *,
    patient_keys: Iterable[str] | None = None,
    study_grants: Iterable[tuple[str, str]] = (),
    withheld_study_uids: Iterable[str] = (),
    may_write: bool = False,
    may_delete: bool = False,
) -> AccessScope:
    """Reads limited to whole patients (`patient_keys`) and single (patient key, study UID) grants.

    `patient_keys` None with no grants means every patient; with grants, only the grants.
    """
    grants = frozenset(study_grants)
    keys = frozenset(patient_keys) if patient_keys is not None else (frozenset() if grants else None)
    return AccessScope(keys, grants, frozenset(withheld_study_uids), may_write, may_delete, _ISSUER)


@dataclass(frozen=True)
class ReachedPatient:
    """One patient a token reaches: the EHR's id and the DICOM identities its identifiers map to."""

    ehr_id: str
    identities: tuple[PatientKey, ...]  # each (PatientID, IssuerOfPatientID) it is known by here
    identifiers: tuple[tuple[str, str], ...]  # the EHR's (system, value), as the EHR sent them

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(identity.text for identity in self.identities)


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one request: the scope the store obeys and whom it is for (audit, FHIR)."""

    scope: AccessScope
    patients: tuple[ReachedPatient, ...]  # None of them for `--auth none`: there is no binding
    bound: bool  # True under --auth smart: only `patients` exist for this request

    def patient(self, ehr_id: str) -> ReachedPatient | None:
        return next((p for p in self.patients if p.ehr_id == ehr_id), None)

    def owner_of(self, key: str) -> ReachedPatient | None:
        """The reached patient known by index key `key` (`PatientKey.text`), if any."""
        return next((p for p in self.patients if key in p.keys), None)

    def patient_ids(self) -> frozenset[str]:
        """The DICOM PatientIDs the token reaches (of any issuer), to tell a QIDO for someone else."""
        return frozenset(identity.patient_id for p in self.patients for identity in p.identities)


def open_decision(*, may_write: bool, may_delete: bool) -> Decision:
    return Decision(allow_everything(may_write=may_write, may_delete=may_delete), (), bound=False)


def identities(identifiers: Iterable[tuple[str, str]], systems: Mapping[str, str]) -> tuple[PatientKey, ...]:
    """The DICOM identities of a patient's FHIR identifiers: a system maps to its DICOM issuer, or is ignored.

    An identifier whose system is not mapped names no DICOM patient here: the value alone is never
    used (the same MRN under another issuer is another person).
    """
    return tuple(PatientKey(value, systems[system]) for system, value in identifiers if system in systems)


def for_token(
    token: TokenFacts,
    contexts: frozenset[str],
    *,
    systems: Mapping[str, str],
    plain_patient: tuple[tuple[str, str], ...] | None = None,
    may_write: bool = False,
    may_delete: bool = False,
) -> Decision:
    """What `token` reaches, its scopes allowing the action in `contexts` (never empty: checked before).

    With the EHR's `authorization_details` entries, those are the complete list of patients; a
    token whose only covering context is `patient/` keeps the entry of its own patient only, so
    an entry never widens a patient-context grant. Without them (plain SMART), a `patient/` grant
    reaches the token's `patient`, whose identifiers the caller read from the EHR
    (`plain_patient`); `user/` and `system/` grants reach nobody (a missing patient never means
    every patient).
    """
    entries: tuple[ImagingAccess, ...]
    if token.authorization_details is not None:
        entries = token.authorization_details
        if contexts == {"patient"}:
            entries = tuple(e for e in entries if token.patient is not None and e.patient == token.patient)
    elif "patient" in contexts and token.patient is not None and plain_patient is not None:
        entries = (ImagingAccess(token.patient, (), plain_patient, (), (), "permit"),)
    else:
        entries = ()
    whole: set[str] = set()
    grants: set[tuple[str, str]] = set()
    withheld: set[str] = set()
    reached = []
    for entry in entries:
        known_as = identities(entry.patient_identifiers, systems)
        patient = ReachedPatient(entry.patient, known_as, entry.patient_identifiers)
        keys = patient.keys
        reached.append(patient)
        withheld.update(study.study_instance_uid for study in entry.withheld_studies)
        if entry.unlisted_studies == "permit":
            whole |= keys
        else:
            grants.update((key, study.study_instance_uid) for key in keys for study in entry.permitted_studies)
    scope = AccessScope(frozenset(whole), frozenset(grants), frozenset(withheld), may_write, may_delete, _ISSUER)
    return Decision(scope, tuple(reached), bound=True)


def reaches_nothing() -> AccessScope:
    """No patient, no study: what a request is left with when nothing was granted (fail closed)."""
    return AccessScope(frozenset(), frozenset(), frozenset(), False, False, _ISSUER)


def audit_reader() -> Decision:
    """A `system/AuditEvent.rs` token: it reads the audit trail, which is not imaging, so it reaches no study."""
    return Decision(reaches_nothing(), (), bound=True)


def narrowed(decision: Decision, ehr_id: str) -> AccessScope | None:
    """`decision`'s scope confined to one reached patient (a FHIR `patient=` search), or None if not reached."""
    reached = decision.patient(ehr_id)
    if reached is None:
        return None
    scope = decision.scope
    if scope.patient_keys is None:
        return scope
    return AccessScope(
        scope.patient_keys & reached.keys,
        frozenset(grant for grant in scope.study_grants if grant[0] in reached.keys),
        scope.withheld_study_uids,
        scope.may_write,
        scope.may_delete,
        _ISSUER,
    )


def server_itself() -> AccessScope:
    """Every study, read only: for the server acting on its own behalf, never for a request.

    The ImagingStudy publisher (`aperture.fhir.publish`) tells the EHR about every stable study;
    no user or token stands behind it, so no request's policy applies. It never writes or deletes
    through this scope (its own bookkeeping column is written directly).
    """
    return allow_everything(may_write=False, may_delete=False)
