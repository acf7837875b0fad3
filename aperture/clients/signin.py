"""Signing a command-line client in at a SMART EHR, and finding the imaging server it points at.

Two ways, both standard:

- **As a native app** (RFC 8252, SMART App Launch standalone): the user's own browser opens the
  EHR's authorize page; the client waits on a loopback redirect at `http://127.0.0.1:<port>/callback`
  on a port the OS picks (the EHR must accept any port there, RFC 8252 §7.3), with PKCE S256
  (RFC 7636) and a `state` only this process knows. No password ever passes through the client.
- **As a backend service** (SMART Backend Services): `client_credentials` with a `private_key_jwt`
  assertion (RFC 7523) signed with joserfc by the client's registered key, for system access.

The imaging FHIR base comes from the token response's `associated_endpoints`, else from the EHR's
`.well-known/smart-configuration` (SMART Imaging Access §Discovery: the entry with the
`smart-imaging-access` capability). Tokens are kept in memory only and never printed.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
import uuid
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

if TYPE_CHECKING:  # imported where used: joserfc costs ~0.1 s at start, and a browser sign-in needs none of it
    from joserfc.jwk import ECKey, RSAKey

from aperture.errors import ApertureError

SMART_IMAGING_ACCESS = "smart-imaging-access"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PATIENT_SCOPE = "launch/patient openid fhirUser offline_access patient/ImagingStudy.rs"
SYSTEM_SCOPE = "system/ImagingStudy.rs"
CALLBACK_PATH = "/callback"
SIGN_IN_SECONDS = 300.0  # how long the loopback listener waits for the browser to come back
_REFRESH_MARGIN = 30.0  # refresh a token this many seconds before it expires


class SignInFailed(ApertureError):
    """The EHR did not give us a token (or cannot be asked): the message says what it answered."""

    default_message = "Signing in at the EHR failed."


@dataclass(frozen=True)
class SmartConfiguration:
    """What the EHR's `.well-known/smart-configuration` says, as far as a client needs it."""

    issuer: str  # the EHR's FHIR base (the `iss` / `aud` of SMART)
    authorization_endpoint: str | None
    token_endpoint: str
    capabilities: tuple[str, ...]
    imaging_endpoints: tuple[str, ...]  # associated endpoints with smart-imaging-access


