"""Extra real servers for the attack suite: a second EHR sandbox (another issuer) and imaging servers
configured against it, or against a broken introspection peer.

Each is `aperture ehr serve` or `aperture serve --auth smart` in a subprocess (tests/conftest.py);
nothing of the server under test is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

from aperture.ehr.people import load_directory
from tests.conftest import ApertureServer, start_command
from tests.stack import DemoStack


def start_sandbox(
    folder: Path, *, imaging_fhir_base: str, token_lifetime: int = 3600
) -> tuple[ApertureServer, DemoStack]:
    """`aperture ehr serve` on `folder/ehr`; the DemoStack view of it mints tokens and registers clients there."""
    data = folder / "ehr"
    data.mkdir(parents=True)
    server = start_command(
        ["ehr", "serve", "--data", str(data), "--imaging-fhir-base", imaging_fhir_base],
        data, config=f"[ehr]\naccess_token_lifetime = {token_lifetime}\n", log_name="ehr.log", config_name="ehr.toml",
    )  # fmt: skip
    return server, DemoStack(folder, {}, "", None)  # type: ignore[arg-type]  # no demo process: only its helpers


def introspecting_client(ehr: DemoStack, folder: Path, client_id: str) -> Path:
    """Register an imaging server at `ehr` as a client that may introspect; its secret in a file."""
    _, secret = ehr.register(kind="confidential", name=f"attack suite {client_id}", scope="", client_id=client_id,
                             introspect=True)  # fmt: skip
    path = folder / f"{client_id}.secret"
    path.write_text(f"{secret}\n", encoding="utf-8")
    return path


def start_imaging(
    data: Path,
    *,
    ehr_issuer: str,
    client_id: str,
    secret_file: Path,
    audience: str,
    introspection_endpoint: str = "",
    cache_seconds: float = 5,
    associated: tuple[str, ...] = (),
) -> ApertureServer:
    """`aperture serve --auth smart` on `data`, deleting enabled, CORS for any origin, the seed's MRN systems mapped."""
    systems = load_directory().issuers
    lines = [
        "[server]", 'auth = "smart"', 'cors_origins = ["*"]',
        "[dicomweb]", "allow_delete = true",
        "[store]", "htj2k_copies = false",
        "[auth]", f"ehr_issuer = {json.dumps(ehr_issuer)}", f"client_id = {json.dumps(client_id)}",
        f"client_secret_file = {json.dumps(str(secret_file))}", f"audience = {json.dumps(audience)}",
        f"associated_audiences = {json.dumps(list(associated))}", f"cache_seconds = {cache_seconds}",
        "negative_cache_seconds = 0", "timeout_seconds = 2", "retry_after_seconds = 7",
        *([f"introspection_endpoint = {json.dumps(introspection_endpoint)}"] if introspection_endpoint else []),
        "[fhir]", f"ehr_base = {json.dumps(ehr_issuer)}",
        "[fhir.patient_identifier_systems]",
        *(f"{json.dumps(system)} = {json.dumps(issuer)}" for system, issuer in sorted(systems.items())),
    ]  # fmt: skip
    data.mkdir(parents=True, exist_ok=True)
    return start_command(["serve", "--data", str(data)], data, config="\n".join(lines) + "\n")
