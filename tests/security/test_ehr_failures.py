"""The EHR cannot answer: every route is 503 with `Retry-After`, never a guess, never data.

The imaging server asks a real, deliberately broken HTTP peer standing in for the EHR's
introspection endpoint (it answers 500, HTML, JSON that is not an introspection answer, or
hangs), or an endpoint at a closed port. Documented in docs/authorization.md §Status codes:
`AuthorizationServerUnavailable`, 503, `Retry-After: <retry_after_seconds>` (7 here).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.security.attacks import ORIGIN, Target, assert_cors, assert_no_leak, refused_on_every_route
from tests.security.servers import load, seed_files, start_imaging

ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "500": (500, "application/json", b'{"error": "server_error"}'),
    "503": (503, "text/plain", b"maintenance"),
    "html": (200, "text/html", b"<html><body>Sign in</body></html>"),
    "not-an-object": (200, "application/json", b'[{"active": true}]'),
    "active-not-boolean": (200, "application/json", b'{"active": "true", "scope": "patient/ImagingStudy.rs"}'),
    "truncated-json": (200, "application/json", b'{"active": true, "scope": "patient/Ima'),
    "bad-scope-type": (200, "application/json",
                       b'{"active": true, "scope": ["patient/ImagingStudy.rs"], "exp": 9999999999, '
                       b'"aud": "http://broken.test/fhir"}'),
}  # fmt: skip


class BrokenEhr(BaseHTTPRequestHandler):
    """Answers every request with the server's current `mode` (one of ANSWERS, or "hang")."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        mode: str = self.server.mode  # type: ignore[attr-defined]
        if mode == "hang":
            time.sleep(4)  # past the imaging server's timeout_seconds = 2
            mode = "500"
        status, media, body = ANSWERS[mode]
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    peer = ThreadingHTTPServer(("127.0.0.1", 0), BrokenEhr)
    peer.mode = "500"  # type: ignore[attr-defined]
    threading.Thread(target=peer.serve_forever, daemon=True).start()
    folder = tmp_path_factory.mktemp("broken-ehr")
    secret = folder / "imaging.secret"
    secret.write_text("not-a-real-secret\n", encoding="utf-8")
    base = f"http://127.0.0.1:{peer.server_address[1]}"
    common: dict[str, Any] = {"client_id": "imaging", "secret_file": secret, "audience": "http://broken.test/fhir"}
    servers = {}
    load(folder / "a", seed_files("walter-nguyen"))  # Walter's study is there: the server must still give nothing
    try:
        servers["introspection"] = start_imaging(
            folder / "a", ehr_issuer=f"{base}/fhir", introspection_endpoint=f"{base}/auth/introspect", **common
        )
        servers["discovery"] = start_imaging(folder / "b", ehr_issuer=f"{base}/fhir", **common)
        closed = f"http://127.0.0.1:{free_port()}"
        servers["closed"] = start_imaging(
            folder / "c", ehr_issuer=f"{closed}/fhir", introspection_endpoint=f"{closed}/auth/introspect", **common
        )
        yield {"peer": peer, **servers}
    finally:
        for server in servers.values():
            server.stop()
        peer.shutdown()


def assert_unavailable_everywhere(http: httpx.Client, root: str, target: Target) -> None:
    refused_on_every_route(http, root, "c29tZS10b2tlbi10aGF0LWxvb2tzLXJlYWw", target, status=503, error=None,
                           deletes=True, headers={})  # fmt: skip
    answer = http.get(f"{root}/dicom-web/studies", headers={"Authorization": "Bearer eA", "Origin": ORIGIN})
    assert answer.headers.get("retry-after") == "7", answer.headers
    # Retry-After is no "CORS-safelisted response-header name" (Fetch Standard): a browser app reads it only if exposed
    exposed = {h.strip().lower() for h in answer.headers.get("access-control-expose-headers", "").split(",")}
    assert "retry-after" in exposed, answer.headers
    assert "invalid_token" not in answer.headers.get("www-authenticate", ""), "the EHR failed, not the token"


@pytest.mark.parametrize("mode", list(ANSWERS))
def test_introspection_answering_garbage_is_503_everywhere(
    http: httpx.Client, broken: dict[str, Any], walter: Target, mode: str
) -> None:
    broken["peer"].mode = mode
    assert_unavailable_everywhere(http, broken["introspection"].url, walter)


def test_discovery_failing_is_503_everywhere(http: httpx.Client, broken: dict[str, Any], walter: Target) -> None:
    broken["peer"].mode = "html"
    assert_unavailable_everywhere(http, broken["discovery"].url, walter)


def test_introspection_at_a_closed_port_is_503_everywhere(
    http: httpx.Client, broken: dict[str, Any], walter: Target
) -> None:
    assert_unavailable_everywhere(http, broken["closed"].url, walter)


@pytest.mark.parametrize("path", ["/dicom-web/studies", "/fhir/ImagingStudy?patient=walter-nguyen"])
def test_introspection_timing_out_is_503(http: httpx.Client, broken: dict[str, Any], walter: Target, path: str) -> None:
    broken["peer"].mode = "hang"
    answer = http.get(broken["introspection"].url + path, headers={"Authorization": "Bearer aGFuZw", "Origin": ORIGIN})
    assert answer.status_code == 503, answer.text
    assert answer.headers.get("retry-after") == "7"
    assert_cors(answer)
    assert_no_leak(answer, walter)
