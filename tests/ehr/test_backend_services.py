"""SMART Backend Services against the running sandbox: signed assertions in, system/ tokens out.

Each refusal changes one thing in an otherwise valid assertion, and checks the RFC 6749 §5.2
answer: `invalid_client` for anything wrong with the client's authentication (SMART Backend
Services says so), `invalid_scope` for scopes, with no token issued.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from aperture.ehr.assertions import JWKS_REFRESH_SECONDS, MAX_JWKS_BYTES
from tests.ehr.conftest import ASSERTION_TYPE, Sandbox, public_jwks, register, start_sandbox


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def assert_oauth_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert "access_token" not in body
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("client_id", ["backend-rs", "backend-es", "backend-uri"])
def test_signed_assertion_gets_a_system_token_that_introspects_active(sandbox: Sandbox, client_id: str) -> None:
    """RS384 (inline JWKS), ES384 (inline JWKS) and RS384 with the JWKS fetched from jwks_uri."""
    response = sandbox.backend_token(sandbox.assertion(client_id), scope="system/ImagingStudy.rs")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "system/ImagingStudy.rs"
    assert 0 < token["expires_in"] <= 3600
    assert "refresh_token" not in token
    info = sandbox.introspect(token["access_token"]).json()
    assert info["active"] is True
    assert info["client_id"] == client_id
    assert info["scope"] == "system/ImagingStudy.rs"


def test_replayed_jti_is_refused(sandbox: Sandbox) -> None:
    assertion = sandbox.assertion("backend-rs")
    assert sandbox.backend_token(assertion).status_code == 200
    assert_oauth_error(sandbox.backend_token(assertion), "invalid_client")


def test_jti_is_per_assertion_not_per_client(sandbox: Sandbox) -> None:
    assert sandbox.backend_token(sandbox.assertion("backend-rs", jti="shared-id")).status_code == 200
    assert sandbox.backend_token(sandbox.assertion("backend-es", jti="shared-id")).status_code == 200
    assert_oauth_error(sandbox.backend_token(sandbox.assertion("backend-es", jti="shared-id")), "invalid_client")


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp_in": -120}, id="expired"),
        pytest.param({"exp_in": 600}, id="exp-more-than-five-minutes-ahead"),
        pytest.param({"exp": None}, id="no-exp"),
        pytest.param({"jti": None}, id="no-jti"),
        pytest.param({"aud": "http://127.0.0.1:1/auth/token"}, id="aud-is-another-token-endpoint"),
        pytest.param({"aud": None}, id="no-aud"),
        pytest.param({"iss": "backend-es"}, id="iss-is-not-sub"),
        pytest.param({"sub": "nobody", "iss": "nobody"}, id="unknown-client"),
    ],
)
def test_bad_claims_are_invalid_client(sandbox: Sandbox, claims: dict[str, Any]) -> None:
    if "exp_in" in claims:
        claims = {"exp": int(time.time()) + claims.pop("exp_in"), **claims}
    assert_oauth_error(sandbox.backend_token(sandbox.assertion("backend-rs", **claims)), "invalid_client")


def test_aud_must_be_the_token_endpoint_not_the_fhir_base(sandbox: Sandbox) -> None:
    assertion = sandbox.assertion("backend-rs", aud=f"{sandbox.url}/fhir")
    assert_oauth_error(sandbox.backend_token(assertion), "invalid_client")


def test_unknown_kid_is_invalid_client(sandbox: Sandbox) -> None:
    assertion = sandbox.assertion("backend-rs", header={"kid": "not-registered"})
    assert_oauth_error(sandbox.backend_token(assertion), "invalid_client")


def test_unregistered_key_with_a_registered_kid_is_invalid_client(sandbox: Sandbox) -> None:
    stranger = RSAKey.generate_key(2048)
    claims = {"iss": "backend-rs", "sub": "backend-rs", "aud": sandbox.token_endpoint,
              "exp": int(time.time()) + 240, "jti": "stranger"}  # fmt: skip
    assertion = jwt.encode({"alg": "RS384", "kid": "rs-1"}, claims, stranger, algorithms=["RS384"])
    assert_oauth_error(sandbox.backend_token(assertion), "invalid_client")


def test_alg_none_is_invalid_client(sandbox: Sandbox) -> None:
    claims = {"iss": "backend-rs", "sub": "backend-rs", "aud": sandbox.token_endpoint,
              "exp": int(time.time()) + 240, "jti": "unsigned"}  # fmt: skip
    assertion = f"{_b64({'alg': 'none', 'kid': 'rs-1'})}.{_b64(claims)}."
    assert_oauth_error(sandbox.backend_token(assertion), "invalid_client")


def test_hs256_signed_with_the_public_key_is_invalid_client(sandbox: Sandbox) -> None:
    """The classic key-confusion attack: HMAC keyed with the client's (public) RSA modulus."""
    public = sandbox.keys["backend-rs"].as_dict(private=False)
    claims = {"iss": "backend-rs", "sub": "backend-rs", "aud": sandbox.token_endpoint,
              "exp": int(time.time()) + 240, "jti": "hmac"}  # fmt: skip
    hmac_key = OctKey.import_key(public["n"].encode())
    assertion = jwt.encode({"alg": "HS256", "kid": "rs-1"}, claims, hmac_key)
    assert_oauth_error(sandbox.backend_token(assertion), "invalid_client")


