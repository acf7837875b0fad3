"""`/app/` and `/IHEInvokeImageDisplay` on a real server: the app's files (those only, with their policy),
and IID requests sent on to the app checked, or refused with a page a person can read.

The app itself runs in chromium against the demo stack in tests/browser/test_web_app.py.
"""

from __future__ import annotations

from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from aperture.clients import WEB_APP_CLIENT_ID
from aperture.server.webapp import WEB_APP
from tests.conftest import ApertureServer

FOLDER = files("aperture") / "clients" / "web_app"


def test_every_file_of_the_app_is_served_with_its_type_and_policy(server: ApertureServer) -> None:
    shipped = sorted(entry.name for entry in FOLDER.iterdir() if entry.is_file())
    assert shipped == sorted(WEB_APP.files)  # the folder and the allow-list agree
    for name, media_type in WEB_APP.files.items():
        answer = httpx.get(f"{server.url}/app/{name}")
        assert answer.status_code == 200, (name, answer.text)
        assert answer.headers["content-type"] == media_type and answer.content == (FOLDER / name).read_bytes()
        policy = answer.headers["content-security-policy"]
        # the download form posts to this server; nothing loads from or connects to another site
        assert "form-action 'self'" in policy and "script-src 'self'" in policy and "connect-src 'self';" in policy
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{server.url}/app/").content == (FOLDER / "index.html").read_bytes()
    assert httpx.get(f"{server.url}/app/config.json").json() == {"issuer": None, "clientId": WEB_APP_CLIENT_ID}
    for outside in ("/app/%2e%2e%2f%2e%2e%2fpyproject.toml", "/app/..%2Fapp.js", "/app/__init__.py", "/app/sub/app.js"):
        assert httpx.get(f"{server.url}{outside}").status_code in (400, 404), outside


def test_no_file_of_the_app_names_another_site(server: ApertureServer) -> None:
    """No CDN: every script, style and picture comes from this server (the CSP would block the rest anyway)."""
    for name in WEB_APP.files:
        text = (FOLDER / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name


def test_a_good_iid_request_goes_on_to_the_app_with_checked_values_only(server: ApertureServer) -> None:
    query = "requestType=STUDY&studyUID=2.25.1;2.25.2&viewerType=IHE_BIR&foo=bar"
    answer = httpx.get(f"{server.url}/IHEInvokeImageDisplay?{query}")
    assert answer.status_code == 303 and answer.headers["cache-control"] == "no-store"
    target = urlsplit(answer.headers["location"])
    assert target.path == "/app/launch.html"
    assert parse_qs(target.query) == {
        "requestType": ["STUDY"], "studyUID": ["2.25.1,2.25.2"], "diagnosticQuality": ["true"],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("requestType=STUDY&studyUID=2.25.1&keyImagesOnly=true", "keyImagesOnly=true is not available here"),
        ("requestType=STUDY&studyUID=2.25.1&viewerType=%3Cb%3Ebold%3C/b%3E", "viewerType &#x27;&lt;b&gt;bold"),
        ("requestType=PATIENT&patientID=AGH-100234", "names no issuer"),
        ("studyUID=2.25.1", "requestType must be STUDY, PATIENT or ACCESSION"),
    ],
)
def test_an_unsupported_iid_request_gets_a_page_in_words(server: ApertureServer, query: str, words: str) -> None:
    answer = httpx.get(f"{server.url}/IHEInvokeImageDisplay?{query}", headers={"Accept": "text/html"})
    assert answer.status_code == 400 and answer.headers["content-type"].startswith("text/html")
    assert words in answer.text and "<b>" not in answer.text  # the value is shown, escaped, never run
    assert (
        "The images cannot be shown" in answer.text
        and "default-src 'none'" in answer.headers["content-security-policy"]
    )
