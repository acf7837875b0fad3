"""RFC 7662 introspection and RFC 7009 revocation against the running sandbox."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ehr.conftest import Sandbox, ehr, register, start_sandbox


def backend_token(sandbox: Sandbox) -> str:
    response = sandbox.backend_token(sandbox.assertion("backend-rs"))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_active_answer_has_the_smart_fields(sandbox: Sandbox) -> None:
    before = int(time.time())
    token = backend_token(sandbox)
    response = sandbox.introspect(token)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    info = response.json()
    assert info["active"] is True
    assert info["scope"] == "system/ImagingStudy.rs"
    assert info["client_id"] == "backend-rs"
    assert info["iss"] == f"{sandbox.url}/fhir"
    assert info["sub"] == "backend-rs"
    assert info["aud"] == [f"{sandbox.url}/fhir", "http://imaging.test/fhir"]
    assert before - 1 <= info["iat"] <= int(time.time()) + 1
    assert info["exp"] == info["iat"] + 3600
    assert "patient" not in info and "fhirUser" not in info  # a backend token acts for no patient


def test_introspection_without_client_authentication_is_401(sandbox: Sandbox) -> None:
    token = backend_token(sandbox)
    response = httpx.post(f"{sandbox.url}/auth/introspect", data={"token": token})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert "active" not in response.json()


def test_introspection_with_a_wrong_secret_is_401(sandbox: Sandbox) -> None:
    token = backend_token(sandbox)
    response = httpx.post(f"{sandbox.url}/auth/introspect", data={"token": token}, auth=("imaging", "guess"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_backend_assertion_does_not_authenticate_to_introspection(sandbox: Sandbox) -> None:
    token = backend_token(sandbox)
    response = httpx.post(
        f"{sandbox.url}/auth/introspect",
        data={
            "token": token,
            "client_assertion": sandbox.assertion("backend-rs"),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        },  # fmt: skip
    )
    assert response.status_code == 401


def test_a_client_that_is_not_a_resource_server_learns_nothing(sandbox: Sandbox) -> None:
    token = backend_token(sandbox)
    assert sandbox.introspect(token, client_id="other-app").json() == {"active": False}


def test_unknown_token_is_inactive(sandbox: Sandbox) -> None:
    assert sandbox.introspect("not-a-token").json() == {"active": False}


def test_revoked_token_is_inactive(sandbox: Sandbox) -> None:
    token = backend_token(sandbox)
    response = httpx.post(
        f"{sandbox.url}/auth/revoke",
        data={
            "token": token,
            "client_assertion": sandbox.assertion("backend-rs"),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        },  # fmt: skip
    )
    assert response.status_code == 200
    assert sandbox.introspect(token).json() == {"active": False}


def test_only_the_client_a_token_was_issued_to_may_revoke_it(sandbox: Sandbox) -> None:
    token = backend_token(sandbox)
    response = httpx.post(
        f"{sandbox.url}/auth/revoke",
        data={
            "token": token,
            "client_assertion": sandbox.assertion("backend-es"),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        },  # fmt: skip
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert sandbox.introspect(token).json()["active"] is True


def test_revocation_needs_client_authentication(sandbox: Sandbox) -> None:
    token = backend_token(sandbox)
    response = httpx.post(f"{sandbox.url}/auth/revoke", data={"token": token})
    assert response.status_code == 401
    assert sandbox.introspect(token).json()["active"] is True


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """A sandbox whose tokens live three seconds: (url, imaging secret, data folder)."""
    data = tmp_path_factory.mktemp("ehr-short") / "data"
    secret = register(data, "--kind", "confidential", "--name", "Imaging", "--client-id", "imaging", "--introspect")
    register(data, "--kind", "public", "--name", "Viewer", "--client-id", "viewer",
             "--scope", "patient/ImagingStudy.rs", "--redirect-uri", "https://viewer.test/cb")  # fmt: skip
    server = start_sandbox(data, config="[ehr]\naccess_token_lifetime = 3\n")
    yield server.url, secret["client_secret"], data
    server.stop()


def test_expired_token_is_inactive(short_lived: tuple[str, str, Path]) -> None:
    url, secret, data = short_lived
    minted = ehr("token", "--data", str(data), "--config", str(data.parent / "data-ehr.toml"),
                 "--client-id", "viewer", "--scope", "patient/ImagingStudy.rs", "--patient", "p1")  # fmt: skip
    token = json.loads(minted.stdout)["access_token"]
    assert httpx.post(f"{url}/auth/introspect", data={"token": token}, auth=("imaging", secret)).json()["active"]
    time.sleep(3.2)
    response = httpx.post(f"{url}/auth/introspect", data={"token": token}, auth=("imaging", secret))
    assert response.json() == {"active": False}


def test_introspection_without_a_token_parameter_is_invalid_request(sandbox: Sandbox) -> None:
    response = httpx.post(
        f"{sandbox.url}/auth/introspect", data={"tok": "x"}, auth=("imaging", sandbox.secrets["imaging"])
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_token_introspection_and_revocation_answers_are_never_cached(sandbox: Sandbox) -> None:
    token = backend_token(sandbox)
    answers = [
        sandbox.backend_token(sandbox.assertion("backend-rs")),  # 200 token
        sandbox.backend_token("not-a-jwt"),  # 400 error
        httpx.post(sandbox.token_endpoint, data={"grant_type": "password"}),
        httpx.post(sandbox.token_endpoint, content=b"{}", headers={"Content-Type": "application/json"}),
        sandbox.introspect(token),  # 200 active
        sandbox.introspect("unknown"),  # 200 inactive
        httpx.post(f"{sandbox.url}/auth/introspect", data={"token": token}),  # 401
        httpx.post(f"{sandbox.url}/auth/revoke", data={"token": token}),  # 400/401
        httpx.post(f"{sandbox.url}/auth/revoke", data={"token": token, "client_assertion_type":
                   "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                   "client_assertion": sandbox.assertion("backend-rs")}),  # 200
    ]  # fmt: skip
    for response in answers:
        assert "no-store" in response.headers.get("cache-control", ""), (response.request.url, response.status_code)