def test_rs256_is_not_accepted(sandbox: Sandbox) -> None:
    key = sandbox.keys["backend-rs"]
    claims = {"iss": "backend-rs", "sub": "backend-rs", "aud": sandbox.token_endpoint,
              "exp": int(time.time()) + 240, "jti": "rs256"}  # fmt: skip
    assertion = jwt.encode({"alg": "RS256", "kid": "rs-1"}, claims, key)
    assert_oauth_error(sandbox.backend_token(assertion), "invalid_client")


def test_jku_other_than_the_registered_jwks_uri_is_invalid_client(sandbox: Sandbox) -> None:
    assertion = sandbox.assertion("backend-uri", header={"jku": "http://127.0.0.1:1/evil.json"})
    assert_oauth_error(sandbox.backend_token(assertion), "invalid_client")


def test_no_assertion_is_invalid_client(sandbox: Sandbox) -> None:
    response = httpx.post(sandbox.token_endpoint, data={"grant_type": "client_credentials", "scope": "system/*.rs"})
    assert_oauth_error(response, "invalid_client")


def test_client_secret_does_not_buy_a_backend_token(sandbox: Sandbox) -> None:
    response = httpx.post(
        sandbox.token_endpoint,
        data={"grant_type": "client_credentials", "scope": "system/ImagingStudy.rs"},
        auth=("imaging", sandbox.secrets["imaging"]),
    )
    assert_oauth_error(response, "invalid_client", status=401)  # it used the Authorization header
    assert response.headers["www-authenticate"].startswith("Basic ")


def test_scope_is_narrowed_to_the_registration(sandbox: Sandbox) -> None:
    """Registered: system/ImagingStudy.rs system/Patient.read. A wildcard asks for more; it gets only those."""
    response = sandbox.backend_token(
        sandbox.assertion("backend-rs"), scope="system/*.read system/ImagingStudy.cruds system/Observation.rs"
    )
    assert response.status_code == 200, response.text
    granted = response.json()["scope"].split()
    assert sorted(granted) == ["system/ImagingStudy.rs", "system/Patient.rs"]
    info = sandbox.introspect(response.json()["access_token"]).json()
    assert sorted(info["scope"].split()) == sorted(granted)


def test_v1_scope_within_the_registration_is_granted_as_written(sandbox: Sandbox) -> None:
    response = sandbox.backend_token(sandbox.assertion("backend-rs"), scope="system/ImagingStudy.read")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/ImagingStudy.read"


@pytest.mark.parametrize(
    "scope",
    [
        "system/Observation.rs",
        "patient/ImagingStudy.rs",
        "openid launch/patient",
        "",
        "system/ImagingStudy.sr",
        'system/Bild\u00fcr.rs "x\\',
    ],
    ids=["unregistered", "patient-context", "launch-scopes", "empty", "malformed", "non-ascii-quoted"],
)
def test_nothing_grantable_is_invalid_scope(sandbox: Sandbox, scope: str) -> None:
    assert_oauth_error(sandbox.backend_token(sandbox.assertion("backend-rs"), scope=scope), "invalid_scope")


def test_token_endpoint_wants_a_urlencoded_post(sandbox: Sandbox) -> None:
    assert httpx.get(sandbox.token_endpoint).status_code == 405
    response = httpx.post(sandbox.token_endpoint, json={"grant_type": "client_credentials"})
    assert_oauth_error(response, "invalid_request")


def test_unsupported_grant_type(sandbox: Sandbox) -> None:
    response = httpx.post(sandbox.token_endpoint, data={"grant_type": "password", "username": "u", "password": "p"})
    assert_oauth_error(response, "unsupported_grant_type")


