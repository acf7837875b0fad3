"""Logs: the default log holds no query values at all; the access log, when turned on
(`--access-log`), one `aperture.access` line per request with every query value but paging ones redacted."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from aperture.config import Config, StoreConfig
from aperture.logs import redact
from tests.conftest import ApertureServer, start_command
from tests.server import access_lines, get_from_failing_app


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApertureServer]:
    """A server of its own with the access log on, so that nothing else writes to the log the tests search."""
    data = tmp_path_factory.mktemp("accesslog") / "data"
    server = start_command(["serve", "--data", str(data), "--auth", "none", "--access-log"], data)
    yield server
    server.stop()


# Values a request may carry in its query that no log may hold: patient identifiers and credentials.
PRIVATE = {
    "PatientID": "MRN-7731-private",
    "PatientName": "Doe^Janet-private",
    "PatientBirthDate": "19610203",
    "access_token": "eyJhbGciOiJSUzM4NCJ9.access-private",
    "client_assertion": "eyJhbGciOiJSUzM4NCJ9.assertion-private",
    "code_verifier": "verifier-private-0123456789abcdef",
    "code": "code-private-42",
    "state": "state-private-7",
}


def _private_requests(base: str) -> None:
    """GET and POST with every private value in the query (and a password in a form body)."""
    with httpx.Client(timeout=30) as http:
        http.get(f"{base}/dicom-web/studies", params={**PRIVATE, "limit": "5"})
        http.get(f"{base}/dicom-web/studies/1.2.3/series", params=PRIVATE)
        http.get(f"{base}/healthz", params=PRIVATE)
        http.post(f"{base}/dicom-web/studies", params=PRIVATE, content=b"x", headers={"Content-Type": "text/plain"})
        http.get(f"{base}/dicom-web/studies", params={"StudyDate": "2020-01-01", **PRIVATE})  # a 400


def test_the_default_log_holds_no_query_value(fresh_server: ApertureServer) -> None:
    """`aperture serve` as started by default: no access lines, and none of the values sent."""
    _private_requests(fresh_server.url)
    fresh_server.stop()  # everything the server will write is written
    text = fresh_server.log.read_text(errors="replace")
    assert "aperture.access" not in text, text
    for name, value in PRIVATE.items():
        assert value not in text, f"{name} value in the default log:\n{text}"


def test_the_access_log_redacts_every_value_but_paging(logged: ApertureServer) -> None:
    marker = generate_uid()
    httpx.get(f"{logged.dicomweb}/studies/{marker}/series", params={**PRIVATE, "limit": "5", "offset": "10"})
    (line,) = access_lines(logged, marker)
    assert "PatientID=REDACTED&PatientName=REDACTED" in line and "&limit=5&offset=10 " in line, line
    text = logged.log.read_text(errors="replace")
    for name, value in PRIVATE.items():
        assert value not in text, f"{name} value in the access log:\n{text}"


def test_tokens_in_the_query_are_redacted(logged: ApertureServer) -> None:
    marker = generate_uid()
    httpx.get(f"{logged.dicomweb}/studies/{marker}?token=s3cr3t&PatientID=X&access_token=abc")
    (line,) = access_lines(logged, marker)
    assert "token=REDACTED" in line and "access_token=REDACTED" in line
    text = logged.log.read_text()
    assert "s3cr3t" not in text and "abc" not in text


def test_the_line_has_client_method_path_status_bytes_and_duration(logged: ApertureServer) -> None:
    marker = generate_uid()
    answer = httpx.get(f"{logged.dicomweb}/studies", params={"StudyInstanceUID": marker, "limit": "3"})
    (line,) = access_lines(logged, "StudyInstanceUID=REDACTED&limit=3")
    match = re.search(r" INFO aperture\.access: (\S+) (\S+) (\S+) (\d+) (\d+) ([\d.]+)ms$", line)
    assert match, line
    client, method, target, status, size, _duration = match.groups()
    assert (client, method, target) == ("127.0.0.1", "GET", "/dicom-web/studies?StudyInstanceUID=REDACTED&limit=3")
    assert int(status) == answer.status_code == 200
    assert int(size) == len(answer.content)


def test_names_match_case_insensitively_and_escaped(logged: ApertureServer) -> None:
    marker = generate_uid()
    secrets = "ACCESS_TOKEN=hidden1&Code=hidden2&client_secret=hidden3&acc%65ss_token=hidden4&password=hidden5"
    httpx.get(f"{logged.url}/healthz/{marker}?{secrets}&LIMIT=4&%6Cimit=5")
    (line,) = access_lines(logged, marker)
    assert "hidden" not in line
    assert "ACCESS_TOKEN=REDACTED&Code=REDACTED&client_secret=REDACTED&acc%65ss_token=REDACTED" in line
    assert "&LIMIT=4&%6Cimit=5 " in line


def test_the_authorization_header_is_never_logged(logged: ApertureServer) -> None:
    marker = generate_uid()
    httpx.get(f"{logged.url}/healthz/{marker}", headers={"Authorization": "Bearer bearer-value-xyz"})
    assert access_lines(logged, marker)
    assert "bearer-value-xyz" not in logged.log.read_text()


def test_a_newline_in_the_path_cannot_forge_a_line(logged: ApertureServer) -> None:
    marker = generate_uid()
    httpx.get(f"{logged.url}/x%0A{marker}%20INFO%20aperture.access:%20forged")
    (line,) = access_lines(logged, marker)
    assert " 404 " in line and "forged" in line  # one line, still encoded


def test_every_request_gets_one_line_even_an_error(logged: ApertureServer) -> None:
    marker = generate_uid()
    answer = httpx.get(f"{logged.dicomweb}/studies/{marker}/metadata")
    assert answer.status_code == 404
    (line,) = access_lines(logged, marker)
    assert f" GET /dicom-web/studies/{marker}/metadata 404 {len(answer.content)} " in line


def test_a_500_from_the_error_middleware_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aperture.access")
    answer = asyncio.run(get_from_failing_app(Config(store=StoreConfig(path=tmp_path)), {}))
    assert answer.status_code == 500
    (record,) = [r for r in caplog.records if r.name == "aperture.access"]
    assert record.levelno == logging.INFO
    assert f" GET /boom 500 {len(answer.content)} " in record.getMessage()


@pytest.mark.parametrize(
    ("query", "logged_as"),
    [
        ("", ""),
        ("PatientID=X&limit=10", "PatientID=REDACTED&limit=10"),
        ("PatientName=Doe+J*&offset=0&includefield=00081030", "PatientName=REDACTED&offset=0&includefield=00081030"),
        ("token=a", "token=REDACTED"),
        ("tokens=a&xtoken=b&token", "tokens=REDACTED&xtoken=REDACTED&REDACTED"),
        ("limit&Doe^Jane", "limit&REDACTED"),
        ("PatientID=&limit=1", "PatientID=&limit=1"),
        ("Password=a%26b&x=1", "Password=REDACTED&x=REDACTED"),
        ("pass+word=a&client%5Fsecret=b", "REDACTED&client%5Fsecret=REDACTED"),
        (
            "client_assertion=a.b.c&code_verifier=v&client_id=app",
            "client_assertion=REDACTED&code_verifier=REDACTED&client_id=app",
        ),
        ("accept=application%2Fzip&_count=5", "accept=application%2Fzip&_count=5"),
        ("patient=PAT-7&_count=2&_page_after=12", "patient=REDACTED&_count=2&_page_after=12"),
    ],
)
def test_redact(query: str, logged_as: str) -> None:
    assert redact(query) == logged_as
