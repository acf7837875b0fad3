"""The sole producer of `AccessScope` values.

Until SMART authorization lands, the only policy is `allow_everything`, used by
`aperture serve --auth none` (which logs a warning at startup). The restricted constructor exists
so the store's filtering is exercised by tests now and the SMART policy only has to decide *which*
patients and studies, not how to filter.
"""

from __future__ import annotations

from collections.abc import Iterable

from aperture.store.scope import _ISSUER, AccessScope


def allow_everything(*, may_write: bool = True, may_delete: bool = True) -> AccessScope:
    """Every study (`--auth none`); writing and deleting as the request's action needs."""
    return AccessScope(None, None, frozenset(), may_write, may_delete, _ISSUER)


def restricted(
    *,
    patient_keys: Iterable[str] | None = None,
    study_uids: Iterable[str] | None = None,
    withheld_study_uids: Iterable[str] = (),
    may_write: bool = False,
) -> AccessScope:
    """Reads limited to the given issuer-qualified patients and/or studies."""
    return AccessScope(
        None if patient_keys is None else frozenset(patient_keys),
        None if study_uids is None else frozenset(study_uids),
        frozenset(withheld_study_uids),
        may_write,
        False,
        _ISSUER,
    )


def server_itself() -> AccessScope:
    """Every study, read only: for the server acting on its own behalf, never for a request.

    The ImagingStudy publisher (`aperture.fhir.publish`) tells the EHR about every stable study;
    no user or token stands behind it, so no request's policy applies. It never writes or deletes
    through this scope (its own bookkeeping column is written directly).
    """
    return allow_everything(may_write=False, may_delete=False)