def test_jwks_uri_key_rotation_is_picked_up_after_the_refetch_interval(
    sandbox: Sandbox, jwks_host: tuple[str, Path]
) -> None:
    """A new kid at the jwks_uri is fetched again, but at most every few seconds (callers cannot force fetches)."""
    base, folder = jwks_host
    old, new = (
        RSAKey.generate_key(2048, parameters={"kid": "old"}),
        RSAKey.generate_key(2048, parameters={"kid": "new"}),
    )
    (folder / "rotating.json").write_text(json.dumps(public_jwks(old)))
    register(sandbox.server.data, "--kind", "backend", "--name", "rotating", "--client-id", "rotating",
             "--scope", "system/ImagingStudy.rs", "--jwks-uri", f"{base}/rotating.json")  # fmt: skip
    sandbox.keys["rotating"] = old
    assert sandbox.backend_token(sandbox.assertion("rotating")).status_code == 200
    (folder / "rotating.json").write_text(json.dumps(public_jwks(new)))
    sandbox.keys["rotating"] = new
    assert_oauth_error(sandbox.backend_token(sandbox.assertion("rotating")), "invalid_client")
    time.sleep(JWKS_REFRESH_SECONDS + 0.2)
    assert sandbox.backend_token(sandbox.assertion("rotating")).status_code == 200


def test_an_assertion_for_a_client_without_keys_is_invalid_client(sandbox: Sandbox) -> None:
    """sub naming a confidential or public client (no keys to check it with) was a 500."""
    for client_id in ("portal", "viewer"):
        sandbox.keys[client_id] = sandbox.keys["backend-rs"]
        assert_oauth_error(sandbox.backend_token(sandbox.assertion(client_id)), "invalid_client")


def test_an_assertion_with_a_nan_exp_is_invalid_client(sandbox: Sandbox) -> None:
    """NaN compares false with everything, so no exp check may rely on a comparison alone."""
    assert_oauth_error(sandbox.backend_token(sandbox.assertion("backend-rs", exp=float("nan"))), "invalid_client")


def test_an_assertion_nested_past_the_recursion_limit_is_invalid_client(sandbox: Sandbox) -> None:
    header = _b64({"alg": "RS384", "kid": "rs-1"})
    payload = base64.urlsafe_b64encode(b'{"sub": ' + b"[" * 15000 + b"]" * 15000 + b"}").rstrip(b"=").decode()
    assert_oauth_error(sandbox.backend_token(f"{header}.{payload}.c2ln"), "invalid_client")


def test_an_assertion_sent_in_the_query_string_is_refused_and_spent(sandbox: Sandbox) -> None:
    """Issue 12: the URL is logged, so an assertion sent there must not work afterwards in a body."""
    assertion = sandbox.assertion("backend-rs")
    in_query = httpx.post(
        sandbox.token_endpoint,
        params={"client_assertion": assertion, "client_assertion_type": ASSERTION_TYPE},
        data={"grant_type": "client_credentials", "scope": "system/ImagingStudy.rs"},
    )
    assert_oauth_error(in_query, "invalid_request")
    assert "form body" in in_query.json()["error_description"]
    replayed = sandbox.backend_token(assertion)
    assert_oauth_error(replayed, "invalid_client")
    assert sandbox.backend_token(sandbox.assertion("backend-rs")).status_code == 200  # a fresh one works


