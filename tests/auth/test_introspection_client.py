"""The imaging server's introspection client against the real EHR sandbox (`aperture ehr serve` subprocesses)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from aperture.auth.cache import ExpiringLRU
from aperture.auth.introspection import Introspector
from aperture.auth.tokens import TokenFacts, covers, parse_scopes, require
from aperture.config import AuthConfig
from aperture.errors import ApertureError, AuthorizationServerUnavailable, InsufficientScope, InvalidToken
from tests.conftest import ApertureServer, free_port
from tests.ehr.conftest import IMAGING_FHIR_BASE, Sandbox, ehr, jwks_host, register, sandbox, start_sandbox

__all__ = ["jwks_host", "sandbox"]  # session fixtures of tests/ehr, shared here


def mint(server: ApertureServer, scope: str, *, patient: str | None = "maya-alvarez", client: str = "viewer") -> str:
    args = ["token", "--data", str(server.data), "--client-id", client, "--scope", scope]
    answer = json.loads(ehr(*args, *(["--patient", patient] if patient else [])).stdout)
    return str(answer["access_token"])


def settings(issuer: str, secret: str, tmp_path: Path, **overrides: Any) -> AuthConfig:
    secret_file = tmp_path / "imaging-secret"
    secret_file.write_text(secret + "\n")
    values: dict[str, Any] = {
        "ehr_issuer": issuer,
        "client_id": "imaging",
        "client_secret_file": str(secret_file),
        "audience": IMAGING_FHIR_BASE,
        "cache_seconds": 0.3,
        "negative_cache_seconds": 0.3,
    }
    return AuthConfig(**{**values, **overrides})


def verify(config: AuthConfig, *tokens: str, client: httpx.AsyncClient | None = None) -> list[TokenFacts]:
    async def run() -> list[TokenFacts]:
        introspector = Introspector(config, client=client)
        try:
            return [await introspector.verify(token) for token in tokens]
        finally:
            await introspector.aclose()

    return asyncio.run(run())


def refused(config: AuthConfig, token: str) -> ApertureError:
    with pytest.raises(ApertureError) as caught:
        verify(config, token)
    assert token not in str(caught.value) and token not in repr(caught.value)
    return caught.value


@pytest.fixture
def config(sandbox: Sandbox, tmp_path: Path) -> AuthConfig:
    return settings(f"{sandbox.url}/fhir", sandbox.secrets["imaging"], tmp_path)


@pytest.fixture(autouse=True)
def no_token_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Every test lists the tokens it used; none may appear in any captured log record."""
    used: list[str] = []
    caplog.set_level(logging.DEBUG)
    yield used
    text = "\n".join(record.getMessage() for record in caplog.records)
    for token in used:
        assert token not in text


def test_a_patient_token_gives_its_facts(sandbox: Sandbox, config: AuthConfig, no_token_in_logs: list[str]) -> None:
    token = mint(sandbox.server, "patient/ImagingStudy.rs launch/patient")
    no_token_in_logs.append(token)
    (facts,) = verify(config, token)
    assert facts.active and facts.client_id == "viewer" and facts.patient == "maya-alvarez"
    assert facts.iss == f"{sandbox.url}/fhir" and IMAGING_FHIR_BASE in facts.aud and facts.exp > time.time()
    assert [str(s) for s in facts.scopes] == ["patient/ImagingStudy.rs"]
    assert covers(facts, "read") and not covers(facts, "write") and not covers(facts, "delete")
    assert facts.authorization_details is not None
    (entry,) = facts.authorization_details
    assert entry.patient == "maya-alvarez" and entry.unlisted_studies in ("permit", "deny")
    assert entry.permitted_studies and all(s.study_instance_uid for s in entry.permitted_studies)
    assert token not in repr(facts)


def test_an_associated_audience_is_accepted(sandbox: Sandbox, tmp_path: Path, no_token_in_logs: list[str]) -> None:
    token = mint(sandbox.server, "patient/ImagingStudy.rs")
    no_token_in_logs.append(token)
    config = settings(f"{sandbox.url}/fhir", sandbox.secrets["imaging"], tmp_path, audience="http://other.test/fhir",
                      associated_audiences=[f"{sandbox.url}/fhir/"])  # fmt: skip
    assert verify(config, token)[0].patient == "maya-alvarez"


