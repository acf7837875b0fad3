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
    """`patient_keys` None means every patient; `study_uids` None means every study of those patients."""

    patient_keys: frozenset[str] | None
    study_uids: frozenset[str] | None
    withheld_study_uids: frozenset[str]
    may_write: bool
    may_delete: bool
    issuer: object

    def __post_init__(self) -> None:
        if self.issuer is not _ISSUER:
            raise TypeError("AccessScope is issued by aperture.auth.policy only.")

    @property
    def unrestricted(self) -> bool:
        return self.patient_keys is None and self.study_uids is None and not self.withheld_study_uids

    def permits_study(self, study_uid: str, patient_key: str) -> bool:
        if study_uid in self.withheld_study_uids:
            return False
        if self.study_uids is not None and study_uid not in self.study_uids:
            return False
        return self.patient_keys is None or patient_key in self.patient_keys
