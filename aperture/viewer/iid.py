"""IHE Invoke Image Display (RAD TF, IID profile, transaction RAD-106): the request parameters, parsed and checked.

An EHR or portal (the Image Display Invoker) opens `GET /IHEInvokeImageDisplay?requestType=...` in a
browser; this server (the Image Display) shows the images. The parameter names are the profile's:
`requestType` (`STUDY` or `PATIENT`; `ACCESSION` is accepted as a STUDY request by `accessionNumber`),
`studyUID` or `accessionNumber` (one of them, several values separated by `,` or `;` or repeated),
`patientID` (an HL7 v2 CX value with its assigning authority, `ID^^^NAMESPACE&UNIVERSAL_ID&TYPE`),
the patient filters `lowerDateTime`, `upperDateTime`, `mostRecentResults`, `modalitiesInStudy`, and
`viewerType`, `diagnosticQuality`, `keyImagesOnly`. Parameters the profile does not define are ignored.

What cannot be honoured is refused, naming the value, never silently dropped: a `viewerType` other
than `IHE_BIR` (the viewer is OHIF, a Basic Image Review class display), `keyImagesOnly=true` (this
server does not yet select instances from Key Object Selection documents), a patient identifier
without an issuer (a bare MRN could be another hospital's patient) or with an issuer this server has
no identifier system for. `diagnosticQuality` true or false are both honoured: the viewer shows the
stored pixel data, which is diagnostic quality and so also review quality.

Nothing here decides who may see what: the request only says what to show. The app it leads to
signs the user in at the EHR and shows only what that authorization reaches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlencode

from aperture.dicom.identifiers import uid_problem
from aperture.errors import InvalidRequest

PATH = "/IHEInvokeImageDisplay"
MAX_STUDIES = 50  # studies one request may name
VIEWER_TYPES = ("IHE_BIR",)  # what `viewerType` may ask for (absent: the same)
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")  # a CS value (PS3.5 §6.2)
_SEPARATORS = re.compile(r"[,;]")
# The CX universal id types (HL7 v2 Table 0301) with the FHIR identifier system each one makes.
_SYSTEM_OF_TYPE = {"ISO": "urn:oid:", "UUID": "urn:uuid:", "URI": ""}


@dataclass(frozen=True)
class PatientIdentifier:
    """A patient as FHIR names them: the identifier system (the issuer) and the value."""

    system: str
    value: str


@dataclass(frozen=True)
class DisplayRequest:
    """What one IID request asks to show."""

    kind: Literal["STUDY", "PATIENT"]
    study_uids: tuple[str, ...] = ()
    accession_numbers: tuple[str, ...] = ()
    patient: PatientIdentifier | None = None
    lower: datetime | None = None
    upper: datetime | None = None
    most_recent: int | None = None
    modalities: tuple[str, ...] = ()
    diagnostic_quality: bool = True

    def app_query(self) -> str:
        """The request as the app's invoke page reads it: checked values only, in a fixed form."""
        items: list[tuple[str, str]] = [("requestType", self.kind)]
        if self.study_uids:
            items.append(("studyUID", ",".join(self.study_uids)))
        if self.accession_numbers:
            items.append(("accessionNumber", ",".join(self.accession_numbers)))
        if self.patient is not None:
            items += [("patientSystem", self.patient.system), ("patientValue", self.patient.value)]
        if self.lower is not None:
            items.append(("lowerDateTime", self.lower.isoformat()))
        if self.upper is not None:
            items.append(("upperDateTime", self.upper.isoformat()))
        if self.most_recent is not None:
            items.append(("mostRecentResults", str(self.most_recent)))
        if self.modalities:
            items.append(("modalitiesInStudy", ",".join(self.modalities)))
        items.append(("diagnosticQuality", "true" if self.diagnostic_quality else "false"))
        return urlencode(items)


def _values(params: Mapping[str, Sequence[str]], name: str) -> list[str]:
    """Every value of `name`: repeated parameters and `,`/`;` lists alike, blanks dropped."""
    return [part.strip() for value in params.get(name, ()) for part in _SEPARATORS.split(value) if part.strip()]


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = [v for v in params.get(name, ()) if v.strip()]
    if len(values) > 1:
        raise InvalidRequest(f"{name} is given {len(values)} times; give it once.")
    return values[0].strip() if values else None


