"""What a verified access token says, as typed facts: the checked part of an RFC 7662 introspection answer.

`TokenFacts` is built only by `aperture.auth.introspection` after every check passed (active, not
expired, our issuer, our audience), so code that holds one never re-checks those. The scopes are
parsed here (SMART App Launch 2.2 §Scopes: v2 `context/Resource.cruds` and v1 `.read`/`.write`/`.*`)
and `covers` answers whether they allow an imaging action. Which patients and studies the token
reaches is the EHR's `authorization_details` (docs/authorization.md), parsed into `ImagingAccess`.
The raw token is never part of these values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aperture.errors import InsufficientScope

if TYPE_CHECKING:
    from aperture.auth.requirements import Action

IMAGING_ACCESS_TYPE = "http://aperture.example.org/auth/imaging-study-access"
Context = Literal["patient", "user", "system"]
_CONTEXTS: tuple[Context, ...] = ("patient", "user", "system")
_V2_ORDER = "cruds"
_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}

# What each imaging action needs on ImagingStudy (or `*`). Until routes tell search from retrieval,
# "read" needs both `r` and `s` (what `ImagingStudy.rs` and v1 `.read` grant): a `.s`-only token
# must not retrieve pixels and a `.r`-only token must not search (fail closed).
_NEEDS: dict[str, tuple[frozenset[str], bool]] = {  # action -> (letters, all of them needed?)
    "read": (frozenset("rs"), True),
    "write": (frozenset("cu"), False),  # STOW-RS creates or updates (ImagingStudy.c / .u, v1 .write)
    "delete": (frozenset("d"), True),
    "audit": (frozenset("rs"), True),  # searching the audit trail: AuditEvent.rs
}
_RESOURCE = {"audit": "AuditEvent"}  # the resource an action is about; ImagingStudy otherwise


@dataclass(frozen=True)
class Scope:
    """One SMART resource scope: `patient/ImagingStudy.rs` is ("patient", "ImagingStudy", {"r", "s"})."""

    context: Context
    resource: str  # a FHIR resource type, or "*"
    permissions: frozenset[str]  # of c r u d s

    def __str__(self) -> str:
        letters = "".join(letter for letter in _V2_ORDER if letter in self.permissions)
        return f"{self.context}/{self.resource}.{letters}"


def parse_scope(text: str) -> Scope | None:
    """A resource scope, or None for anything else (openid, launch/patient, query-parameterized scopes).

    Scopes with `?` (SMART v2 granular scopes) narrow a grant by search parameters that this server
    does not apply, so they are ignored rather than read as the wider scope.
    """
    context, slash, rest = text.partition("/")
    if not slash or context not in _CONTEXTS or "?" in rest:
        return None
    resource, dot, permission = rest.rpartition(".")
    if not dot or not resource or not (resource == "*" or resource.isalnum()):
        return None
    letters = _V1.get(permission)
    if letters is None:
        # v2: letters in the order c r u d s, each once (SMART App Launch 2.2 §Scopes for requesting FHIR data)
        if not permission or any(letter not in _V2_ORDER for letter in permission):
            return None
        positions = [_V2_ORDER.index(letter) for letter in permission]
        if positions != sorted(set(positions)):
            return None
        letters = frozenset(permission)
    return Scope(context, resource, letters)


def parse_scopes(scope: str) -> tuple[Scope, ...]:
    """The resource scopes of a space-separated `scope` string, in order, the rest dropped."""
    parsed = (parse_scope(item) for item in scope.split())
    return tuple(item for item in parsed if item is not None)


@dataclass(frozen=True)
class StudyReference:
    study_instance_uid: str
    accession_number: str | None = None


@dataclass(frozen=True)
class ImagingAccess:
    """One `authorization_details` entry of IMAGING_ACCESS_TYPE: what the token reaches of one patient."""

    patient: str
    locations: tuple[str, ...]  # empty: the entry names no resource server (it applies to every audience)
    patient_identifiers: tuple[tuple[str, str], ...]  # (system, value), to match PatientID / IssuerOfPatientID
    permitted_studies: tuple[StudyReference, ...]
    withheld_studies: tuple[StudyReference, ...]
    unlisted_studies: Literal["permit", "deny"]


@dataclass(frozen=True)
class TokenFacts:
    """The verified answer for one token. `scopes` are the resource scopes; `scope` is the string as granted."""

    client_id: str
    scope: str
    scopes: tuple[Scope, ...]
    exp: int
    iss: str | None
    aud: tuple[str, ...]
    sub: str | None = None
    patient: str | None = None
    fhir_user: str | None = None
    authorization_details: tuple[ImagingAccess, ...] | None = None  # None: none of our type; (): none for us
    active: bool = True  # always: an inactive token never becomes TokenFacts

    def contexts_allowing(self, action: Action | str) -> frozenset[Context]:
        """The contexts (patient, user, system) whose scopes, taken together, allow `action` on ImagingStudy.

        Letters are pooled within one context only: `patient/ImagingStudy.r` plus `user/ImagingStudy.s`
        is not "read" in either, so one grant's context never widens another's.
        """
        letters, every = _NEEDS[str(action)]
        resource = _RESOURCE.get(str(action), "ImagingStudy")
        allowed: set[Context] = set()
        for context in _CONTEXTS:
            granted: set[str] = set()
            for item in self.scopes:
                if item.context == context and item.resource in (resource, "*"):
                    granted |= item.permissions
            if (letters <= granted) if every else bool(letters & granted):
                allowed.add(context)
        return frozenset(allowed)


def covers(token: TokenFacts, action: Action | str) -> bool:
    """Whether the token's scopes allow `action` ("read", "write", "delete", "audit") in some context.

    Scopes only: which patients and studies is the policy's question (patient, authorization_details).
    """
    if str(action) not in _NEEDS:
        raise ValueError(f"unknown imaging action {action!r}")
    return bool(token.contexts_allowing(action))


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _studies(value: Any) -> tuple[StudyReference, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("studies must be a list")
    studies = []
    for item in value:
        uid = item.get("study_instance_uid") if isinstance(item, dict) else None
        accession = item.get("accession_number") if isinstance(item, dict) else None
        if not isinstance(uid, str) or not (accession is None or isinstance(accession, str)):
            raise ValueError("a study needs a study_instance_uid string")
        studies.append(StudyReference(uid, accession))
    return tuple(studies)


def parse_authorization_details(value: Any, audiences: Iterable[str]) -> tuple[ImagingAccess, ...] | None:
    """The entries of our type whose `locations` (if any) name one of `audiences`.

    None when the EHR sent no entry of our type (plain SMART applies); an empty tuple when it sent
    some but none for us (so nothing is reached, never "fall back to plain SMART", which would
    widen). Entries of other types are ignored (RFC 9396 §2). A malformed entry of our type raises
    ValueError: the caller refuses the whole answer rather than guess what the EHR meant.
    """
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("authorization_details must be a list")
    ours = set(audiences)
    entries = []
    seen = False
    for item in value:
        if not isinstance(item, dict) or item.get("type") != IMAGING_ACCESS_TYPE:
            continue
        seen = True
        patient = item.get("patient")
        locations = _strings(item.get("locations", []))
        unlisted = item.get("unlisted_studies", "deny")
        identifiers = item.get("patient_identifiers", [])
        if not isinstance(patient, str) or locations is None or unlisted not in ("permit", "deny"):
            raise ValueError("an imaging-study-access entry needs patient, locations and unlisted_studies")
        if not isinstance(identifiers, list) or not all(
            isinstance(i, dict) and isinstance(i.get("system"), str) and isinstance(i.get("value"), str)
            for i in identifiers
        ):
            raise ValueError("patient_identifiers must be FHIR Identifiers with system and value")
        if locations and not ours & {location.rstrip("/") for location in locations}:
            continue  # for another resource server
        entries.append(
            ImagingAccess(
                patient=patient,
                locations=locations,
                patient_identifiers=tuple((i["system"], i["value"]) for i in identifiers),
                permitted_studies=_studies(item.get("permitted_studies")),
                withheld_studies=_studies(item.get("withheld_studies")),
                unlisted_studies=unlisted,
            )
        )
    return tuple(entries) if seen else None


def require(token: TokenFacts, action: Action | str) -> None:
    """`covers`, or InsufficientScope (403 with `WWW-Authenticate: Bearer error="insufficient_scope"`)."""
    if not covers(token, action):
        raise InsufficientScope()
