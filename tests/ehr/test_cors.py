"""CORS for browser-only SMART apps on another origin: discovery, JWKS, the token-side endpoints and FHIR answer
preflights and carry Access-Control-Allow-Origin (errors included) for allowed origins; the cookie pages never do."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.ehr.conftest import Sandbox, start_sandbox

REGISTERED = "http://127.0.0.1:3000"  # the origin of the `viewer` client's redirect URI
LISTED = "https://viewer.example.org"  # in the config's cors_origins
STRANGER = "https://evil.example"

CORS_PATHS = [
    ("GET", "/fhir/.well-known/smart-configuration"),
    ("GET", "/.well-known/jwks.json"),
    ("POST", "/auth/token"),
    ("POST", "/auth/introspect"),
    ("POST", "/auth/revoke"),
    ("GET", "/fhir/Patient/walter-nguyen"),
    ("POST", "/fhir/Patient/_search"),
    ("GET", "/fhir/metadata"),
]
PAGES = ["/auth/authorize", "/ehr/launch", "/auth/logout"]


def preflight(url: str, origin: str, method: str = "POST") -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return httpx.options(url, headers=headers)


@pytest.fixture(scope="module")
def listed_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    server = start_sandbox(tmp_path_factory.mktemp("cors") / "data", config=f'[ehr]\ncors_origins = ["{LISTED}"]\n')
    yield Sandbox(server, {})
    server.stop()


@pytest.mark.parametrize(("method", "path"), CORS_PATHS, ids=[p for _, p in CORS_PATHS])
def test_a_registered_apps_origin_gets_preflights_answered(sandbox: Sandbox, method: str, path: str) -> None:
    response = preflight(sandbox.url + path, REGISTERED, method)
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == REGISTERED
    assert method in response.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert int(response.headers["access-control-max-age"]) > 0
    assert "origin" in response.headers["vary"].lower()
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(("method", "path"), CORS_PATHS, ids=[p for _, p in CORS_PATHS])
def test_answers_and_errors_carry_the_allowed_origin(sandbox: Sandbox, method: str, path: str) -> None:
    response = httpx.request(method, sandbox.url + path, headers={"Origin": REGISTERED})
    assert response.headers.get("access-control-allow-origin") == REGISTERED, (response.status_code, response.text)
    assert "origin" in response.headers["vary"].lower()
    assert "access-control-allow-credentials" not in response.headers


def test_the_fhir_401_challenge_is_readable_by_the_app(sandbox: Sandbox) -> None:
    response = httpx.get(f"{sandbox.url}/fhir/Patient/walter-nguyen", headers={"Origin": REGISTERED})
    assert response.status_code == 401
    assert "www-authenticate" in response.headers["access-control-expose-headers"].lower()


def test_an_origin_neither_listed_nor_registered_gets_no_cors(sandbox: Sandbox) -> None:
    response = preflight(f"{sandbox.url}/auth/token", STRANGER)
    assert response.status_code == 403 and "access-control-allow-origin" not in response.headers
    answer = httpx.get(f"{sandbox.url}/fhir/.well-known/smart-configuration", headers={"Origin": STRANGER})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
    assert "origin" in answer.headers["vary"].lower()


@pytest.mark.parametrize("path", PAGES)
def test_the_cookie_pages_get_no_cors(sandbox: Sandbox, path: str) -> None:
    response = preflight(sandbox.url + path, REGISTERED)
    assert "access-control-allow-origin" not in response.headers and response.status_code != 204
    page = httpx.get(sandbox.url + path, headers={"Origin": REGISTERED})
    assert "access-control-allow-origin" not in page.headers


def test_an_origin_from_the_config_is_allowed(listed_sandbox: Sandbox) -> None:
    response = preflight(f"{listed_sandbox.url}/auth/token", LISTED)
    assert response.status_code == 204 and response.headers["access-control-allow-origin"] == LISTED
    answer = httpx.get(f"{listed_sandbox.url}/.well-known/jwks.json", headers={"Origin": LISTED})
    assert answer.headers["access-control-allow-origin"] == LISTED
    refused = preflight(f"{listed_sandbox.url}/auth/token", STRANGER)
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


def test_any_origin_is_answered_with_the_wildcard_and_no_credentials(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = start_sandbox(tmp_path_factory.mktemp("cors-any") / "data", config='[ehr]\ncors_origins = ["*"]\n')
    try:
        response = preflight(f"{server.url}/auth/token", STRANGER)
        assert response.status_code == 204 and response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers
        answer = httpx.get(f"{server.url}/fhir/Patient/x", headers={"Origin": STRANGER})
        assert answer.status_code == 401 and answer.headers["access-control-allow-origin"] == "*"
        page = httpx.get(f"{server.url}/ehr/launch", headers={"Origin": STRANGER})
        assert "access-control-allow-origin" not in page.headers
    finally:
        server.stop()


@pytest.mark.parametrize(
    "value",
    ['["https://a.example/"]', '["*", "https://a.example"]', '"https://a.example"', '["a.example"]'],
    ids=["path", "wildcard-and-list", "not-a-list", "no-scheme"],
)
def test_a_cors_origins_value_that_is_not_a_list_of_origins_is_refused(tmp_path_factory, value: str) -> None:
    from aperture.config import ConfigError
    from aperture.ehr.config import load_ehr_config

    path = tmp_path_factory.mktemp("cors-bad") / "ehr.toml"
    path.write_text(f"[ehr]\ncors_origins = {value}\n")
    with pytest.raises(ConfigError, match="cors_origins"):
        load_ehr_config(path)
