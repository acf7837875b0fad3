"""The sandbox's clinical FHIR R4 server, small for now: `metadata` and `Patient/{id}` read.

It enforces tokens as a real EHR would: no valid bearer token (unknown, expired, revoked, or not
meant for this server by `aud`) is 401 with a `WWW-Authenticate: Bearer` challenge; a token whose
scopes do not allow reading the resource, or whose patient context is another patient, is 403.
`patient/` scopes reach only the token's patient; `user/` scopes reach the patients the token's
user may act for (a RelatedPerson reaches only its one patient); `system/` scopes, for backend
services, reach only the patients the client is pre-authorized for (`aperture.ehr.policy`). Errors are
OperationOutcome resources. More resource types plug in as more `read_*` functions and routes.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aperture import __version__
from aperture.ehr import scopes
from aperture.ehr.config import EhrConfig
from aperture.ehr.errors import InvalidScope
from aperture.ehr.people import Directory, Patient
from aperture.ehr.policy import system_patients
from aperture.ehr.tokens import AccessToken, find_token

FHIR_JSON = "application/fhir+json"
SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


def outcome(status: int, code: str, text: str, headers: dict[str, str] | None = None) -> Response:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    return FhirResponse(body, status_code=status, headers=headers)


def capability_statement(config: EhrConfig) -> dict[str, Any]:
    """What this FHIR server does, with the SMART OAuth endpoints (older clients read them from here)."""
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
                },
                "resource": [{"type": "Patient", "interaction": [{"code": "read"}]}],
            }
        ],
    }


def patient_resource(patient: Patient, directory: Directory) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": patient.id,
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": patient.mrn_system,
                "value": patient.mrn,
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": patient.family, "given": list(patient.given)}],
        "gender": patient.gender,
        "birthDate": patient.birth_date,
    }


def _bearer(request: Request, config: EhrConfig) -> AccessToken | Response:
    challenge = {"WWW-Authenticate": f'Bearer realm="{config.fhir_base}"'}
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return outcome(401, "login", "Send an access token: Authorization: Bearer <token>.", challenge)
    token = find_token(request.app.state.authorization.engine, value.strip())
    if token is None or token.is_expired() or token.is_revoked() or config.fhir_base not in token.audience:
        invalid = {"WWW-Authenticate": f'Bearer realm="{config.fhir_base}", error="invalid_token"'}
        return outcome(401, "login", "The access token is unknown, expired, revoked, or not for this server.", invalid)
    return token


def _may_read(
    token: AccessToken, resource: str, patient_id: str, directory: Directory, preauthorized: frozenset[str]
) -> bool:
    for scope in token.scope.split():
        try:
            parsed = scopes.parse(scope)
        except InvalidScope:
            continue
        if parsed is None or parsed.resource not in ("*", resource) or "r" not in parsed.permissions:
            continue
        if parsed.context == "patient" and token.patient == patient_id:
            return True
        if parsed.context == "user" and token.user and patient_id in directory.patients_for_reference(token.user):
            return True
        if parsed.context == "system" and token.user is None and patient_id in preauthorized:
            return True
    return False


async def metadata(request: Request) -> Response:
    return FhirResponse(capability_statement(request.app.state.config))


async def read_patient(request: Request) -> Response:
    config: EhrConfig = request.app.state.config
    directory: Directory = request.app.state.directory
    token = await run_in_threadpool(_bearer, request, config)
    if isinstance(token, Response):
        return token
    patient_id = request.path_params["id"]
    preauthorized = await run_in_threadpool(system_patients, request.app.state.authorization.engine, token.client_id)
    if not _may_read(token, "Patient", patient_id, directory, preauthorized):
        return outcome(403, "forbidden", "This token does not allow reading that patient.")
    patient = directory.patients.get(patient_id)
    if patient is None:
        return outcome(404, "not-found", f"No Patient {patient_id}.")
    return FhirResponse(patient_resource(patient, directory))


ROUTES = [
    Route("/fhir/metadata", metadata),
    Route("/fhir/Patient/{id}", read_patient),
]
