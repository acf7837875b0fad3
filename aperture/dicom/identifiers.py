"""DICOM identifiers: UID syntax and issuer-qualified patient identity.

UIDs reach us in URLs and inside uploaded files. Both are checked against PS3.5 §9.1 before they
are used for anything, so a UID can never be a path, a wildcard or an SQL fragment.

A PatientID alone does not identify a patient: two hospitals may both have an MRN "12345". A
patient is (IssuerOfPatientID, Issuer of Patient ID Qualifiers, PatientID), per PS3.3 C.7.1.1;
`PatientKey` is that triple, and `PatientKey.text` is its canonical form for indexing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# Tolerant on read: files in the wild carry UIDs with leading zeros or even hex digests. Anything
# that starts with a letter or digit and stays in [A-Za-z0-9._-] is safe in a URL and is never a
# path (blob names are hashes), so it is stored and served as sent.
_UID_LENIENT = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")


def uid_problem(value: str, *, strict: bool = False) -> str | None:
    """Why `value` is not a usable UID, or None when it is.

    Stored files are read leniently (leading zeros in a component happen in the wild and the
    bytes are kept as sent); only the characters that would make a UID unsafe are always refused.
    """
    if not value:
        return "it is empty"
    if len(value) > 64:
        return f"it is {len(value)} characters long (at most 64)"
    if strict and not _UID.match(value):
        return "it must be digits separated by single dots"
    if not _UID_LENIENT.match(value):
        return "it must be digits separated by dots (letters, '-' and '_' are tolerated; nothing else)"
    return None


@dataclass(frozen=True)
class PatientKey:
    """Issuer-qualified patient identity."""

    patient_id: str
    issuer: str = ""
    qualifiers: str = ""  # canonical text of the Issuer of Patient ID Qualifiers Sequence

    @property
    def text(self) -> str:
        """Canonical, unambiguous form used as the index key (issuer and qualifiers first)."""
        return f"{_escape(self.issuer)}|{_escape(self.qualifiers)}|{_escape(self.patient_id)}"

    @classmethod
    def from_json(cls, dataset: dict[str, Any]) -> PatientKey:
        """From a DICOM JSON data set (PS3.18 Annex F), as computed once at ingest."""
        qualifiers = ""
        sequence = (dataset.get("00100024") or {}).get("Value") or []
        if sequence:
            parts = []
            for tag, keyword in _QUALIFIERS:
                values = (sequence[0].get(tag) or {}).get("Value") or []
                text = ";".join(json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v) for v in values)
                if text:
                    parts.append(f"{keyword}={text}")
            qualifiers = "&".join(parts)
        return cls(
            patient_id=_first_text(dataset.get("00100020")),
            issuer=_first_text(dataset.get("00100021")),
            qualifiers=qualifiers,
        )


_QUALIFIERS = (
    ("00400032", "UniversalEntityID"),
    ("00400033", "UniversalEntityIDType"),
    ("00400035", "IdentifierTypeCode"),
    ("00400036", "AssigningFacilitySequence"),
    ("00400039", "AssigningJurisdictionCodeSequence"),
    ("0040003A", "AssigningAgencyOrDepartmentCodeSequence"),
)


def _first_text(element: dict[str, Any] | None) -> str:
    values = (element or {}).get("Value") or []
    return str(values[0]).strip() if values and values[0] is not None else ""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")