def test_a_revoked_token_is_refused_once_the_cache_time_is_over(
    sandbox: Sandbox, config: AuthConfig, no_token_in_logs: list[str]
) -> None:
    token = mint(sandbox.server, "patient/ImagingStudy.rs")
    no_token_in_logs.append(token)

    async def run() -> ApertureError:
        introspector = Introspector(config)
        try:
            await introspector.verify(token)
            revoked = httpx.post(f"{sandbox.url}/auth/revoke", data={"token": token, "client_id": "viewer"})
            assert revoked.status_code == 200
            await asyncio.sleep(config.cache_seconds + 0.1)
            with pytest.raises(InvalidToken) as caught:
                await introspector.verify(token)
            return caught.value
        finally:
            await introspector.aclose()

    error = asyncio.run(run())
    assert error.status == 401 and error.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert token not in repr(error)


@pytest.mark.parametrize("kind", ["unknown", "wrong audience", "foreign issuer"])
def test_tokens_not_for_this_server_are_401(
    sandbox: Sandbox, config: AuthConfig, tmp_path: Path, kind: str, no_token_in_logs: list[str]
) -> None:
    token = "made-up-token-0123456789" if kind == "unknown" else mint(sandbox.server, "patient/ImagingStudy.rs")
    no_token_in_logs.append(token)
    if kind == "wrong audience":
        config = settings(config.ehr_issuer, sandbox.secrets["imaging"], tmp_path, audience="http://other.test/fhir")
    if kind == "foreign issuer":  # the sandbox answers with its own iss, which is not the EHR we trust
        config = settings("https://ehr.elsewhere.test/fhir", sandbox.secrets["imaging"], tmp_path,
                          introspection_endpoint=f"{sandbox.url}/auth/introspect")  # fmt: skip
    error = refused(config, token)
    assert isinstance(error, InvalidToken) and error.status == 401
    assert error.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.fixture(scope="module")
def other_ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApertureServer, str]]:
    """A second, unrelated sandbox whose tokens lived three seconds: (server, its imaging secret)."""
    data = tmp_path_factory.mktemp("ehr-other") / "data"
    imaging = register(data, "--kind", "confidential", "--name", "Imaging", "--client-id", "imaging", "--introspect")
    register(data, "--kind", "public", "--name", "Viewer", "--client-id", "viewer",
             "--scope", "patient/ImagingStudy.rs", "--redirect-uri", "https://viewer.test/cb")  # fmt: skip
    server = start_sandbox(data, config="[ehr]\naccess_token_lifetime = 2\n")
    yield server, imaging["client_secret"]
    server.stop()


def test_a_token_from_another_ehr_is_401(
    other_ehr: tuple[ApertureServer, str], config: AuthConfig, no_token_in_logs: list[str]
) -> None:
    token = mint(other_ehr[0], "patient/ImagingStudy.rs", patient="p1")
    no_token_in_logs.append(token)
    assert isinstance(refused(config, token), InvalidToken)


def test_an_expired_token_is_401(
    other_ehr: tuple[ApertureServer, str], tmp_path: Path, no_token_in_logs: list[str]
) -> None:
    server, secret = other_ehr
    config = settings(f"{server.url}/fhir", secret, tmp_path)
    token = mint(server, "patient/ImagingStudy.rs", patient="p1")
    no_token_in_logs.append(token)
    time.sleep(2.2)  # the token's lifetime at that sandbox
    assert isinstance(refused(config, token), InvalidToken)


@pytest.mark.parametrize("scope", ["openid fhirUser", "patient/Patient.read"])
def test_tokens_without_imaging_scopes_are_403(
    sandbox: Sandbox, config: AuthConfig, scope: str, no_token_in_logs: list[str]
) -> None:
    token = mint(sandbox.server, scope)
    no_token_in_logs.append(token)
    (facts,) = verify(config, token)
    for action in ("read", "write", "delete"):
        assert not covers(facts, action)
        with pytest.raises(InsufficientScope) as caught:
            require(facts, action)
        assert caught.value.status == 403
        assert caught.value.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'