def discover(issuer: str, http: httpx.Client) -> SmartConfiguration:
    """Read `<issuer>/.well-known/smart-configuration` (SMART App Launch 2.2 §Discovery)."""
    issuer = issuer.rstrip("/")
    url = f"{issuer}/.well-known/smart-configuration"
    try:
        answer = http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise SignInFailed(f"Cannot reach the EHR at {url}: {exc}. Check --issuer.") from exc
    if answer.status_code != 200:
        raise SignInFailed(f"{url} answered HTTP {answer.status_code}: is --issuer the EHR's FHIR base URL?")
    try:
        document = answer.json()
        token_endpoint = str(document["token_endpoint"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SignInFailed(f"{url} is not a SMART configuration (no token_endpoint).") from exc
    capabilities = tuple(str(c) for c in document.get("capabilities", []))
    imaging = _imaging_endpoints(document.get("associated_endpoints"))
    if not imaging and SMART_IMAGING_ACCESS in capabilities:
        imaging = (issuer,)  # the EHR's own FHIR server serves ImagingStudy
    authorize = document.get("authorization_endpoint")
    return SmartConfiguration(issuer, str(authorize) if authorize else None, token_endpoint, capabilities, imaging)


def _imaging_endpoints(entries: Any) -> tuple[str, ...]:
    if not isinstance(entries, list):
        return ()
    return tuple(
        str(e["url"])
        for e in entries
        if isinstance(e, dict) and "url" in e and SMART_IMAGING_ACCESS in (e.get("capabilities") or [])
    )


@dataclass
class Session:
    """A signed-in client: its bearer token (refreshed when it runs out), the patient and the imaging FHIR bases."""

    config: SmartConfiguration
    client_id: str
    access_token: str = field(repr=False)
    scope: str
    expires_at: float | None
    refresh_token: str | None = field(default=None, repr=False)
    patient: str | None = None  # the launch context's patient (None for system access)
    imaging_endpoints: tuple[str, ...] = ()
    _renew: Callable[[httpx.Client], dict[str, Any]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def imaging_fhir(self) -> str:
        """The imaging FHIR base to search ImagingStudy at; refuses when the EHR names none."""
        if not self.imaging_endpoints:
            raise SignInFailed(
                f"The EHR at {self.config.issuer} names no imaging server ({SMART_IMAGING_ACCESS} in "
                "associated_endpoints); give its FHIR base with --imaging-fhir."
            )
        return self.imaging_endpoints[0]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    def expiring(self) -> bool:
        return self.expires_at is not None and time.time() > self.expires_at - _REFRESH_MARGIN

    def refresh(self, http: httpx.Client, *, seen: str | None = None) -> None:
        """Get a new access token: the refresh token, or (backend) a new assertion.

        `seen`: the token a request was refused with; if another thread has refreshed since, this does nothing.
        """
        with self._lock:
            if seen is not None and seen != self.access_token:
                return
            if self.refresh_token:
                grant = {
                    "grant_type": "refresh_token",
                    "refresh_token": self.refresh_token,
                    "client_id": self.client_id,
                }
                answer = _token_request(http, self.config.token_endpoint, grant)
            elif self._renew is not None:
                answer = self._renew(http)
            else:
                raise SignInFailed("The access token expired and the EHR gave no refresh token: sign in again.")
            self._update(answer)

    def _update(self, answer: dict[str, Any]) -> None:
        self.access_token = str(answer["access_token"])
        self.scope = str(answer.get("scope", self.scope))
        self.expires_at = _expiry(answer)
        self.refresh_token = str(answer["refresh_token"]) if answer.get("refresh_token") else self.refresh_token
        self.patient = str(answer["patient"]) if answer.get("patient") else self.patient


def _expiry(answer: dict[str, Any]) -> float | None:
    seconds = answer.get("expires_in")
    return time.time() + float(seconds) if isinstance(seconds, int | float) else None


def _session(
    config: SmartConfiguration,
    client_id: str,
    answer: dict[str, Any],
    renew: Callable[[httpx.Client], dict[str, Any]] | None = None,
) -> Session:
    imaging = _imaging_endpoints(answer.get("associated_endpoints")) or config.imaging_endpoints
    session = Session(
        config, client_id, str(answer["access_token"]), str(answer.get("scope", "")), _expiry(answer),
        imaging_endpoints=imaging, _renew=renew,
    )  # fmt: skip
    session._update(answer)
    return session


def _token_request(http: httpx.Client, token_endpoint: str, form: dict[str, str]) -> dict[str, Any]:
    """POST to the token endpoint; the EHR's `error` and `error_description` in the message when it refuses."""
    try:
        answer = http.post(token_endpoint, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise SignInFailed(f"Cannot reach the EHR's token endpoint {token_endpoint}: {exc}") from exc
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if answer.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        error = body.get("error", f"HTTP {answer.status_code}") if isinstance(body, dict) else answer.status_code
        detail = body.get("error_description", "") if isinstance(body, dict) else ""
        raise SignInFailed(f"The EHR refused the token request: {error}{': ' + detail if detail else ''}")
    return body


# --------------------------------------------------------------------------------------------------
# A native app's sign-in: the browser, a loopback redirect, PKCE


@dataclass
class _Callback:
    state: str
    query: dict[str, str] | None = None
    arrived: threading.Event = field(default_factory=threading.Event)


def _callback_handler(callback: _Callback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path != CALLBACK_PATH or not secrets.compare_digest(query.get("state", ""), callback.state):
                self._page(400, "This is not the sign-in this program started. Close this tab.")
                return
            if callback.query is None:
                callback.query = query
                callback.arrived.set()
            if "error" in query:
                self._page(200, f"Sign-in did not complete: {query.get('error_description') or query['error']}.")
            else:
                self._page(200, "Signed in. You can close this tab and return to the terminal.")

        def _page(self, status: int, text: str) -> None:
            body = f"<!doctype html><meta charset=utf-8><title>Aperture</title><p>{html.escape(text)}</p>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the query holds the code: never logged
            pass

    return Handler


def sign_in_browser(
    config: SmartConfiguration,
    http: httpx.Client,
    *,
    client_id: str,
    scope: str = PATIENT_SCOPE,
    open_browser: bool = True,
    announce: Callable[[str], None] = print,
    timeout: float = SIGN_IN_SECONDS,
) -> Session:
    """Standalone launch as a native app: open the EHR's authorize URL, wait for the loopback redirect, swap the code.

    `open_browser=False` (`--no-browser`) only announces the URL, for a machine without a browser
    of its own: open it anywhere that can reach the EHR, and this machine's 127.0.0.1 must receive
    the redirect (so on another machine, forward the port).
    """
    if config.authorization_endpoint is None:
        raise SignInFailed(f"The EHR at {config.issuer} offers no authorization_endpoint: use Backend Services.")
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    verifier = secrets.token_urlsafe(64)  # 86 characters: RFC 7636 wants 43 to 128
    callback = _Callback(state=secrets.token_urlsafe(24))
    server = HTTPServer(("127.0.0.1", 0), _callback_handler(callback))
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}{CALLBACK_PATH}"
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
        "state": callback.state, "aud": config.issuer,
        "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
    }  # fmt: skip
    url = f"{config.authorization_endpoint}?{urlencode(query)}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        if open_browser and webbrowser.open(url):
            announce(f"Opened the EHR's sign-in page in your browser. If nothing appeared, open:\n{url}")
        else:
            announce(f"Open this URL in a browser to sign in:\n{url}")
        if not callback.arrived.wait(timeout):
            raise SignInFailed(f"No sign-in came back within {timeout:.0f} s; run the command again.")
    finally:
        server.shutdown()
        server.server_close()
    answer = callback.query or {}
    if "error" in answer:
        raise SignInFailed(f"The EHR ended the sign-in: {answer.get('error_description') or answer['error']}")
    if not answer.get("code"):
        raise SignInFailed("The EHR's redirect carried no authorization code.")
    grant = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": redirect_uri,
             "code_verifier": verifier, "client_id": client_id}  # fmt: skip
    return _session(config, client_id, _token_request(http, config.token_endpoint, grant))


# --------------------------------------------------------------------------------------------------
# SMART Backend Services


def load_private_key(path: Path) -> RSAKey | ECKey:
    """A private RSA or EC key from a JWK, a JWK Set (its first private key) or a PEM file."""
    from joserfc.jwk import ECKey, KeySet, RSAKey

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SignInFailed(f"Cannot read the key file {path}: {exc.strerror}.") from exc
    try:
        if raw.lstrip().startswith(b"{"):
            document = json.loads(raw)
            members = document["keys"] if "keys" in document else [document]
            keys = [k for k in KeySet.import_key_set({"keys": members}).keys if k.is_private]
            key = keys[0] if keys else None
        else:
            key = _pem_key(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise SignInFailed(f"{path} holds no private key as a JWK, JWK Set or PEM: {exc}") from exc
    if not isinstance(key, RSAKey | ECKey) or not key.is_private:
        raise SignInFailed(f"{path} holds no private RSA or EC key (SMART Backend Services signs RS384 or ES384).")
    return key


def _pem_key(raw: bytes) -> RSAKey | ECKey:
    from joserfc.jwk import ECKey, RSAKey

    try:
        return RSAKey.import_key(raw)
    except ValueError:
        return ECKey.import_key(raw)


def client_assertion(key: RSAKey | ECKey, client_id: str, token_endpoint: str) -> str:
    """A private_key_jwt client assertion (RFC 7523 §2.2, SMART Backend Services): 5 minutes at most."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    alg = "RS384" if isinstance(key, RSAKey) else "ES384"
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if key.kid:
        header["kid"] = key.kid
    claims = {"iss": client_id, "sub": client_id, "aud": token_endpoint,
              "exp": int(time.time()) + 240, "jti": uuid.uuid4().hex}  # fmt: skip
    return jwt.encode(header, claims, key, algorithms=[alg])


def sign_in_backend(
    config: SmartConfiguration, http: httpx.Client, *, client_id: str, key: RSAKey | ECKey, scope: str = SYSTEM_SCOPE
) -> Session:
    """client_credentials with a signed assertion; a new assertion renews the token when it runs out."""

    def request(client: httpx.Client) -> dict[str, Any]:
        form = {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": client_assertion(key, client_id, config.token_endpoint)}  # fmt: skip
        return _token_request(client, config.token_endpoint, form)

    return _session(config, client_id, request(http), renew=request)
