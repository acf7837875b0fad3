"""The search parameters each resource type supports, and the index entries they draw from a resource.

A parameter is a name, a FHIR search type and a function that picks its values out of the
resource's JSON (what a SearchParameter's FHIRPath expression does). The same definitions build
the SQLite search index when resources are stored, parse and match searches, and list the
parameters in the CapabilityStatement, so the three can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aperture.ehr.fhir.dates import date_range

Resource = dict[str, Any]
# The ends of a Period without start or end (an ongoing encounter): before and after every date compared.
OPEN_LOW, OPEN_HIGH = "0001-01-01T00:00:00", "9999-12-31T23:59:59"


@dataclass(frozen=True)
class IndexEntry:
    param: str
    system: str | None = None  # token: the coding or identifier system
    value: str | None = None  # token code, string, reference "Type/id" or uri
    low: str | None = None  # date: the range [low, high) the value covers
    high: str | None = None


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str  # token | string | date | reference | uri (FHIR search parameter types)
    values: Callable[[Resource], list[Any]]  # token: (system, code) pairs; others: strings
    documentation: str

    def entries(self, resource: Resource) -> Iterator[IndexEntry]:
        for value in self.values(resource):
            if self.type == "token":
                system, code = value
                if code:
                    yield IndexEntry(self.name, system=system, value=code)
            elif self.type == "date" and isinstance(value, tuple):  # a Period: (start, end), either may be None
                start, end = value
                low = date_range(start)[0] if start else OPEN_LOW
                high = date_range(end)[1] if end else OPEN_HIGH
                yield IndexEntry(self.name, low=low, high=high)
            elif self.type == "date":
                low, high = date_range(value)
                yield IndexEntry(self.name, low=low, high=high)
            elif value:
                yield IndexEntry(self.name, value=str(value))


def _identifiers(resource: Resource) -> list[tuple[str | None, str]]:
    return [(i.get("system"), i.get("value", "")) for i in resource.get("identifier", ())]


def _codings(*concepts: Any) -> list[tuple[str | None, str]]:
    pairs: list[tuple[str | None, str]] = []
    for concept in concepts:
        for item in concept if isinstance(concept, list) else [concept]:
            pairs += [(c.get("system"), c.get("code", "")) for c in (item or {}).get("coding", ())]
    return pairs


def _names(part: str) -> Callable[[Resource], list[str]]:
    def values(resource: Resource) -> list[str]:
        found: list[str] = []
        for name in resource.get("name", ()):
            if part in ("family", "name") and name.get("family"):
                found.append(name["family"])
            if part in ("given", "name"):
                found += name.get("given", [])
            if part == "name" and name.get("text"):
                found.append(name["text"])
        return found

    return values


def _reference(field: str) -> Callable[[Resource], list[str]]:
    def values(resource: Resource) -> list[str]:
        value = resource.get(field)
        items = value if isinstance(value, list) else [value] if value else []
        return [item["reference"] for item in items if "reference" in item]

    return values


def _field(name: str) -> Callable[[Resource], list[str]]:
    return lambda resource: [resource[name]] if name in resource else []


def _code(name: str) -> Callable[[Resource], list[tuple[str | None, str]]]:
    """A `code` element (status, intent): a token without a system, matched by `code` or `|code`."""
    return lambda resource: [(None, resource[name])] if name in resource else []


def _concepts(*names: str) -> Callable[[Resource], list[tuple[str | None, str]]]:
    """The codings of CodeableConcept elements (one or a list each), and of a bare Coding such as Encounter.class."""

    def values(resource: Resource) -> list[tuple[str | None, str]]:
        pairs: list[tuple[str | None, str]] = []
        for name in names:
            value = resource.get(name)
            if isinstance(value, dict) and "code" in value and "coding" not in value:  # a Coding
                pairs.append((value.get("system"), value["code"]))
            else:
                pairs += _codings(value)
        return pairs

    return values


def _when(stem: str) -> Callable[[Resource], list[Any]]:
    """A `{stem}[x]` choice of dateTime or Period (effective, onset, performed), or a plain date element."""

    def values(resource: Resource) -> list[Any]:
        if f"{stem}DateTime" in resource:
            return [resource[f"{stem}DateTime"]]
        if f"{stem}Period" in resource:
            period = resource[f"{stem}Period"]
            return [(period.get("start"), period.get("end"))]
        if isinstance(resource.get(stem), dict):  # Encounter.period
            return [(resource[stem].get("start"), resource[stem].get("end"))]
        return [resource[stem]] if isinstance(resource.get(stem), str) else []

    return values


def _endpoint_addresses(resource: Resource) -> list[str]:
    return [c["address"] for c in resource.get("contained", ()) if c.get("resourceType") == "Endpoint"]


IDENTIFIER = SearchParam("identifier", "token", _identifiers, "system|value, value or system|")
LAST_UPDATED = SearchParam(
    "_lastUpdated", "date", lambda r: [r["meta"]["lastUpdated"]] if "lastUpdated" in r.get("meta", {}) else [],
    "when the sandbox last changed the resource (meta.lastUpdated), with prefixes ge, gt, le, lt, eq, ne, sa, eb",
)  # fmt: skip
NAME = SearchParam("name", "string", _names("name"), "any part of a name, matched from its start (:exact, :contains)")
FAMILY = SearchParam("family", "string", _names("family"), "family name, matched from its start")
GIVEN = SearchParam("given", "string", _names("given"), "given name, matched from its start")


def _subject(doc: str) -> list[SearchParam]:
    return [
        SearchParam("patient", "reference", _reference("subject"), f"{doc}: 123, Patient/123 or its absolute URL"),
        SearchParam("subject", "reference", _reference("subject"), "the same as patient"),
    ]


TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
ALLERGY_STATUS = f"active | inactive | resolved ({TERMINOLOGY}/allergyintolerance-clinical)"
CONDITION_STATUS = f"active | recurrence | relapse | inactive | remission | resolved ({TERMINOLOGY}/condition-clinical)"


def _coded(name: str, element: str, doc: str) -> SearchParam:
    """A token parameter over a CodeableConcept (or Coding) element: system|code, code or system|."""
    return SearchParam(name, "token", _concepts(element), doc)


def _status(doc: str) -> SearchParam:
    return SearchParam("status", "token", _code("status"), doc)


PARAMS: dict[str, list[SearchParam]] = {
    "Patient": [
        IDENTIFIER,
        NAME,
        FAMILY,
        GIVEN,
        SearchParam("birthdate", "date", _field("birthDate"), "date of birth, with prefixes such as ge, lt"),
        SearchParam("gender", "token", lambda r: [(None, r.get("gender", ""))], "male | female | other | unknown"),
    ],
    "RelatedPerson": [
        SearchParam("patient", "reference", _reference("patient"), "the patient this person is related to"),
        NAME,
    ],
    "Practitioner": [IDENTIFIER, NAME, FAMILY, GIVEN],
    "ServiceRequest": [
        *_subject("the patient the order is for"),
        SearchParam("identifier", "token", _identifiers, "the accession number (system|value or value)"),
        SearchParam("authored", "date", _field("authoredOn"), "when the order was placed"),
    ],
    "DiagnosticReport": [
        *_subject("the patient the report is about"),
        SearchParam("category", "token", lambda r: _codings(r.get("category", [])), "e.g. http://loinc.org|LP29684-5"),
        SearchParam("code", "token", lambda r: _codings(r.get("code")), "e.g. http://loinc.org|18748-4"),
        SearchParam("date", "date", _field("effectiveDateTime"), "the clinically relevant date (effective)"),
        SearchParam("identifier", "token", _identifiers, "the accession number"),
        SearchParam("based-on", "reference", _reference("basedOn"), "the ServiceRequest, ServiceRequest/{id}"),
    ],
    "ImagingStudy": [
        *_subject("the patient the study is of"),
        SearchParam(
            "identifier",
            "token",
            _identifiers,
            "urn:oid:{StudyInstanceUID} (or urn:dicom:uid|urn:oid:...) or the accession number",
        ),  # fmt: skip
        SearchParam("started", "date", _field("started"), "when the study started"),
        SearchParam(
            "modality",
            "token",
            lambda r: [(m.get("system"), m.get("code", "")) for m in r.get("modality", [])],
            "DICOM modality, e.g. http://dicom.nema.org/resources/ontology/DCM|CT or CT",
        ),  # fmt: skip
        SearchParam("endpoint", "uri", _endpoint_addresses, "the WADO-RS address of the study's Endpoint"),
        SearchParam("basedon", "reference", _reference("basedOn"), "the ServiceRequest, ServiceRequest/{id}"),
    ],
    # The clinical searches an app runs on start-up, with the parameters US Core asks servers to support.
    "AllergyIntolerance": [
        SearchParam("patient", "reference", _reference("patient"), "the patient: 123, Patient/123 or its absolute URL"),
        _coded("clinical-status", "clinicalStatus", ALLERGY_STATUS),
    ],
    "Condition": [
        *_subject("the patient who has the condition"),
        _coded("category", "category", f"problem-list-item | encounter-diagnosis ({TERMINOLOGY}/condition-category)"),
        _coded("clinical-status", "clinicalStatus", CONDITION_STATUS),
        _coded("code", "code", "the condition, e.g. http://snomed.info/sct|13645005"),
        SearchParam("onset-date", "date", _when("onset"), "when the condition began (onsetDateTime or onsetPeriod)"),
    ],
    "MedicationRequest": [
        *_subject("the patient the medication is for"),
        _status("active | completed | stopped | on-hold | cancelled | ..."),
        SearchParam("intent", "token", _code("intent"), "order | plan | proposal | original-order | ..."),
        SearchParam("authoredon", "date", _field("authoredOn"), "when the prescription was written"),
    ],
    "Observation": [
        *_subject("the patient observed"),
        _coded("category", "category", f"vital-signs | laboratory | ... ({TERMINOLOGY}/observation-category)"),
        _coded("code", "code", "what was observed, e.g. http://loinc.org|2160-0"),
        SearchParam("date", "date", _when("effective"), "when it was observed (effectiveDateTime or effectivePeriod)"),
        _status("final | preliminary | amended | ..."),
    ],
    "Encounter": [
        *_subject("the patient seen"),
        SearchParam("date", "date", _when("period"), "a date within the encounter's period"),
        _status("planned | in-progress | finished | cancelled | ..."),
        _coded("class", "class", f"AMB | EMER | IMP | ... ({TERMINOLOGY}/v3-ActCode)"),
        _coded("type", "type", "the kind of encounter, e.g. http://snomed.info/sct|185347001"),
    ],
    "DocumentReference": [
        *_subject("the patient the document is about"),
        _coded("category", "category", "clinical-note (US Core), or the LOINC class e.g. http://loinc.org|LP29684-5"),
        _coded("type", "type", "the kind of document, e.g. http://loinc.org|18748-4"),
        SearchParam("date", "date", _field("date"), "when the document was made (DocumentReference.date)"),
        _status("current | superseded | entered-in-error"),
    ],
    "Procedure": [
        *_subject("the patient the procedure was done on"),
        SearchParam("date", "date", _when("performed"), "when it was done (performedDateTime or performedPeriod)"),
        _coded("code", "code", "the procedure, e.g. http://snomed.info/sct|77477000"),
        _status("completed | in-progress | not-done | ..."),
    ],
}
# The patient's chart beyond imaging (seed.json `clinical`, and each study's Procedure and DocumentReference).
# A backend pre-authorized for single studies reaches only the records tied to those studies (access.py).
CHART = frozenset(
    {"AllergyIntolerance", "Condition", "MedicationRequest", "Observation", "Encounter", "DocumentReference",
     "Procedure"}
)  # fmt: skip
# Resource types whose instances belong to one patient's compartment; the others (Practitioner) do not.
PATIENT_COMPARTMENT = CHART | {"Patient", "RelatedPerson", "ServiceRequest", "DiagnosticReport", "ImagingStudy"}
# _include values accepted: the Endpoint is contained in each ImagingStudy, so there is nothing to add.
INCLUDES = {"ImagingStudy": ("ImagingStudy:endpoint",)}


def params_for(resource_type: str) -> dict[str, SearchParam]:
    return {p.name: p for p in [*PARAMS[resource_type], LAST_UPDATED]}


def index_entries(resource: Resource) -> list[IndexEntry]:
    """What the search index holds for `resource`, one entry per parameter value."""
    return [entry for param in params_for(resource["resourceType"]).values() for entry in param.entries(resource)]