def test_scopes_cover_actions_in_v1_v2_and_wildcards() -> None:
    def facts(scope: str) -> TokenFacts:
        return TokenFacts(client_id="c", scope=scope, scopes=parse_scopes(scope), exp=0, iss=None, aud=())

    assert covers(facts("patient/ImagingStudy.read"), "read")
    assert covers(facts("user/*.read"), "read") and covers(facts("system/*.*"), "delete")
    assert covers(facts("patient/ImagingStudy.write"), "write") and not covers(facts("patient/*.read"), "write")
    assert covers(facts("patient/ImagingStudy.c"), "write") and covers(facts("patient/ImagingStudy.u"), "write")
    assert covers(facts("system/ImagingStudy.cruds"), "delete")
    assert not covers(facts("system/ImagingStudy.cu"), "delete")
    assert covers(facts("patient/ImagingStudy.r patient/ImagingStudy.s"), "read")
    # not read: search only, retrieval only, letters from two contexts, wrong order, another resource, a query
    for scope in ("patient/ImagingStudy.s", "patient/ImagingStudy.r", "patient/ImagingStudy.r user/ImagingStudy.s",
                  "patient/ImagingStudy.sr", "patient/Observation.rs", "patient/ImagingStudy.rs?modality=CT",
                  "ImagingStudy.rs", "launch/patient"):  # fmt: skip
        assert not covers(facts(scope), "read"), scope


def test_twenty_concurrent_requests_with_one_new_token_introspect_once(
    sandbox: Sandbox, config: AuthConfig, no_token_in_logs: list[str]
) -> None:
    token = mint(sandbox.server, "patient/ImagingStudy.rs")
    no_token_in_logs.append(token)
    sent: list[str] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request.url.path)

    async def run() -> list[TokenFacts]:
        client = httpx.AsyncClient(timeout=5, event_hooks={"request": [count]})
        introspector = Introspector(config, client=client)
        try:
            return await asyncio.gather(*(introspector.verify(token) for _ in range(20)))
        finally:
            await introspector.aclose()

    start = sandbox.server.log.stat().st_size
    answers = asyncio.run(run())
    assert len(answers) == 20 and all(a.patient == "maya-alvarez" for a in answers)
    assert sent == ["/fhir/.well-known/smart-configuration", "/auth/introspect"]
    # The sandbox's own access log agrees: one introspection. A marker request, logged after them, bounds the wait.
    marker = f"/single-flight-marker-{uuid.uuid4().hex}"
    httpx.get(f"{sandbox.url}{marker}")
    for _ in range(200):
        lines = sandbox.server.log.read_bytes()[start:].decode().splitlines()
        if any(marker in line for line in lines):
            break
        time.sleep(0.05)
    assert sum("POST /auth/introspect " in line for line in lines) == 1


