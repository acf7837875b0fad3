"""RFC 7591 dynamic client registration: off unless configured, refusing unsafe metadata, and the clients it
makes work in the existing flows (a public client's PKCE code flow through the sandbox's forms)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.ehr.conftest import LAUNCH_URL, REDIRECT_URI, Sandbox, ehr, public_jwks, start_sandbox
from tests.ehr.test_launch import Flow, User, code_from

APP = {
    "client_name": "Dynamically registered viewer",
    "redirect_uris": [REDIRECT_URI],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "scope": "launch/patient openid fhirUser offline_access patient/Patient.rs patient/ImagingStudy.rs",
}


@pytest.fixture(scope="module")
def open_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox with dynamic registration switched on in its config file."""
    server = start_sandbox(
        tmp_path_factory.mktemp("registration") / "data", config="[ehr]\ndynamic_registration = true\n"
    )
    yield Sandbox(server, {})
    server.stop()


DEEP = b"[" * 30000 + b"]" * 30000  # JSON nested past Python's recursion limit


def post(sandbox: Sandbox, metadata: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{sandbox.url}/register", json=metadata, **kwargs)


def test_off_by_default_and_not_advertised(sandbox: Sandbox) -> None:
    assert "registration_endpoint" not in httpx.get(f"{sandbox.url}/fhir/.well-known/smart-configuration").json()
    response = post(sandbox, APP)
    assert response.status_code == 404
    assert sandbox.introspect("x").status_code == 200  # the sandbox itself is fine


def test_advertised_when_enabled(open_sandbox: Sandbox) -> None:
    config = httpx.get(f"{open_sandbox.url}/fhir/.well-known/smart-configuration").json()
    assert config["registration_endpoint"] == f"{open_sandbox.url}/register"


def test_a_registered_public_client_completes_a_pkce_code_flow(open_sandbox: Sandbox) -> None:
    response = post(open_sandbox, APP)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    client = response.json()
    assert client["token_endpoint_auth_method"] == "none" and "client_secret" not in client
    assert client["redirect_uris"] == [REDIRECT_URI] and client["scope"] == APP["scope"]
    assert client["grant_types"] == ["authorization_code", "refresh_token"] and client["response_types"] == ["code"]
    assert client["client_id_issued_at"] > 0 and len(client["client_id"]) >= 16
    flow, user = Flow(open_sandbox, client_id=client["client_id"]), User("walter", "walter-demo")
    assert "Dynamically registered viewer" in user.start(flow.url()).text  # the consent page names the app
    token = flow.exchange(code_from(user.consent(flow.url()), flow.state))
    assert token.status_code == 200, token.text
    answer = token.json()
    assert answer["patient"] == "walter-nguyen" and answer["refresh_token"]
    headers = {"Authorization": f"Bearer {answer['access_token']}"}
    assert httpx.get(f"{open_sandbox.url}/fhir/Patient/walter-nguyen", headers=headers).status_code == 200
    no_pkce = Flow(open_sandbox, client_id=client["client_id"])
    refused = httpx.get(no_pkce.url(code_challenge=None, code_challenge_method=None), follow_redirects=False)
    assert refused.status_code in (302, 303) and "error=invalid_request" in refused.headers["location"]


def test_a_confidential_client_gets_its_secret_once(open_sandbox: Sandbox) -> None:
    response = post(open_sandbox, {**APP, "token_endpoint_auth_method": "client_secret_basic"})
    assert response.status_code == 201, response.text
    client = response.json()
    assert len(client["client_secret"]) >= 40 and client["client_secret_expires_at"] == 0
    flow = Flow(open_sandbox, client_id=client["client_id"])
    code = code_from(User("priya", "priya-demo").consent(flow.url()), flow.state)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier}  # fmt: skip
    wrong = httpx.post(f"{open_sandbox.url}/auth/token", data=data, auth=(client["client_id"], "guess"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    flow = Flow(open_sandbox, client_id=client["client_id"])
    code = code_from(User("priya", "priya-demo").consent(flow.url()), flow.state)
    data["code"], data["code_verifier"] = code, flow.verifier
    right = httpx.post(f"{open_sandbox.url}/auth/token", data=data, auth=(client["client_id"], client["client_secret"]))
    assert right.status_code == 200 and right.json()["patient"] == "priya-raman"


def test_a_backend_client_registers_its_keys(open_sandbox: Sandbox, tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "dyn-1"})
    metadata = {"client_name": "Pipeline", "token_endpoint_auth_method": "private_key_jwt",
                "grant_types": ["client_credentials"], "scope": "system/ImagingStudy.rs",
                "jwks": public_jwks(key)}  # fmt: skip
    response = post(open_sandbox, metadata)
    assert response.status_code == 201, response.text
    client_id = response.json()["client_id"]
    open_sandbox.keys[client_id] = key
    token = open_sandbox.backend_token(open_sandbox.assertion(client_id))
    assert token.status_code == 200, token.text
    assert "authorization_details" not in token.json()  # registered by itself: pre-authorized for nothing


@pytest.mark.parametrize(
    "change, error",
    [
        ({"redirect_uris": ["http://app.example.org/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://app.example.org/cb#frag"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["not a url"]}, "invalid_redirect_uri"),
        ({"redirect_uris": "https://app.example.org/cb"}, "invalid_client_metadata"),
        ({"redirect_uris": []}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "client_secret_post"}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "tls_client_auth"}, "invalid_client_metadata"),
        ({"grant_types": ["implicit"]}, "invalid_client_metadata"),
        ({"grant_types": ["client_credentials"]}, "invalid_client_metadata"),
        ({"response_types": ["token"]}, "invalid_client_metadata"),
        ({"scope": "system/*.rs"}, "invalid_client_metadata"),
        ({"scope": "patient/ImagingStudy.sr"}, "invalid_client_metadata"),
        ({"scope": ""}, "invalid_client_metadata"),
        ({"initiate_login_uri": "http://app.example.org/launch"}, "invalid_client_metadata"),
        ({"jwks": {"keys": []}}, "invalid_client_metadata"),
        ({"client_uri": "not a url"}, "invalid_client_metadata"),
    ],  # fmt: skip
    ids=[
        "http-redirect",
        "fragment",
        "not-a-url",
        "redirect-not-array",
        "no-redirect",
        "client_secret_post",
        "tls_client_auth",
        "implicit",
        "app-with-client-credentials",
        "token-response",
        "system-scope-for-app",
        "bad-scope",
        "no-scope",
        "http-launch-url",
        "keys-for-an-app",
        "client-uri",
    ],  # fmt: skip
)
def test_unsafe_metadata_is_refused_with_rfc7591_errors(
    open_sandbox: Sandbox, change: dict[str, Any], error: str
) -> None:
    response = post(open_sandbox, {**APP, **change})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def test_a_backend_client_without_keys_or_with_private_keys_is_refused(open_sandbox: Sandbox) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "leak"})
    base = {"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
            "scope": "system/ImagingStudy.rs"}  # fmt: skip
    for extra in ({}, {"jwks": {"keys": [key.as_dict(private=True)]}}):
        response = post(open_sandbox, {**base, **extra})
        assert response.status_code == 400 and response.json()["error"] == "invalid_client_metadata", extra


