"""SMART discovery: `{fhir}/.well-known/smart-configuration` (SMART App Launch 2.2 §Discovery) and the JWKS.

The document states only what the sandbox does, so a client that trusts discovery is never sent
to an endpoint that does not work: the browser launch (standalone and EHR, public and symmetric
confidential clients, OpenID Connect with RS256 id_tokens, refresh tokens), SMART Backend Services
with RS384/ES384 assertions, v1 and v2 scopes, introspection and revocation, and the RFC 7591
`registration_endpoint` only when dynamic registration is switched on, sign-out
(`end_session_endpoint`) and RFC 9207's `iss` in authorization responses.

`associated_endpoints` points apps at the imaging FHIR base (from config) with the SMART Imaging
Access capabilities: `smart-imaging-access` names the interface, the mode URI says how to get a token.
"""

from __future__ import annotations

from typing import Any

from aperture.ehr.assertions import ALGORITHMS
from aperture.ehr.config import EhrConfig
from aperture.ehr.keys import SIGNING_ALG

SMART_IMAGING_ACCESS = "smart-imaging-access"
IMAGING_BACKEND_SERVICES = "http://fhir.org/argonaut/smart-imaging/capabilities/backend-services"
IMAGING_APP_LAUNCH = "http://fhir.org/argonaut/smart-imaging/capabilities/app-launch"

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
]
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
SCOPES = [
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/ImagingStudy.rs",
    "patient/ImagingStudy.read",
    "patient/Patient.rs",
    "patient/Patient.read",
    "patient/*.rs",
    "patient/*.read",
    "user/ImagingStudy.rs",
    "user/ImagingStudy.read",
    "user/Patient.rs",
    "user/Patient.read",
    "user/*.rs",
    "user/*.read",
    "system/ImagingStudy.rs",
    "system/ImagingStudy.read",
    "system/Patient.rs",
    "system/Patient.read",
    "system/DiagnosticReport.rs",
    "system/DiagnosticReport.read",
    "system/*.rs",
    "system/*.read",
]


def smart_configuration(config: EhrConfig) -> dict[str, Any]:
    document: dict[str, Any] = {
        "issuer": config.issuer,
        "jwks_uri": config.jwks_uri,
        "authorization_endpoint": config.authorization_endpoint,
        "token_endpoint": config.token_endpoint,
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "introspection_endpoint": config.introspection_endpoint,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "revocation_endpoint": config.revocation_endpoint,
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "grant_types_supported": list(GRANT_TYPES),
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": [SIGNING_ALG],
        "capabilities": list(CAPABILITIES),
        "end_session_endpoint": config.end_session_endpoint,
        "authorization_response_iss_parameter_supported": True,  # RFC 9207: iss on every authorization response
    }
    if config.dynamic_registration:
        document["registration_endpoint"] = config.registration_endpoint
    if config.imaging_fhir_base:
        document["associated_endpoints"] = [
            {
                "url": config.imaging_fhir_base,
                "capabilities": [SMART_IMAGING_ACCESS, IMAGING_APP_LAUNCH, IMAGING_BACKEND_SERVICES],
            }
        ]
    return document
