"""The EHR sandbox as a real server: `aperture ehr serve` in a subprocess on 127.0.0.1, clients registered by the CLI.

Backend clients hold real keys made with joserfc; `Sandbox.assertion()` signs a SMART Backend
Services client assertion with them, and tests change one claim or header at a time to see each
refusal. A JWK Set for the `jwks_uri` client is served by a plain HTTP server in a thread, whose
origin the sandbox is configured to allow (`jwks_allowed_origins`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.conftest import ApertureServer, start_command

IMAGING_FHIR_BASE = "http://imaging.test/fhir"
APP = "http://127.0.0.1:65500/app"  # browser-launch apps' pages; tests intercept them, nothing listens there
REDIRECT_URI = f"{APP}/callback"
LAUNCH_URL = f"{APP}/launch"
APP_SCOPE = (
    "launch launch/patient openid fhirUser offline_access online_access "
    "patient/Patient.rs patient/ImagingStudy.rs patient/DiagnosticReport.rs user/Patient.rs"
)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BACKEND_SCOPE = "system/ImagingStudy.rs system/Patient.read"


def ehr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `aperture ehr ...` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "aperture", "ehr", *args], capture_output=True, text=True, check=check, timeout=60
    )


def register(data: Path, *args: str) -> dict[str, Any]:
    return json.loads(ehr("clients", "add", "--data", str(data), *args).stdout)


def start_sandbox(data: Path, *, config: str | None = None) -> ApertureServer:
    """Start `aperture ehr serve --access-log` on a free port and wait until /healthz answers.

    The access log is on, so tests can see each request's line (and that it carries no secret).
    """
    arguments = ["ehr", "serve", "--data", str(data), "--imaging-fhir-base", IMAGING_FHIR_BASE, "--access-log"]
    return start_command(arguments, data, config=config, log_name="ehr.log", config_name="ehr.toml")


def client_assertion(
    key: RSAKey | ECKey, client_id: str, token_endpoint: str, *, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    """A SMART Backend Services client assertion (RFC 7523), RS384 or ES384 by key; claims replace (None drops)."""
    alg = "RS384" if isinstance(key, RSAKey) else "ES384"
    body = {"iss": client_id, "sub": client_id, "aud": token_endpoint,
            "exp": int(time.time()) + 240, "jti": uuid.uuid4().hex}  # fmt: skip
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": key.kid, **(header or {})}, body, key, algorithms=[alg])


@dataclass
class Sandbox:
    server: ApertureServer
    keys: dict[str, RSAKey | ECKey]  # client id -> its private key
    secrets: dict[str, str] = field(default_factory=dict)  # confidential client id -> its secret

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/auth/token"

    def assertion(self, client_id: str, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
        """A client assertion signed with the client's key; keyword arguments replace claims (None drops one)."""
        return client_assertion(self.keys[client_id], client_id, self.token_endpoint, header=header, **claims)

    def backend_token(self, assertion: str, scope: str = "system/ImagingStudy.rs") -> httpx.Response:
        return httpx.post(
            self.token_endpoint,
            data={
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },  # fmt: skip
        )

    def introspect(self, token: str, client_id: str = "imaging") -> httpx.Response:
        return httpx.post(
            f"{self.url}/auth/introspect", data={"token": token}, auth=(client_id, self.secrets[client_id])
        )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def jwks_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, folder): files in the folder are served over HTTP, for `jwks_uri` clients."""
    folder = tmp_path_factory.mktemp("jwks")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    httpd.shutdown()
    httpd.server_close()


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def jwks_file(folder: Path, kid: str) -> Path:
    """A JWK Set file with one new public key, to register a backend client whose tokens tests mint directly."""
    path = folder / f"{kid}.json"
    path.write_text(json.dumps(public_jwks(ECKey.generate_key("P-384", parameters={"kid": kid}))))
    return path


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory, jwks_host: tuple[str, Path]) -> Iterator[Sandbox]:
    """One sandbox with a backend client per key kind, a jwks_uri client, and two confidential clients."""
    root = tmp_path_factory.mktemp("ehr")
    data = root / "data"
    keys: dict[str, RSAKey | ECKey] = {
        "backend-rs": RSAKey.generate_key(2048, parameters={"kid": "rs-1"}),
        "backend-es": ECKey.generate_key("P-384", parameters={"kid": "es-1"}),
        "backend-uri": RSAKey.generate_key(2048, parameters={"kid": "uri-1"}),
    }
    for client_id in ("backend-rs", "backend-es"):
        jwks_file = root / f"{client_id}.json"
        jwks_file.write_text(json.dumps(public_jwks(keys[client_id])))
        register(data, "--kind", "backend", "--name", client_id, "--client-id", client_id,
                 "--scope", BACKEND_SCOPE, "--jwks", str(jwks_file))  # fmt: skip
    base, folder = jwks_host
    (folder / "backend-uri.json").write_text(json.dumps(public_jwks(keys["backend-uri"])))
    register(data, "--kind", "backend", "--name", "backend-uri", "--client-id", "backend-uri",
             "--scope", BACKEND_SCOPE, "--jwks-uri", f"{base}/backend-uri.json")  # fmt: skip
    imaging = register(data, "--kind", "confidential", "--name", "Imaging server", "--client-id", "imaging",
                       "--introspect")  # fmt: skip
    other = register(data, "--kind", "confidential", "--name", "Some app", "--client-id", "other-app",
                     "--scope", "patient/ImagingStudy.rs", "--redirect-uri", "https://app.test/cb")  # fmt: skip
    register(data, "--kind", "public", "--name", "Viewer", "--client-id", "viewer",
             "--scope", "patient/ImagingStudy.rs patient/Patient.read launch/patient openid fhirUser",
             "--redirect-uri", "http://127.0.0.1:3000/callback")  # fmt: skip
    register(data, "--kind", "public", "--name", "Growth Chart", "--client-id", "growth", "--scope", APP_SCOPE,
             "--redirect-uri", REDIRECT_URI, "--launch-url", LAUNCH_URL)  # fmt: skip
    portal = register(data, "--kind", "confidential", "--name", "Care Portal", "--client-id", "portal",
                      "--scope", APP_SCOPE, "--redirect-uri", REDIRECT_URI, "--launch-url", LAUNCH_URL)  # fmt: skip
    register(data, "--kind", "public", "--name", "Radiology Viewer", "--client-id", "trusted-viewer",
             "--scope", APP_SCOPE, "--redirect-uri", REDIRECT_URI, "--launch-url", LAUNCH_URL,
             "--pre-approved")  # fmt: skip
    # The JWKS server is plain http on loopback, which the sandbox fetches only from an allowed origin.
    server = start_sandbox(data, config=f'[ehr]\njwks_allowed_origins = ["{base}"]\n')
    secrets = {"imaging": imaging["client_secret"], "other-app": other["client_secret"],
               "portal": portal["client_secret"]}  # fmt: skip
    yield Sandbox(server, keys, secrets)
    server.stop()


@pytest.fixture(scope="session")
def developer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of its own with the developer page on (`/sandbox`) and an introspecting resource server (`imaging`)."""
    data = tmp_path_factory.mktemp("developer") / "data"
    imaging = register(data, "--kind", "confidential", "--name", "Imaging server", "--client-id", "imaging",
                       "--introspect")  # fmt: skip
    server = start_sandbox(data, config="[ehr]\ndeveloper_page = true\n")
    yield Sandbox(server, {}, {"imaging": imaging["client_secret"]})
    server.stop()