@pytest.mark.parametrize(
    "jwks_uri",
    [
        "http://127.0.0.1:9/jwks.json",  # loopback http: the SSRF of issue 12
        "https://127.0.0.1:9/jwks.json",  # https, but to a loopback address
        "https://10.0.0.8/jwks.json",
        "https://[::1]/jwks.json",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://jwks.example.org/jwks.json",  # plain http
        "https://user:pw@jwks.example.org/jwks.json",
        "https://jwks.example.org/jwks.json#frag",
        "ftp://jwks.example.org/jwks.json",
        "https://a b.example.org/jwks.json",
        "https://%00.example.org/jwks.json",
    ],
)
def test_a_jwks_uri_the_sandbox_would_not_fetch_is_refused(open_sandbox: Sandbox, jwks_uri: str) -> None:
    metadata = {"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
                "scope": "system/ImagingStudy.rs", "jwks_uri": jwks_uri}  # fmt: skip
    response = post(open_sandbox, metadata)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client_metadata"
    assert "jwks_uri" in response.json()["error_description"]


def test_a_public_https_jwks_uri_registers(open_sandbox: Sandbox) -> None:
    metadata = {"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
                "scope": "system/ImagingStudy.rs", "jwks_uri": "https://jwks.example.org/keys.json"}  # fmt: skip
    assert post(open_sandbox, metadata).status_code == 201


