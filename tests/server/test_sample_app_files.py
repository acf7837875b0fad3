"""`/apps/sample/`: the imaging server serves the sample SMART app's files, those only, with a strict CSP.

The app itself runs in chromium against the demo stack in tests/browser/test_sample_app.py.
"""

from __future__ import annotations

import http.client
import json
from importlib.resources import files

import httpx
import pytest

from aperture.clients import SAMPLE_APP_CLIENT_ID
from aperture.config import load_config
from aperture.server.apps import FILES, app_config
from tests.conftest import ApertureServer

FOLDER = files("aperture") / "clients" / "sample_app"


def test_every_file_of_the_app_is_served_with_its_type_and_policy(server: ApertureServer) -> None:
    shipped = sorted(entry.name for entry in FOLDER.iterdir() if entry.is_file())
    assert shipped == sorted(FILES)  # a file added to the folder is added to the allow-list, and the other way round
    for name, media_type in FILES.items():
        answer = httpx.get(f"{server.url}/apps/sample/{name}")
        assert answer.status_code == 200, (name, answer.text)
        assert answer.headers["content-type"] == media_type
        assert answer.content == (FOLDER / name).read_bytes()
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["referrer-policy"] == "no-referrer"  # the callback URL's code never leaves in a Referer
        assert answer.headers["x-content-type-options"] == "nosniff"
    index = httpx.get(f"{server.url}/apps/sample/")
    assert index.status_code == 200 and index.content == (FOLDER / "index.html").read_bytes()
    # --auth none names no EHR: the scripts may connect to this server only
    assert "connect-src 'self';" in index.headers["content-security-policy"]


def test_config_json_names_the_ehr_this_server_trusts_and_the_demo_client(server: ApertureServer) -> None:
    """Without SMART authorization there is no EHR to sign in at: the app says so instead of guessing one."""
    answer = httpx.get(f"{server.url}/apps/sample/config.json")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {"issuer": None, "clientId": SAMPLE_APP_CLIENT_ID}


def test_config_json_under_smart_authorization_is_the_configured_issuer() -> None:
    config = load_config(server={"auth": "smart"}, auth={"ehr_issuer": "https://ehr.example.org/fhir/"})
    expected = {"issuer": "https://ehr.example.org/fhir", "clientId": SAMPLE_APP_CLIENT_ID}
    assert json.loads(app_config(config)) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/apps/sample/../healthz",
        "/apps/sample/../../pyproject.toml",
        "/apps/sample/%2e%2e/%2e%2e/pyproject.toml",
        "/apps/sample/..%2F..%2Fserver%2Fapp.py",
        "/apps/sample/%2E%2E%2F__init__.py",
        "/apps/sample/..%5c__init__.py",
        "/apps/sample/%252e%252e%252f__init__.py",
        "/apps/sample/./app.js/..%2F..%2F__init__.py",
        "/apps/sample/__init__.py",
        "/apps/sample/.",
        "/apps/sample/index.html%00.js",
        "/apps/sample/sub/app.js",
    ],
)
def test_nothing_outside_the_allow_list_is_served(server: ApertureServer, path: str) -> None:
    """The raw request target goes out as written (http.client does not normalise `..`)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
    finally:
        connection.close()
    assert answer.status in (400, 404), (path, answer.status, body[:200])
    assert b"import" not in body and b"[project]" not in body, path
