"""SMART discovery: `{fhir}/.well-known/smart-configuration` (SMART App Launch 2.2 §Discovery) and the JWKS.

The document states only what the sandbox does today, so a client that trusts discovery is never
sent to an endpoint that does not work: SMART Backend Services with RS384/ES384 assertions, v1 and
v2 scopes, introspection and revocation. The browser launch (`authorization_endpoint`,
`authorization_code`, `launch-ehr`, `launch-standalone`, `client-public`, `sso-openid-connect`, the
`app-launch` imaging mode) and RFC 7591 `registration_endpoint` are added here as they land.
`code_challenge_methods_supported` is already `["S256"]`: SMART 2.2 requires the field, and S256 is
the only method the authorization endpoint will take.

`associated_endpoints` points apps at the imaging FHIR base (from config) with the SMART Imaging
Access capabilities: `smart-imaging-access` names the interface, the mode URI says how to get a token.
"""

from __future__ import annotations

from typing import Any

from aperture.ehr.assertions import ALGORITHMS
from aperture.ehr.config import EhrConfig

SMART_IMAGING_ACCESS = "smart-imaging-access"
IMAGING_BACKEND_SERVICES = "http://fhir.org/argonaut/smart-imaging/capabilities/backend-services"
IMAGING_APP_LAUNCH = "http://fhir.org/argonaut/smart-imaging/capabilities/app-launch"  # with the browser launch

CAPABILITIES = ["client-confidential-asymmetric", "permission-v1", "permission-v2"]
GRANT_TYPES = ["client_credentials"]
SCOPES = [
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
        "token_endpoint": config.token_endpoint,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "introspection_endpoint": config.introspection_endpoint,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "revocation_endpoint": config.revocation_endpoint,
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "grant_types_supported": list(GRANT_TYPES),
        "scopes_supported": list(SCOPES),
        "code_challenge_methods_supported": ["S256"],
        "capabilities": list(CAPABILITIES),
    }
    if config.imaging_fhir_base:
        document["associated_endpoints"] = [
            {"url": config.imaging_fhir_base, "capabilities": [SMART_IMAGING_ACCESS, IMAGING_BACKEND_SERVICES]}
        ]
    return document