def _serve(handler: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handler(self)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            handler(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _answer(status: int, body: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    def respond(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return respond


BROKEN = {
    "500": (500, b'{"error": "server_error"}'),
    "garbage": (200, b"<html>not json</html>"),
    "json but not RFC 7662": (200, b'["active", true]'),
    "active but malformed": (
        200,
        b'{"active": true, "exp": 9999999999, "aud": "http://imaging.test/fhir", "scope": 7, "client_id": "x"}',
    ),  # fmt: skip
}


@pytest.mark.parametrize("kind", ["closed port", "discovery answers 500", *BROKEN])
def test_an_ehr_that_cannot_answer_is_503_with_retry_after(
    sandbox: Sandbox, tmp_path: Path, kind: str, no_token_in_logs: list[str]
) -> None:
    token = mint(sandbox.server, "patient/ImagingStudy.rs")
    no_token_in_logs.append(token)
    if kind == "closed port":
        config = settings(f"http://127.0.0.1:{free_port()}/fhir", "s", tmp_path, retry_after_seconds=9)
        error = refused(config, token)
    else:
        status, body = BROKEN.get(kind, (500, b"oops"))
        server = _serve(_answer(status, body))
        url = next(server)
        endpoint = {} if kind.startswith("discovery") else {"introspection_endpoint": f"{url}/introspect"}
        try:
            error = refused(settings(f"{url}/fhir", "s", tmp_path, retry_after_seconds=9, **endpoint), token)
        finally:
            next(server, None)
    assert isinstance(error, AuthorizationServerUnavailable) and error.status == 503
    assert error.headers["Retry-After"] == "9"


def test_an_ehr_that_does_not_answer_in_time_is_503(
    sandbox: Sandbox, tmp_path: Path, no_token_in_logs: list[str]
) -> None:
    token = mint(sandbox.server, "patient/ImagingStudy.rs")
    no_token_in_logs.append(token)
    release = threading.Event()

    def hang(request: BaseHTTPRequestHandler) -> None:
        release.wait(10)  # bounded: the test releases it as soon as the client gave up
        _answer(200, b'{"active": false}')(request)

    server = _serve(hang)
    url = next(server)
    config = settings(f"{url}/fhir", "s", tmp_path, introspection_endpoint=f"{url}/introspect", timeout_seconds=0.2)
    try:
        error = refused(config, token)
    finally:
        release.set()
        next(server, None)
    assert isinstance(error, AuthorizationServerUnavailable) and error.headers["Retry-After"] == "5"


def test_private_key_jwt_sends_a_signed_assertion_and_no_secret(tmp_path: Path, no_token_in_logs: list[str]) -> None:
    """The sandbox authenticates introspection with client_secret_basic only; a local EHR stand-in records the form."""
    key = ECKey.generate_key("P-384", parameters={"kid": "imaging-1"})
    key_file = tmp_path / "imaging.jwk"
    key_file.write_text(json.dumps(key.as_dict(private=True)))
    forms: list[dict[str, list[str]]] = []

    def record(request: BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs

        forms.append(parse_qs(request.rfile.read(int(request.headers["Content-Length"])).decode()))
        assert "Authorization" not in request.headers
        _answer(200, b'{"active": false}')(request)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            record(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{httpd.server_address[1]}/introspect"
    try:
        config = AuthConfig(ehr_issuer="http://ehr.test/fhir", introspection_endpoint=endpoint, client_id="imaging",
                            client_authentication="private_key_jwt", private_key_file=str(key_file),
                            audience=IMAGING_FHIR_BASE)  # fmt: skip
        no_token_in_logs.append("token-abc-123456")
        assert isinstance(refused(config, "token-abc-123456"), InvalidToken)
    finally:
        httpd.shutdown()
        httpd.server_close()
    (form,) = forms
    assert form["token"] == ["token-abc-123456"]
    assert form["client_assertion_type"] == ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    claims = jwt.decode(form["client_assertion"][0], key, algorithms=["ES384"]).claims
    assert claims["iss"] == claims["sub"] == "imaging" and claims["aud"] == endpoint and claims["exp"] > time.time()


def test_answers_are_remembered_by_token_hash_good_and_bad(
    sandbox: Sandbox, tmp_path: Path, no_token_in_logs: list[str]
) -> None:
    token = mint(sandbox.server, "patient/ImagingStudy.rs")
    no_token_in_logs.extend([token, "made-up-token-987654321"])
    config = settings(f"{sandbox.url}/fhir", sandbox.secrets["imaging"], tmp_path, cache_seconds=60,
                      negative_cache_seconds=60, introspection_endpoint=f"{sandbox.url}/auth/introspect")  # fmt: skip
    sent: list[str] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request.url.path)

    async def run() -> Introspector:
        introspector = Introspector(config, client=httpx.AsyncClient(timeout=5, event_hooks={"request": [count]}))
        try:
            for _ in range(3):
                await introspector.verify(token)
                with pytest.raises(InvalidToken):
                    await introspector.verify("made-up-token-987654321")
            return introspector
        finally:
            await introspector.aclose()

    introspector = asyncio.run(run())
    assert sent == ["/auth/introspect", "/auth/introspect"]
    assert token not in repr(introspector.cache.__dict__) and "made-up" not in repr(introspector.cache.__dict__)
    assert sandbox.secrets["imaging"] not in repr(introspector.credentials)


def test_the_caches_are_bounded_least_recently_used_first() -> None:
    cache: ExpiringLRU[int] = ExpiringLRU(2)
    cache.put("a", 1, 60)
    cache.put("b", 2, 60)
    assert cache.get("a") == 1
    cache.put("c", 3, 60)
    assert len(cache) == 2 and cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    cache.put("d", 4, 0)  # a lifetime already over (a token at its exp) is not stored
    assert cache.get("d") is None


def test_the_secret_can_come_from_an_environment_variable(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_token_in_logs: list[str]
) -> None:
    monkeypatch.setenv("APERTURE_TEST_IMAGING_SECRET", sandbox.secrets["imaging"])
    config = settings(f"{sandbox.url}/fhir", "unused", tmp_path, client_secret_file="",
                      client_secret_env="APERTURE_TEST_IMAGING_SECRET")  # fmt: skip
    token = mint(sandbox.server, "patient/ImagingStudy.rs")
    no_token_in_logs.append(token)
    assert verify(config, token)[0].client_id == "viewer"
