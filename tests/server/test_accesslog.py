"""Access log: one `aperture.access` line per request, with secret query values redacted."""

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
from aperture.server.accesslog import redact
from tests.conftest import ApertureServer, start_server
from tests.server import access_lines, get_from_failing_app


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApertureServer]:
    """A server of its own, so that nothing else writes to the log the tests search."""
    server = start_server(tmp_path_factory.mktemp("accesslog") / "data")
    yield server
    server.stop()


def test_tokens_in_the_query_are_redacted(logged: ApertureServer) -> None:
    httpx.get(f"{logged.dicomweb}/studies?token=s3cr3t&PatientID=X&access_token=abc")
    (line,) = access_lines(logged, "PatientID=X")
    assert "token=REDACTED" in line and "access_token=REDACTED" in line
    text = logged.log.read_text()
    assert "s3cr3t" not in text and "abc" not in text


def test_the_line_has_client_method_path_status_bytes_and_duration(logged: ApertureServer) -> None:
    marker = generate_uid()
    answer = httpx.get(f"{logged.dicomweb}/studies", params={"PatientID": marker})
    (line,) = access_lines(logged, marker)
    match = re.search(r" INFO aperture\.access: (\S+) (\S+) (\S+) (\d+) (\d+) ([\d.]+)ms$", line)
    assert match, line
    client, method, target, status, size, _duration = match.groups()
    assert (client, method, target) == ("127.0.0.1", "GET", f"/dicom-web/studies?PatientID={marker}")
    assert int(status) == answer.status_code == 200
    assert int(size) == len(answer.content)


def test_names_match_case_insensitively_and_escaped(logged: ApertureServer) -> None:
    marker = generate_uid()
    secrets = "ACCESS_TOKEN=hidden1&Code=hidden2&client_secret=hidden3&acc%65ss_token=hidden4&password=hidden5"
    query = f"m={marker}&{secrets}"
    httpx.get(f"{logged.url}/healthz?{query}")
    (line,) = access_lines(logged, marker)
    assert "hidden" not in line
    assert "ACCESS_TOKEN=REDACTED&Code=REDACTED&client_secret=REDACTED&acc%65ss_token=REDACTED" in line


def test_the_authorization_header_is_never_logged(logged: ApertureServer) -> None:
    marker = generate_uid()
    httpx.get(f"{logged.url}/healthz", params={"m": marker}, headers={"Authorization": "Bearer bearer-value-xyz"})
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
        ("PatientID=X&limit=10", "PatientID=X&limit=10"),
        ("token=a", "token=REDACTED"),
        ("tokens=a&xtoken=b&token", "tokens=a&xtoken=b&token"),
        ("id_token=a&refresh_token=b&code=c", "id_token=REDACTED&refresh_token=REDACTED&code=REDACTED"),
        ("Password=a%26b&x=1", "Password=REDACTED&x=1"),
        ("pass+word=a&client%5Fsecret=b", "pass+word=a&client%5Fsecret=REDACTED"),
        ("PatientName=Doe+J*", "PatientName=Doe+J*"),
    ],
)
def test_redact(query: str, logged_as: str) -> None:
    assert redact(query) == logged_as
