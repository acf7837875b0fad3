"""RFC 7662 introspection and RFC 7009 revocation against the running sandbox."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ehr.conftest import ASSERTION_TYPE, Sandbox, ehr, register, start_sandbox
from tests.ehr.test_launch import refresh, tokens


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


@pytest.mark.parametrize("endpoint", ["introspect", "revoke", "token"])
def test_basic_credentials_that_are_not_utf8_are_401(sandbox: Sandbox, endpoint: str) -> None:
    """They were a 500 (UnicodeDecodeError in Authlib's Basic parsing)."""
    header = "Basic " + base64.b64encode(b"\xff\xfe:secret").decode()
    data = {"token": "x", "grant_type": "refresh_token", "refresh_token": "x"}
    response = httpx.post(f"{sandbox.url}/auth/{endpoint}", data=data, headers={"Authorization": header})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client", response.text


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
    """Another client's token: 200 as for an unknown token (RFC 7009 §2.2, no oracle), and it stays active."""
    token = backend_token(sandbox)
    response = httpx.post(
        f"{sandbox.url}/auth/revoke",
        data={
            "token": token,
            "client_assertion": sandbox.assertion("backend-es"),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        },  # fmt: skip
    )
    assert response.status_code == 200 and response.json() == {}
    assert sandbox.introspect(token).json()["active"] is True
    app = tokens(sandbox)
    for token in (app["access_token"], app["refresh_token"]):
        other = httpx.post(f"{sandbox.url}/auth/revoke", data={"token": token, "client_id": "viewer"})
        assert other.status_code == 200 and other.json() == {}
    assert sandbox.introspect(app["access_token"]).json()["active"] is True
    assert refresh(sandbox, app["refresh_token"]).status_code == 200


def revoke(sandbox: Sandbox, token: str, *, hint: str | None = None, client_id: str = "portal") -> httpx.Response:
    data = {"token": token, **({"token_type_hint": hint} if hint else {})}
    if client_id in sandbox.secrets:
        return httpx.post(f"{sandbox.url}/auth/revoke", data=data, auth=(client_id, sandbox.secrets[client_id]))
    return httpx.post(f"{sandbox.url}/auth/revoke", data={**data, "client_id": client_id})


@pytest.mark.parametrize("hint", [None, "refresh_token", "access_token"])
def test_revoking_a_refresh_token_ends_it_and_the_access_tokens_of_its_grant(
    sandbox: Sandbox, hint: str | None
) -> None:
    """RFC 7009 §2.1: the hint is only a hint, a wrong one falls back to the other type."""
    first = tokens(sandbox, client_id="portal")
    second = refresh(sandbox, first["refresh_token"], client_id="portal").json()
    response = revoke(sandbox, second["refresh_token"], hint=hint)
    assert response.status_code == 200 and response.json() == {}
    assert refresh(sandbox, second["refresh_token"], client_id="portal").json()["error"] == "invalid_grant"
    for access_token in (first["access_token"], second["access_token"]):
        assert sandbox.introspect(access_token).json() == {"active": False}


def test_revoking_an_access_token_with_a_refresh_hint_still_revokes_it(sandbox: Sandbox) -> None:
    answer = tokens(sandbox, client_id="portal")
    assert revoke(sandbox, answer["access_token"], hint="refresh_token").status_code == 200
    assert sandbox.introspect(answer["access_token"]).json() == {"active": False}
    assert refresh(sandbox, answer["refresh_token"], client_id="portal").status_code == 200  # the grant lives on


def test_a_public_client_revokes_its_own_tokens_with_its_client_id(sandbox: Sandbox) -> None:
    """RFC 7009 §2.1: a public client identifies itself with client_id in the body, nothing more."""
    answer = tokens(sandbox)
    access = revoke(sandbox, answer["access_token"], client_id="growth")
    assert access.status_code == 200, access.text
    assert sandbox.introspect(answer["access_token"]).json() == {"active": False}
    again = tokens(sandbox)
    assert revoke(sandbox, again["refresh_token"], client_id="growth").status_code == 200
    assert refresh(sandbox, again["refresh_token"]).json()["error"] == "invalid_grant"
    assert sandbox.introspect(again["access_token"]).json() == {"active": False}


def test_a_confidential_client_cannot_revoke_with_its_client_id_alone(sandbox: Sandbox) -> None:
    answer = tokens(sandbox, client_id="portal")
    response = httpx.post(f"{sandbox.url}/auth/revoke", data={"token": answer["access_token"], "client_id": "portal"})
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"
    assert sandbox.introspect(answer["access_token"]).json()["active"] is True


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


CREDENTIALS = ["client_assertion", "client_secret", "code", "code_verifier", "refresh_token", "token", "password",
               "access_token", "assertion"]  # fmt: skip


@pytest.mark.parametrize("name", CREDENTIALS)
@pytest.mark.parametrize("endpoint", ["token", "revoke", "introspect"])
def test_credentials_in_the_query_string_are_refused(sandbox: Sandbox, endpoint: str, name: str) -> None:
    """The request is otherwise valid; a credential in the URL (which logs and proxies keep) refuses it."""
    secret_value = "query-credential-value-" + name
    if endpoint == "introspect":
        body, auth = {"token": backend_token(sandbox)}, ("imaging", sandbox.secrets["imaging"])
    else:
        body = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": sandbox.assertion("backend-rs")}
        body |= {"grant_type": "client_credentials", "scope": "system/ImagingStudy.rs"} if endpoint == "token" else {}
        body |= {"token": backend_token(sandbox)} if endpoint == "revoke" else {}
        auth = None
    response = httpx.post(f"{sandbox.url}/auth/{endpoint}", params={name: secret_value}, data=body, auth=auth)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert "body" in response.json()["error_description"] and name in response.json()["error_description"]
    assert secret_value not in response.text
    assert "access_token" not in response.json() and "active" not in response.json()


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