@pytest.mark.parametrize(
    "body",
    [b"[]", b"{}", b"not json", b'{"scope": 5}', DEEP, b'{"a": ' + DEEP + b"}",
     b'{"jwks": {}}', b'{"jwks": {"keys": [1]}}', b'{"logo_uri": [null]}', b'{"tos_uri": 3}'],
    ids=["array", "empty", "not-json", "scope-not-string", "nested-past-the-recursion-limit", "nested-member",
         "jwks-without-keys", "jwks-key-not-object", "logo-uri-list", "tos-uri-number"],  # three were 500s
)  # fmt: skip
def test_a_body_that_is_not_client_metadata_is_refused(open_sandbox: Sandbox, body: bytes) -> None:
    response = httpx.post(f"{open_sandbox.url}/register", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_client_metadata"


def test_admin_powers_cannot_be_registered(open_sandbox: Sandbox) -> None:
    response = post(open_sandbox, {**APP, "introspect": True, "pre_approved": True})
    assert response.status_code == 201
    client_id = response.json()["client_id"]
    assert "introspect" not in response.json() and "pre_approved" not in response.json()
    flow = Flow(open_sandbox, client_id=client_id)
    page = User("walter", "walter-demo").start(flow.url())
    assert "Allow access?" in page.text  # not pre-approved: the user is asked


def test_a_config_value_that_is_not_a_boolean_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="must be true or false"):
        start_sandbox(tmp_path / "data", config='[ehr]\ndynamic_registration = "yes"\n')


def test_a_self_registered_app_is_unverified_and_off_the_launch_page_until_approved(open_sandbox: Sandbox) -> None:
    data = str(open_sandbox.server.data)
    metadata = {**APP, "client_name": "Self-registered launcher", "initiate_login_uri": LAUNCH_URL}
    client_id = post(open_sandbox, metadata).json()["client_id"]
    (listed,) = [c for c in json.loads(ehr("clients", "list", "--data", data).stdout) if c["client_id"] == client_id]
    assert listed["registered"] == "dynamically" and listed["approved"] is False
    clinician, launch_page = User("dr.chen", "chen-demo"), f"{open_sandbox.url}/ehr/launch"
    page = clinician.start(launch_page)
    assert "Self-registered launcher" not in page.text
    forged = clinician.post(launch_page, page.text, step="launch", client_id=client_id, patient="walter-nguyen")
    assert forged.status_code == 403 and "location" not in forged.headers
    flow = Flow(open_sandbox, client_id=client_id)
    consent = User("walter", "walter-demo").start(flow.url())  # standalone: allowed, marked unverified
    assert "Allow access?" in consent.text and "not been approved" in consent.text
    origin = "http://127.0.0.1:65500"  # its redirect URI's origin: no CORS for it yet
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    assert httpx.options(f"{open_sandbox.url}/auth/token", headers=preflight).status_code == 403

    approved = json.loads(ehr("clients", "approve", "--data", data, client_id).stdout)
    assert approved["client_id"] == client_id and approved["approved"] is True
    (listed,) = [c for c in json.loads(ehr("clients", "list", "--data", data).stdout) if c["client_id"] == client_id]
    assert listed["approved"] is True
    assert "Self-registered launcher" in clinician.http.get(launch_page).text
    assert "not been approved" not in User("walter", "walter-demo").start(flow.url()).text
    answer = httpx.options(f"{open_sandbox.url}/auth/token", headers=preflight)
    assert answer.status_code == 204 and answer.headers["access-control-allow-origin"] == origin


def test_approving_an_unknown_client_names_the_problem(open_sandbox: Sandbox) -> None:
    result = ehr("clients", "approve", "--data", str(open_sandbox.server.data), "no-such-client", check=False)
    assert result.returncode == 2 and "no-such-client" in result.stderr
