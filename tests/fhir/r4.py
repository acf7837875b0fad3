"""Structural FHIR R4 checks for the resources the imaging FHIR endpoint serves.

The tests validate what R4 itself requires of these resource types (cardinalities and primitive
formats from the R4 specification's
ImagingStudy, Endpoint, Bundle, CapabilityStatement and OperationOutcome pages, plus the
SmartImagingStudy / SmartWadoEndpoint profile elements), and `validate` also parses each resource
with `fhir.resources` (its R4B models, the R4 line's latest release: same resource shapes here).
"""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class  # R4B: fhir.resources' model of the R4 line

ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})")
DATETIME = re.compile(
    r"[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2}))?)?)?"
)
DCM = "http://dicom.nema.org/resources/ontology/DCM"
REQUIRES_TOKEN = "http://fhir.org/argonaut/smart-imaging/StructureDefinition/requires-access-token"


def _construct(resource_type: str, resource: dict[str, Any]) -> None:
    """Parse `resource` with fhir.resources' R4B model: unknown elements and wrong types are errors."""
    get_fhir_model_class(resource_type).model_validate(resource)


def _coding(coding: dict[str, Any]) -> None:
    assert set(coding) <= {"system", "code", "display", "version", "userSelected"}, coding
    assert coding.get("code") or coding.get("display"), coding


def imaging_study(resource: dict[str, Any]) -> None:
    assert resource["resourceType"] == "ImagingStudy"
    assert ID.fullmatch(resource["id"]), resource["id"]
    assert INSTANT.fullmatch(resource["meta"]["lastUpdated"])
    assert resource["status"] in {"registered", "available", "cancelled", "entered-in-error", "unknown"}
    first = resource["identifier"][0]
    assert first["system"] == "urn:dicom:uid" and first["value"] == "urn:oid:" + resource["id"]
    subject = resource["subject"]
    assert subject.get("reference") or subject.get("identifier"), subject
    for modality in resource["modality"]:
        _coding(modality)
        assert modality["system"] == DCM
    if "started" in resource:
        assert DATETIME.fullmatch(resource["started"]), resource["started"]
    for based in resource.get("basedOn", []):
        assert based["identifier"]["value"]
    if resource["status"] == "available":
        assert resource["endpoint"], "an available study references a WADO-RS Endpoint"
    series = resource.get("series", [])
    assert resource.get("numberOfSeries", len(series)) == len(series)
    assert resource.get("numberOfInstances", 0) == sum(len(s.get("instance", [])) for s in series)
    for one in series:
        assert one["uid"] and "modality" in one  # both 1..1 in R4
        _coding(one["modality"])
        assert one["numberOfInstances"] == len(one["instance"])
        for instance in one["instance"]:
            assert instance["uid"]
            _coding(instance["sopClass"])  # 1..1 in R4
            assert instance["sopClass"]["system"] == "urn:ietf:rfc:3986"
            assert instance["sopClass"]["code"].startswith("urn:oid:")
    _parse(resource)


def endpoint(resource: dict[str, Any]) -> None:
    assert resource["resourceType"] == "Endpoint"
    assert ID.fullmatch(resource["id"])
    assert resource["status"] == "active"
    assert resource["connectionType"]["code"] == "dicom-wado-rs"
    assert resource["connectionType"]["system"] == "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
    assert resource["payloadType"] and all(p["coding"] for p in resource["payloadType"])  # 1..* in R4
    assert resource["address"].startswith("http")
    (extension,) = [e for e in resource["extension"] if e["url"] == REQUIRES_TOKEN]
    assert extension["valueBoolean"] is True
    _parse(resource)


def bundle(resource: dict[str, Any]) -> None:
    assert resource["resourceType"] == "Bundle" and resource["type"] == "searchset"
    assert isinstance(resource.get("total", 0), int)
    for link in resource.get("link", []):
        assert link["relation"] and link["url"].startswith("http")
    for entry in resource.get("entry", []):
        assert entry["fullUrl"].startswith("http")
        assert entry["search"]["mode"] in {"match", "include", "outcome"}
        kind = entry["resource"]["resourceType"]
        assert entry["fullUrl"].endswith(f"/{kind}/{entry['resource']['id']}")
        {"ImagingStudy": imaging_study, "Endpoint": endpoint}[kind](entry["resource"])
    _parse(resource)


def operation_outcome(resource: dict[str, Any]) -> None:
    assert resource["resourceType"] == "OperationOutcome"
    for issue in resource["issue"]:  # 1..*
        assert issue["severity"] in {"fatal", "error", "warning", "information"} and issue["code"]
    _parse(resource)


def _parse(resource: dict[str, Any]) -> None:
    _construct(resource["resourceType"], resource)


def capability_statement(resource: dict[str, Any]) -> None:
    assert resource["resourceType"] == "CapabilityStatement"
    assert resource["status"] and resource["date"] and resource["kind"] and resource["format"]  # 1..1, 1..*
    _parse(resource)
