"""The CapabilityStatement at `{fhir}/metadata`: what this server reads and searches, and where SMART's OAuth is.

The resource list comes from the search parameter definitions (`params.py`), the same ones that
answer searches, so it cannot claim a parameter that is not served. The SMART `oauth-uris`
extension stays: fhirclient and other older clients find the authorize and token endpoints there.
"""

from __future__ import annotations

from typing import Any

from aperture import __version__
from aperture.ehr.config import EhrConfig
from aperture.ehr.fhir.params import INCLUDES, PARAMS, params_for
from aperture.ehr.fhir.resources import SMART_IMAGING_STUDY

SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_SECURITY = (
    "SMART on FHIR: send an access token from this sandbox (Authorization: Bearer). Scopes v2 "
    "(patient/ImagingStudy.rs) and v1 (patient/ImagingStudy.read) decide the resource types; patient/ scopes reach "
    "the token's patient, user/ scopes the patients the user may act for, system/ scopes a backend client's "
    "pre-authorized patients. Another patient is 403; no valid token is 401."
)


def _resource(resource_type: str, config: EhrConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": resource_type,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {"name": "_id", "type": "token", "documentation": "the logical id"},
            *(
                {"name": p.name, "type": p.type, "documentation": p.documentation}
                for p in params_for(resource_type).values()
            ),  # fmt: skip
            {"name": "_count", "type": "number", "documentation": "page size (default 50, at most 500)"},
        ],
    }
    if resource_type == "ImagingStudy":  # the imaging server publishes its studies (submissions.py)
        entry["interaction"] = [*entry["interaction"], {"code": "create"}, {"code": "update"}]
        entry["conditionalUpdate"] = True
        entry["updateCreate"] = False  # a client never chooses the id: it names the study by identifier
    if resource_type in INCLUDES:
        entry["searchInclude"] = list(INCLUDES[resource_type])
    if resource_type == "ImagingStudy" and config.wado_rs_base:
        entry["supportedProfile"] = [SMART_IMAGING_STUDY]
    return entry


def capability_statement(config: EhrConfig) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "software": {"name": "Aperture EHR sandbox", "version": __version__},
        "implementation": {"description": "Aperture EHR sandbox", "url": config.fhir_base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
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
                    "extension": [
                        {
                            "url": SMART_OAUTH_URIS,
                            "extension": [
                                {"url": "authorize", "valueUri": config.authorization_endpoint},
                                {"url": "token", "valueUri": config.token_endpoint},
                                {"url": "introspect", "valueUri": config.introspection_endpoint},
                                {"url": "revoke", "valueUri": config.revocation_endpoint},
                            ],
                        }
                    ],
                    "description": _SECURITY,
                },
                "resource": [_resource(resource_type, config) for resource_type in PARAMS],
            }
        ],
    }
