"""`aperture ehr clients` and `aperture ehr token`, and what never reaches the disk or the log in clear."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_command
from tests.ehr.conftest import ASSERTION_TYPE, Sandbox, ehr


def mint(sandbox: Sandbox, *args: str) -> dict[str, object]:
    result = ehr("token", "--data", str(sandbox.server.data), *args)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_minted_patient_token_introspects_with_its_launch_context(sandbox: Sandbox) -> None:
    response = mint(sandbox, "--client-id", "viewer", "--scope", "patient/ImagingStudy.rs launch/patient",
                    "--patient", "pat-123", "--user", "Patient/pat-123")  # fmt: skip
    assert response["token_type"] == "Bearer"
    assert response["scope"] == "patient/ImagingStudy.rs launch/patient"
    assert response["patient"] == "pat-123"
    info = sandbox.introspect(str(response["access_token"])).json()
    assert info["active"] is True
    assert info["client_id"] == "viewer"
    assert info["patient"] == "pat-123"
    assert info["sub"] == "Patient/pat-123"
    assert info["fhirUser"] == f"{sandbox.url}/fhir/Patient/pat-123"
    assert info["scope"] == "patient/ImagingStudy.rs launch/patient"


def test_a_minted_token_works_on_the_port_the_sandbox_serves(sandbox: Sandbox) -> None:
    """`aperture ehr token --data DIR` takes the served URLs from DIR (the sandbox here is not on 9090)."""
    response = mint(sandbox, "--client-id", "viewer", "--scope", "patient/Patient.read", "--patient", "walter-nguyen")
    headers = {"Authorization": f"Bearer {response['access_token']}"}
    read = httpx.get(f"{sandbox.url}/fhir/Patient/walter-nguyen", headers=headers, timeout=10)
    assert read.status_code == 200, read.text
    assert read.json()["id"] == "walter-nguyen"


def test_minted_backend_token_introspects(sandbox: Sandbox) -> None:
    response = mint(sandbox, "--client-id", "backend-es", "--scope", "system/Patient.read")
    info = sandbox.introspect(str(response["access_token"])).json()
    assert info["active"] is True and info["scope"] == "system/Patient.read" and info["sub"] == "backend-es"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client-id", "viewer", "--scope", "patient/Observation.rs", "--patient", "p"], "not registered for"),
        (["--client-id", "viewer", "--scope", "user/ImagingStudy.rs", "--user", "Practitioner/1"], "not registered"),
        (["--client-id", "viewer", "--scope", "patient/ImagingStudy.rs"], "need a patient"),
        (["--client-id", "viewer", "--scope", "patient/ImagingStudy.rs", "--patient", "p", "--user", "bob"], "--user"),
        (["--client-id", "backend-rs", "--scope", "system/Patient.cruds"], "not registered for system/Patient.cruds"),
        (["--client-id", "backend-rs", "--scope", "system/Patient.rs", "--patient", "p"], "no patient"),
        (["--client-id", "ghost", "--scope", "system/Patient.rs"], "No client 'ghost'"),
    ],
    ids=[
        "wider-scope",
        "other-context",
        "patient-scope-without-patient",
        "bad-user",
        "backend-wider",
        "backend-with-patient",
        "unknown-client",
    ],  # fmt: skip
)
def test_token_refusals_name_the_problem(sandbox: Sandbox, args: list[str], message: str) -> None:
    result = ehr("token", "--data", str(sandbox.server.data), *args, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr


def test_clients_list_shows_no_secret(sandbox: Sandbox) -> None:
    listing = json.loads(ehr("clients", "list", "--data", str(sandbox.server.data)).stdout)
    by_id = {client["client_id"]: client for client in listing}
    assert by_id["imaging"] == {"client_id": "imaging", "kind": "confidential", "name": "Imaging server",
                                "scope": "", "introspect": True}  # fmt: skip
    assert by_id["backend-uri"]["jwks_uri"].endswith("/backend-uri.json")
    assert by_id["backend-rs"]["jwks"] == ["rs-1"]
    text = json.dumps(listing)
    assert all(secret not in text for secret in sandbox.secrets.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "backend", "--name", "b", "--scope", "system/Patient.rs"], "public keys"),
        (
            ["--kind", "backend", "--name", "b", "--scope", "patient/Patient.rs", "--jwks-uri", "https://k.test/j"],
            "not allowed here",
        ),
        (["--kind", "public", "--name", "p", "--scope", "patient/Patient.rs"], "redirect URI"),
        (["--kind", "public", "--name", "p", "--redirect-uri", "http://example.com/cb"], "https"),
        (["--kind", "public", "--name", "p", "--redirect-uri", "https://a.test/cb", "--introspect"], "introspect"),
        (["--kind", "confidential", "--name", "x", "--client-id", "imaging"], "already registered"),
    ],
    ids=[
        "backend-without-keys",
        "backend-patient-scope",
        "public-without-redirect",
        "http-redirect",
        "public-introspect",
        "duplicate-id",
    ],  # fmt: skip
)
def test_bad_registrations_are_refused(sandbox: Sandbox, args: list[str], message: str) -> None:
    result = ehr("clients", "add", "--data", str(sandbox.server.data), *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_backend_jwks_with_a_private_key_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    jwks = tmp_path / "private.json"
    jwks.write_text(json.dumps({"keys": [sandbox.keys["backend-rs"].as_dict(private=True)]}))
    result = ehr("clients", "add", "--data", str(sandbox.server.data), "--kind", "backend", "--name", "leaky",
                 "--scope", "system/Patient.rs", "--jwks", str(jwks), check=False)  # fmt: skip
    assert result.returncode == 2
    assert "private parts" in result.stderr


def test_secrets_and_tokens_are_stored_only_as_hashes(sandbox: Sandbox) -> None:
    token = str(mint(sandbox, "--client-id", "backend-rs", "--scope", "system/ImagingStudy.rs")["access_token"])
    database = sandbox.server.data / "ehr.sqlite3"
    with sqlite3.connect(database) as conn:
        dump = "\n".join(conn.iterdump())
    assert token not in dump
    assert all(secret not in dump for secret in sandbox.secrets.values())
    assert "secret_hash" in dump  # the hashes are there, so the check above is not vacuous


def test_server_log_holds_no_secret_assertion_or_token(sandbox: Sandbox) -> None:
    assertion = sandbox.assertion("backend-rs")
    issued = sandbox.backend_token(assertion).json()["access_token"]
    assert sandbox.introspect(issued).json()["active"] is True
    httpx.post(
        f"{sandbox.url}/auth/revoke",
        data={
            "token": issued,
            "client_assertion": sandbox.assertion("backend-rs"),
            "client_assertion_type": ASSERTION_TYPE,
        },  # fmt: skip
    )
    # a refused request too (a token in the query string is refused): errors must not echo credentials into the log
    httpx.post(f"{sandbox.url}/auth/introspect?token={issued}", data={"token": issued}, auth=("imaging", "wrong"))
    deadline = time.monotonic() + 5  # the access line is written just after the answer is sent
    while "POST /auth/introspect?token=REDACTED 400" not in (log := sandbox.server.log.read_text()):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    assert "POST /auth/token 200" in log  # the log is live
    assert issued not in log
    assert assertion not in log and assertion.split(".")[2] not in log
    assert all(secret not in log for secret in sandbox.secrets.values())


def test_the_default_log_holds_no_patient_id_or_credential(tmp_path: Path) -> None:
    """`aperture ehr serve` as started by default: no access lines, none of the values sent in queries or forms."""
    data = tmp_path / "data"
    server = start_command(["ehr", "serve", "--data", str(data)], data, log_name="ehr.log")
    private = {
        "PatientID": "MRN-7731-private",
        "PatientName": "Doe^Janet-private",
        "patient": "pat-private-9",
        "access_token": "eyJhbGciOiJSUzM4NCJ9.access-private",
        "client_assertion": "eyJhbGciOiJSUzM4NCJ9.assertion-private",
        "code_verifier": "verifier-private-0123456789abcdef",
        "code": "code-private-42",
        "refresh_token": "refresh-private-77",
        "client_secret": "secret-private-5",
        "password": "password-private-3",
    }
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.get("/fhir/Patient", params=private)
            bearer = {"Authorization": f"Bearer {private['access_token']}"}
            http.get("/fhir/ImagingStudy", params=private, headers=bearer)
            http.get("/auth/authorize", params={**private, "response_type": "code", "client_id": "nobody"})
            http.post("/auth/authorize", params=private, data={"login": "elena", "password": private["password"]})
            http.post("/auth/token", params=private, data={**private, "grant_type": "authorization_code"})
            http.post("/auth/token", data={**private, "grant_type": "refresh_token"})
            http.post("/auth/introspect", params=private, data={"token": private["access_token"]}, auth=("x", "y"))
    finally:
        server.stop()  # everything it will write is written
    log = server.log.read_text(errors="replace")
    assert "Aperture EHR sandbox:" in log and "aperture.access" not in log, log
    for name, value in private.items():
        assert value not in log, f"{name} value in the default log:\n{log}"


def test_sandbox_sql_errors_do_not_quote_the_values_bound(tmp_path: Path) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from aperture.ehr.store import open_store

    engine = open_store(tmp_path / "ehr")
    try:
        with pytest.raises(SQLAlchemyError) as raised, engine.begin() as conn:
            conn.execute(text("INSERT INTO no_such_table (v) VALUES (:v)"), {"v": "password-private-3"})
    finally:
        engine.dispose()
    assert "password-private-3" not in str(raised.value)