def _flag(params: Mapping[str, Sequence[str]], name: str, default: bool) -> bool:
    value = _one(params, name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise InvalidRequest(f"{name} must be true or false, not {value[:40]!r}.")
    return value.lower() == "true"


def _moment(params: Mapping[str, Sequence[str]], name: str) -> datetime | None:
    value = _one(params, name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"{name} must be a date and time such as 2026-01-31T00:00:00Z, not {value[:40]!r}."
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def patient_identifier(cx: str, systems: Mapping[str, str]) -> PatientIdentifier:
    """The FHIR identifier of an HL7 v2 CX patient id (`ID^^^NAMESPACE&UNIVERSAL_ID&TYPE`).

    `systems` maps identifier system URIs to DICOM IssuerOfPatientID namespaces
    (`fhir.patient_identifier_systems`); a bare namespace is looked up there.
    """
    components = cx.split("^")
    value = components[0].strip()
    authority = components[3].split("&") if len(components) > 3 else []
    namespace, universal, kind = [*(part.strip() for part in authority), "", "", ""][:3]
    if not value:
        raise InvalidRequest("patientID has no identifier before its first '^'.")
    if universal:
        if kind.upper() not in _SYSTEM_OF_TYPE:
            known = ", ".join(_SYSTEM_OF_TYPE)
            raise InvalidRequest(f"patientID's universal id type must be one of {known}, not {kind[:20]!r}.")
        return PatientIdentifier(_SYSTEM_OF_TYPE[kind.upper()] + universal, value)
    if not namespace:
        raise InvalidRequest(
            "patientID names no issuer: give it with its assigning authority, as in "
            "AGH-100234^^^APERTURE-GH (an identifier alone could be another hospital's patient)."
        )
    found = [system for system, issuer in systems.items() if issuer == namespace]
    if len(found) != 1:
        known = ", ".join(sorted(systems.values())) or "none are configured"
        raise InvalidRequest(
            f"This server knows no patient identifier system for the issuer {namespace[:64]!r} ({known})."
        )
    return PatientIdentifier(found[0], value)


def parse(params: Mapping[str, Sequence[str]], systems: Mapping[str, str]) -> DisplayRequest:
    """Check an IID request's parameters (`params`: name -> every value given) and say what to show."""
    given = _one(params, "requestType")
    kind = (given or "").upper()
    if kind not in ("STUDY", "PATIENT", "ACCESSION"):
        shown = f"not {given[:40]!r}" if given else "it is missing"
        raise InvalidRequest(f"requestType must be STUDY, PATIENT or ACCESSION; {shown}.")
    viewer = _one(params, "viewerType")
    if viewer is not None and viewer not in VIEWER_TYPES:
        raise InvalidRequest(
            f"viewerType {viewer[:40]!r} is not available here: the viewer is a Basic Image Review display "
            "(viewerType=IHE_BIR, or leave viewerType out)."
        )
    if _flag(params, "keyImagesOnly", False):
        raise InvalidRequest(
            "keyImagesOnly=true is not available here yet: this server does not select key images. "
            "Leave keyImagesOnly out to see the whole study."
        )
    quality = _flag(params, "diagnosticQuality", True)
    uids, accessions = _values(params, "studyUID"), _values(params, "accessionNumber")
    if kind == "PATIENT":
        if uids or accessions:
            raise InvalidRequest("A PATIENT request names a patient (patientID), not studyUID or accessionNumber.")
        cx = _one(params, "patientID")
        if cx is None:
            raise InvalidRequest("requestType=PATIENT needs patientID, the patient's identifier with its issuer.")
        recent = _one(params, "mostRecentResults")
        if recent is not None and not (recent.isdigit() and 0 < int(recent) <= 1000):
            raise InvalidRequest(f"mostRecentResults must be a whole number from 1 to 1000, not {recent[:20]!r}.")
        modalities = tuple(m.upper() for m in _values(params, "modalitiesInStudy"))
        wrong = [m for m in modalities if not _MODALITY.match(m)]
        if wrong:
            raise InvalidRequest(f"modalitiesInStudy holds {wrong[0][:20]!r}, which is not a modality code like CT.")
        lower, upper = _moment(params, "lowerDateTime"), _moment(params, "upperDateTime")
        if lower and upper and lower > upper:
            raise InvalidRequest("lowerDateTime is after upperDateTime: no study could match.")
        return DisplayRequest(
            "PATIENT", patient=patient_identifier(cx, systems), lower=lower, upper=upper,
            most_recent=int(recent) if recent else None, modalities=modalities, diagnostic_quality=quality,
        )  # fmt: skip
    if kind == "ACCESSION" and uids:
        raise InvalidRequest("requestType=ACCESSION names studies by accessionNumber, not studyUID.")
    if bool(uids) == bool(accessions):
        raise InvalidRequest(f"requestType={kind} needs exactly one of studyUID and accessionNumber.")
    if len(uids) + len(accessions) > MAX_STUDIES:
        raise InvalidRequest(f"One request may name at most {MAX_STUDIES} studies.")
    for uid in uids:
        if problem := uid_problem(uid):
            raise InvalidRequest(f"studyUID {uid[:70]!r} is not a UID: {problem}.")
    for accession in accessions:
        if len(accession) > 16 or "\\" in accession:
            raise InvalidRequest(f"accessionNumber {accession[:40]!r} is longer than an accession number (16 at most).")
    return DisplayRequest(
        "STUDY", study_uids=tuple(uids), accession_numbers=tuple(accessions), diagnostic_quality=quality
    )