class _Counting(BaseHTTPRequestHandler):
    """Answers every GET with `body` and counts them: whether the sandbox fetched at all."""

    hits = 0
    body = b'{"keys": []}'

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def counting_host() -> Iterator[tuple[str, type[_Counting]]]:
    handler = type("Counter", (_Counting,), {"hits": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _backend_with_jwks_uri(sandbox: Sandbox, client_id: str, uri: str) -> str:
    register(sandbox.server.data, "--kind", "backend", "--name", client_id, "--client-id", client_id,
             "--scope", "system/ImagingStudy.rs", "--jwks-uri", uri)  # fmt: skip
    sandbox.keys[client_id] = RSAKey.generate_key(2048, parameters={"kid": f"{client_id}-1"})
    response = sandbox.backend_token(sandbox.assertion(client_id))
    assert_oauth_error(response, "invalid_client")
    return str(response.json()["error_description"])


def test_jwks_uri_failures_read_the_same_whatever_went_wrong(
    sandbox: Sandbox, counting_host: tuple[str, type[_Counting]]
) -> None:
    """No port-scan oracle: closed port, open port, not a JWK Set, a host not allowed: one message."""
    base, counter = counting_host
    messages = {
        _backend_with_jwks_uri(sandbox, "probe-closed", f"http://127.0.0.1:{_closed_port()}/jwks.json"),
        _backend_with_jwks_uri(sandbox, "probe-open", f"{sandbox.url}/healthz"),
        _backend_with_jwks_uri(sandbox, "probe-https-loopback", f"https://127.0.0.1:{sandbox.server.port}/x"),
        _backend_with_jwks_uri(sandbox, "probe-counted", f"{base}/jwks.json"),
    }
    assert len(messages) == 1, messages
    assert counter.hits == 0  # http to a host no admin allowed is never fetched


def test_jwks_uri_fetches_that_fail_read_the_same_whatever_went_wrong(
    tmp_path: Path, counting_host: tuple[str, type[_Counting]], jwks_host: tuple[str, Path]
) -> None:
    """With the origins allowed, so each is really fetched: a closed port, an empty JWK Set, a 404 read alike."""
    base, counter = counting_host
    jwks_base, _ = jwks_host
    closed = f"http://127.0.0.1:{_closed_port()}"
    config = f'[ehr]\njwks_allowed_origins = ["{base}", "{closed}", "{jwks_base}"]\n'
    sandbox = Sandbox(start_sandbox(tmp_path / "data", config=config), keys={})
    try:
        messages = {
            _backend_with_jwks_uri(sandbox, "fetch-closed", f"{closed}/jwks.json"),
            _backend_with_jwks_uri(sandbox, "fetch-empty-set", f"{base}/jwks.json"),
            _backend_with_jwks_uri(sandbox, "fetch-404", f"{jwks_base}/no-such-file.json"),
        }
    finally:
        sandbox.server.stop()
    assert len(messages) == 1, messages
    assert counter.hits >= 1  # the empty set was fetched, not refused unseen


def test_jwks_uri_answers_are_bounded_and_redirects_not_followed(sandbox: Sandbox, jwks_host: tuple[str, Path]) -> None:
    """On an allowed host (the test's JWKS server): a body over the size limit, or a redirect, is refused."""
    base, folder = jwks_host
    key = RSAKey.generate_key(2048, parameters={"kid": "big-1"})
    (folder / "big.json").write_text(json.dumps({**public_jwks(key), "padding": "x" * (MAX_JWKS_BYTES + 1)}))
    register(sandbox.server.data, "--kind", "backend", "--name", "big", "--client-id", "big",
             "--scope", "system/ImagingStudy.rs", "--jwks-uri", f"{base}/big.json")  # fmt: skip
    sandbox.keys["big"] = key
    assert_oauth_error(sandbox.backend_token(sandbox.assertion("big")), "invalid_client")
    (folder / "moved").mkdir()
    (folder / "moved" / "index.html").write_text(json.dumps(public_jwks(key)))
    register(sandbox.server.data, "--kind", "backend", "--name", "moved", "--client-id", "moved",
             "--scope", "system/ImagingStudy.rs", "--jwks-uri", f"{base}/moved")  # fmt: skip  # 301 to /moved/
    sandbox.keys["moved"] = key
    assert_oauth_error(sandbox.backend_token(sandbox.assertion("moved")), "invalid_client")


def test_jwks_uri_fetches_are_one_at_a_time_and_a_failed_refetch_keeps_the_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Concurrent assertions with a new kid start one fetch, not one each; a forged kid cannot evict good keys."""
    import threading
    import time as clock

    from joserfc.jwk import KeySet

    from aperture.ehr import assertions

    good = KeySet.import_key_set({"keys": [RSAKey.generate_key(2048, parameters={"kid": "k1"}).as_dict(private=False)]})
    calls: list[str] = []
    answers: list[KeySet | None] = [good]

    def fetch(uri: str, allowed: tuple[str, ...]) -> KeySet:
        calls.append(uri)
        clock.sleep(0.2)  # a slow key server: the other requests arrive while this fetch runs
        answer = answers[-1]
        if answer is None:
            raise assertions.JwksUnavailable("down")
        return answer

    monkeypatch.setattr(assertions, "fetch_jwks", fetch)
    remote = assertions.RemoteJWKS()
    got: list[KeySet] = []
    threads = [threading.Thread(target=lambda: got.append(remote.get("https://keys.test/jwks"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(calls) == 1 and len(got) == 8 and all(keys is good for keys in got)
    answers.append(None)  # the key server fails now
    remote._cache["https://keys.test/jwks"] = (0.0, good)  # as if the last fetch were long ago
    assert remote.get("https://keys.test/jwks", refresh=True) is good  # the keys it had stay in use
    assert remote.get("https://keys.test/jwks") is good and len(calls) == 2
