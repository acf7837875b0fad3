"""AccessScope: what one request may read, decided by `aperture.auth.policy` and obeyed here.

Every read in `aperture.store.index` takes an `AccessScope`, so a read that forgot to ask the
policy does not type-check. Only `aperture.auth.policy` may construct one: the constructor
demands `_ISSUER`, and `tests/test_architecture.py` fails if any other module names it.
The scope is expressed in terms the index can filter on in SQL (issuer-qualified patient keys and
study UIDs), so an answer is filtered, never fetched-then-trimmed.
"""

from __future__ import annotations

from dataclasses import dataclass

_ISSUER = object()


@dataclass(frozen=True)
class AccessScope:
    """Which studies a request reaches.

    A study is reached when it is not withheld and either its patient is in `patient_keys` (every
    study of that patient) or the pair (its patient, its UID) is in `study_grants` (one study, and
    only as a study of that patient). `patient_keys` None means every patient: there is nothing
    to restrict, except what is withheld. Patient keys are `PatientKey.text` (issuer-qualified).
    """

    patient_keys: frozenset[str] | None
    study_grants: frozenset[tuple[str, str]]  # (patient key, StudyInstanceUID)
    withheld_study_uids: frozenset[str]
    may_write: bool
    may_delete: bool
    issuer: object

    def __post_init__(self) -> None:
        if self.issuer is not _ISSUER:
            raise TypeError("AccessScope is issued by aperture.auth.policy only.")

    @property
    def unrestricted(self) -> bool:
        return self.patient_keys is None and not self.withheld_study_uids

    def permits_study(self, study_uid: str, patient_key: str) -> bool:
        if study_uid in self.withheld_study_uids:
            return False
        if self.patient_keys is None or patient_key in self.patient_keys:
            return True
        return (patient_key, study_uid) in self.study_grants
