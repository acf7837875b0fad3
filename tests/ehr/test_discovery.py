"""SMART discovery and the sandbox's own key, read over HTTP from the running sandbox."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.ehr.conftest import IMAGING_FHIR_BASE, Sandbox


def test_smart_configuration_states_endpoints_grants_and_imaging_access(sandbox: Sandbox) -> None:
    response = httpx.get(f"{sandbox.url}/fhir/.well-known/smart-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    config = response.json()
    assert config["issuer"] == f"{sandbox.url}/fhir"
    assert config["jwks_uri"] == f"{sandbox.url}/.well-known/jwks.json"
    assert config["token_endpoint"] == sandbox.token_endpoint
    assert config["introspection_endpoint"] == f"{sandbox.url}/auth/introspect"
    assert config["revocation_endpoint"] == f"{sandbox.url}/auth/revoke"
    assert config["authorization_endpoint"] == f"{sandbox.url}/auth/authorize"
    assert config["grant_types_supported"] == ["authorization_code", "refresh_token", "client_credentials"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "client_secret_basic"]
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]  # OIDC Discovery: RS256 must be offered
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert {"system/ImagingStudy.rs", "system/ImagingStudy.read"} <= set(config["scopes_supported"])
    assert {
        "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
        "client-confidential-asymmetric", "context-ehr-patient", "context-standalone-patient", "permission-patient",
        "permission-user", "permission-v1", "permission-v2", "sso-openid-connect",
    } <= set(config["capabilities"])  # fmt: skip
    assert {"launch/patient", "openid", "fhirUser", "patient/ImagingStudy.rs"} <= set(config["scopes_supported"])
    for context in ("patient", "user", "system"):  # each context in both grammars, v2 and v1
        assert {f"{context}/ImagingStudy.rs", f"{context}/ImagingStudy.read"} <= set(config["scopes_supported"])
    assert config["associated_endpoints"] == [
        {
            "url": IMAGING_FHIR_BASE,
            "capabilities": [
                "smart-imaging-access",
                "http://fhir.org/argonaut/smart-imaging/capabilities/app-launch",
                "http://fhir.org/argonaut/smart-imaging/capabilities/backend-services",
            ],
        }
    ]
    # Nothing is advertised that does not work yet: dynamic registration is not there.
    assert "registration_endpoint" not in config


def test_jwks_is_the_public_half_of_a_private_key_kept_0600_in_data(sandbox: Sandbox) -> None:
    jwks = httpx.get(f"{sandbox.url}/.well-known/jwks.json").json()
    (public,) = jwks["keys"]
    assert public["kty"] == "RSA" and public["kid"] and "d" not in public
    key_file = sandbox.server.data / "signing-key.jwk.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    private = RSAKey.import_key(json.loads(key_file.read_text()))
    signed = jwt.encode({"alg": "RS256", "kid": private.kid}, {"iss": "x"}, private, algorithms=["RS256"])
    assert jwt.decode(signed, KeySet.import_key_set(jwks), algorithms=["RS256"]).claims == {"iss": "x"}


def test_unknown_path_answers_in_oauth_error_shape(sandbox: Sandbox) -> None:
    response = httpx.get(f"{sandbox.url}/auth/register")
    assert response.status_code == 404
    assert response.json()["error"] == "invalid_request"


def test_sandbox_does_not_import_the_imaging_server() -> None:
    code = (
        "import sys, pkgutil, importlib, aperture.ehr as e\n"
        "for m in pkgutil.iter_modules(e.__path__): importlib.import_module('aperture.ehr.' + m.name)\n"
        "print(','.join(sorted(n for n in sys.modules if n.startswith(('aperture.dicomweb', 'aperture.store',"
        " 'aperture.dicom')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"aperture.ehr pulled in: {out}"


def test_discovery_advertises_logout_and_the_iss_authorization_response_parameter(sandbox: Sandbox) -> None:
    config = httpx.get(f"{sandbox.url}/fhir/.well-known/smart-configuration").json()
    assert config["end_session_endpoint"] == f"{sandbox.url}/auth/logout"
    assert config["authorization_response_iss_parameter_supported"] is True
