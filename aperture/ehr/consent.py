"""What the consent screen says about each scope, and what the user's answer grants.

Scopes are described in plain words and grouped so that imaging (ImagingStudy) is listed, and can be
turned off, apart from the rest of the clinical record. The launch-context scopes (`launch`,
`launch/patient`) are shown but not offered as choices: they say which patient the app is opened
for, which the user has just chosen (or the EHR launch fixed), not what it may read.

What is granted is the intersection of what the user left ticked with what was offered (the
request, already narrowed to the client's registration), so a form cannot add anything.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from aperture.ehr import scopes
from aperture.ehr.errors import InvalidScope

CONTEXT_SCOPES = ("launch", "launch/patient")
IMAGING_RESOURCES = ("ImagingStudy",)

_ACTIONS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_FIXED = {
    "openid": "Confirm who you are (your sign-in identity)",
    "fhirUser": "Know which person in the record you are (your FHIR identity)",
    "profile": "See your name",
    "launch": "Open in the context the EHR chose (the patient you picked)",
    "launch/patient": "Know which patient you chose",
    "offline_access": "Keep access after you close the app, until you revoke it (a long-lived refresh token)",
    "online_access": "Keep access while you stay signed in here (a refresh token)",
}
_RESOURCES = {
    "ImagingStudy": "medical images (X-rays, CT, MRI, ultrasound)",
    "Patient": "demographics (name, date of birth, record number)",
    "DiagnosticReport": "diagnostic reports (including imaging reports)",
    "Observation": "observations (vital signs, lab results)",
    "AllergyIntolerance": "allergies and intolerances",
    "Condition": "conditions (problems and diagnoses)",
    "MedicationRequest": "medications (prescriptions)",
    "Encounter": "visits and admissions",
    "DocumentReference": "clinical documents (including imaging reports)",
    "Procedure": "procedures (including imaging exams)",
    "*": "all of the clinical record, images included",
}


@dataclass(frozen=True)
class ScopeItem:
    scope: str
    text: str
    group: str  # "imaging", "clinical", "access"
    choosable: bool


def describe(scope: str) -> ScopeItem:
    if scope in _FIXED:
        return ScopeItem(scope, _FIXED[scope], "access", scope not in CONTEXT_SCOPES)
    try:
        parsed = scopes.parse(scope)
    except InvalidScope:  # a scope the grammar refuses was narrowed away before; describe it literally
        parsed = None
    if parsed is None:
        return ScopeItem(scope, f"The permission {scope!r}", "clinical", True)
    actions = ", ".join(_ACTIONS[c] for c in "cruds" if c in parsed.permissions)
    what = _RESOURCES.get(parsed.resource, f"{parsed.resource} records")
    whose = {"patient": "of the chosen patient", "user": "of every patient you may see", "system": "of any patient"}
    group = "imaging" if parsed.resource in IMAGING_RESOURCES else "clinical"
    return ScopeItem(scope, f"{actions.capitalize()} {what} {whose[parsed.context]}", group, True)


def consent_items(offered: Collection[str]) -> dict[str, list[ScopeItem]]:
    """The offered scopes grouped for the page: imaging, other clinical data, sign-in and access."""
    groups: dict[str, list[ScopeItem]] = {"imaging": [], "clinical": [], "access": []}
    for scope in offered:
        item = describe(scope)
        groups[item.group].append(item)
    return groups


def granted_scopes(offered: Collection[str], ticked: Collection[str]) -> list[str]:
    """What the token will carry: offered scopes the user left ticked, plus the launch-context ones."""
    chosen = set(ticked)
    return [s for s in offered if s in CONTEXT_SCOPES or s in chosen]
