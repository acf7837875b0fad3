"""`/fhir/metadata`: this server's CapabilityStatement, in the shape of the IG's `smart-imaging-server`.

It `instantiates` the IG's requirements statement (kind `requirements`) and states, as an
`instance`, what is served here: ImagingStudy read and search-type with `patient`, `identifier`,
`_lastUpdated` and `_include=ImagingStudy:endpoint`, Endpoint read, and AuditEvent search. The security part names
SMART only when the server runs with it (`--auth none` says so instead).
"""

from __future__ import annotations

from typing import Any

from aperture import __version__
from aperture.fhir.imagingstudy import ENDPOINT_PROFILE, STUDY_PROFILE

SMART_IMAGING_SERVER = "http://fhir.org/argonaut/smart-imaging/CapabilityStatement/smart-imaging-server"
RELEASED = "2026-12-01"


def _param(name: str, definition: str, kind: str) -> dict[str, str]:
    return {"name": name, "definition": f"http://hl7.org/fhir/SearchParameter/{definition}", "type": kind}


def capability_statement(base: str, auth: str) -> dict[str, Any]:
    security: dict[str, Any]
    if auth == "none":
        security = {"description": "No authorization (--auth none): every request is allowed. Development only."}
    else:
        security = {
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ]
                }
            ],
            "description": "SMART App Launch tokens; the same token is required on every WADO-RS request.",
        }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": RELEASED,
        "kind": "instance",
        "instantiates": [SMART_IMAGING_SERVER],
        "software": {"name": "Aperture", "version": __version__},
        "implementation": {"description": "Aperture imaging FHIR endpoint", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": security,
            "resource": [
                {
                    "type": "ImagingStudy",
                    "supportedProfile": [STUDY_PROFILE],
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchInclude": ["ImagingStudy:endpoint"],
                    "searchParam": [
                        _param("patient", "clinical-patient", "reference"),
                        _param("identifier", "clinical-identifier", "token"),
                        _param("_lastUpdated", "Resource-lastUpdated", "date"),
                    ],
                },
                {"type": "Endpoint", "supportedProfile": [ENDPOINT_PROFILE], "interaction": [{"code": "read"}]},
                {
                    "type": "AuditEvent",
                    "documentation": "The audit trail (IHE BALP), for a system/AuditEvent.rs token.",
                    "interaction": [{"code": "search-type"}],
                    "searchParam": [
                        _param("patient", "AuditEvent-patient", "reference"),
                        _param("date", "AuditEvent-date", "date"),
                        _param("outcome", "AuditEvent-outcome", "token"),
                        {"name": "client", "type": "string",
                         "documentation": "the OAuth client_id of the agent that made the request"},
                    ],
                },
            ],
        }],
    }  # fmt: skip
