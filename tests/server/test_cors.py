"""CORS: allowed browser origins get the headers on every answer, errors and preflights included."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aperture.config import Config, ServerConfig, StoreConfig
from tests.conftest import ApertureServer, start_server
from tests.server import get_from_failing_app

VIEWER = "https://viewer.example.org"
EXPOSED = "ETag, Content-Length, Content-Range, Content-Type, WWW-Authenticate, Warning, Location, Retry-After"
ALLOWED_HEADERS = "Authorization, Accept, Content-Type, If-None-Match, If-Modified-Since, Range"


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApertureServer]:
    data = tmp_path_factory.mktemp("cors") / "data"
    server = start_server(data, config=f'[server]\ncors_origins = ["{VIEWER}", "http://localhost:3000"]\n')
    yield server
    server.stop()


def preflight(url: str, origin: str, **extra: str) -> httpx.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": "GET", **extra}
    return httpx.options(url, headers=headers)


def assert_cors(response: httpx.Response, origin: str = VIEWER) -> None:
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-expose-headers"] == EXPOSED
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers


def test_allowed_origin_gets_headers_on_a_success(cors_server: ApertureServer) -> None:
    answer = httpx.get(f"{cors_server.dicomweb}/studies", headers={"Origin": VIEWER})
    assert answer.status_code == 200
    assert_cors(answer)
    other = httpx.get(f"{cors_server.url}/healthz", headers={"Origin": "http://localhost:3000"})
    assert_cors(other, "http://localhost:3000")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/dicom-web/studies/1.2.3/metadata", 404),
        ("/no/such/path", 404),
        ("/dicom-web/studies?NoSuchKey=1", 400),
        ("/dicom-web/studies/" + "1." * 40 + "1/metadata", 400),  # UID over 64 characters
    ],
)
def test_errors_carry_the_headers_too(cors_server: ApertureServer, path: str, status: int) -> None:
    answer = httpx.get(f"{cors_server.url}{path}", headers={"Origin": VIEWER})
    assert answer.status_code == status
    assert set(answer.json()) == {"status", "error", "message"}
    assert_cors(answer)


def test_method_not_allowed_carries_the_headers(cors_server: ApertureServer) -> None:
    answer = httpx.put(f"{cors_server.dicomweb}/studies", headers={"Origin": VIEWER})
    assert answer.status_code == 405
    assert_cors(answer)


@pytest.mark.parametrize("path", ["/dicom-web/studies", "/dicom-web/studies/1.2.3/metadata", "/no/such/path"])
def test_preflight_is_answered_on_every_path(cors_server: ApertureServer, path: str) -> None:
    answer = preflight(f"{cors_server.url}{path}", VIEWER, **{"Access-Control-Request-Headers": "authorization"})
    assert answer.status_code == 204
    assert answer.content == b""
    assert answer.headers["access-control-allow-origin"] == VIEWER
    assert answer.headers["access-control-allow-methods"] == "GET, HEAD, POST, DELETE, OPTIONS"
    assert answer.headers["access-control-allow-headers"] == ALLOWED_HEADERS
    assert answer.headers["access-control-max-age"] == "600"
    assert "Origin" in answer.headers["vary"]


def test_preflight_lists_only_the_allowed_headers(cors_server: ApertureServer) -> None:
    answer = preflight(cors_server.dicomweb + "/studies", VIEWER, **{"Access-Control-Request-Headers": "x-custom"})
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-headers"] == ALLOWED_HEADERS


def test_preflight_from_a_disallowed_origin_is_403(cors_server: ApertureServer) -> None:
    answer = preflight(cors_server.dicomweb + "/studies", "https://evil.example")
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["status"] == 403 and body["error"] == "Forbidden"
    assert "https://evil.example" in body["message"] and "server.cors_origins" in body["message"]
    assert "access-control-allow-origin" not in answer.headers


def test_disallowed_origin_is_served_without_cors_headers(cors_server: ApertureServer) -> None:
    for origin in ("https://evil.example", "https://viewer.example.org.evil.example", "null"):
        answer = httpx.get(f"{cors_server.dicomweb}/studies", headers={"Origin": origin})
        assert answer.status_code == 200
        assert not any(name.startswith("access-control-") for name in answer.headers)


def test_without_origin_there_are_no_cors_headers_but_vary(cors_server: ApertureServer) -> None:
    answer = httpx.get(f"{cors_server.dicomweb}/studies")
    assert answer.status_code == 200
    assert not any(name.startswith("access-control-") for name in answer.headers)
    assert "Origin" in answer.headers["vary"]


def test_default_config_sends_no_cors_headers(server: ApertureServer) -> None:
    """The shared server has no cors_origins: same-origin only, and a preflight is not answered."""
    answer = httpx.get(f"{server.dicomweb}/studies", headers={"Origin": VIEWER})
    assert answer.status_code == 200
    assert not any(name.startswith("access-control-") for name in answer.headers)
    check = preflight(f"{server.dicomweb}/studies", VIEWER)
    assert check.status_code in (404, 405)
    assert not any(name.startswith("access-control-") for name in check.headers)


def test_wildcard_allows_any_origin_without_credentials(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", config='[server]\ncors_origins = ["*"]\n')
    try:
        answer = httpx.get(f"{server.dicomweb}/studies", headers={"Origin": "https://anyone.example"})
        assert answer.headers["access-control-allow-origin"] == "*"
        assert answer.headers["access-control-expose-headers"] == EXPOSED
        assert "access-control-allow-credentials" not in answer.headers
        check = preflight(f"{server.dicomweb}/studies", "https://anyone.example")
        assert check.status_code == 204
        assert check.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in check.headers
    finally:
        server.stop()


def test_a_500_from_the_error_middleware_carries_the_headers(tmp_path: Path) -> None:
    """create_app plus a route that raises, in process: ServerErrorMiddleware's 500 gets CORS headers."""
    config = Config(server=ServerConfig(cors_origins=(VIEWER,)), store=StoreConfig(path=tmp_path))
    answer = asyncio.run(get_from_failing_app(config, {"Origin": VIEWER}))
    assert answer.status_code == 500
    assert answer.json()["message"].startswith("Internal error (incident ")
    assert_cors(answer)
