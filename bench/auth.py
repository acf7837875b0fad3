"""The `--auth smart` side of `make bench`: the EHR sandbox, a patient's token, and Aperture asking the EHR about it.

The authorized server is a second `aperture serve --auth smart` on the *same data folder* as the
`--auth none` one, started only once every upload is done and the HTJ2K copies are made (a server
cleans its data folder's `tmp/` at start, which would break an upload under way). Sharing the
folder, rather than copying it, means both servers read the same blob files from the same page
cache and the same index: the only difference between the two columns is the authorization.

The token is the one a SMART app launched for the seed patient walter-nguyen would hold:
`aperture ehr token --client-id bench-viewer --scope "launch/patient patient/ImagingStudy.rs"
--patient walter-nguyen --user Patient/walter-nguyen`. Its introspection carries one
`authorization_details` entry for that patient (MRN system and value) with
`unlisted_studies: permit`, so every study stored under the patient's MRN and issuer (the
benchmark's CT studies) is served to it. The imaging server introspects it at the sandbox
(RFC 7662, `client_secret_basic`) and keeps the answer `auth.cache_seconds` (the default, 5 s),
so a run re-introspects every 5 s as a real deployment does.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
from peers import REPO, PeerError, Server, _spawn, aperture_command, free_port, start_aperture, wait_ready

SEED = REPO / "aperture" / "ehr" / "seed.json"
PATIENT = "walter-nguyen"  # a seed patient with no restricted study: their own token reaches every study of theirs
APP = "bench-viewer"
APP_SCOPE = "launch/patient patient/ImagingStudy.rs"
IMAGING_CLIENT = "imaging-server"


@dataclass(frozen=True)
class Identity:
    """The seed patient's identity in the EHR and in DICOM."""

    ehr_id: str
    mrn: str  # DICOM PatientID
    mrn_system: str  # the FHIR identifier system of the MRN
    issuer: str  # DICOM IssuerOfPatientID that system maps to
    name: str  # DICOM PatientName, Family^Given


def seed_identity(patient: str = PATIENT) -> Identity:
    """The MRN, its system and the DICOM issuer of seed patient ``patient`` (aperture/ehr/seed.json)."""
    seed = json.loads(SEED.read_text())
    issuers = {s["system"]: s["issuer_of_patient_id"] for s in seed["identifier_systems"]}
    entry = next(p for p in seed["patients"] if p["id"] == patient)
    system = entry["mrn"]["system"]
    name = f"{entry['name']['family']}^{' '.join(entry['name']['given'])}"
    return Identity(patient, entry["mrn"]["value"], system, issuers[system], name)


@dataclass
class Authorized:
    """The EHR sandbox, the `--auth smart` Aperture and the bearer token its clients send."""

    ehr: Server
    server: Server
    token: str
    header_file: Path  # `Authorization: Bearer ...` for curl -H @file (keeps the token off the process list)
    introspection: dict[str, object]  # what the sandbox said about the token, as the imaging server is told

    @property
    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _ehr(data: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [*aperture_command(), "ehr", *args, "--data", str(data)],
        capture_output=True, text=True, check=False, timeout=60, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0:
        raise PeerError(f"aperture ehr {args[0]} failed: {done.stderr.strip()[:300]}")
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def start_ehr(workdir: Path, imaging_port: int) -> tuple[Server, str]:
    """`aperture ehr serve` for an imaging server at ``imaging_port``; (sandbox, imaging server's client secret)."""
    folder = workdir / "ehr"
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        *aperture_command(), "ehr", "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data),
        "--imaging-fhir-base", f"http://127.0.0.1:{imaging_port}/fhir",
    ]  # fmt: skip
    server = _spawn("EHR sandbox", argv, folder / "ehr.log", f"http://127.0.0.1:{port}", REPO)
    wait_ready(server, "/healthz", 60)
    server.version = "aperture ehr serve"
    try:
        imaging = _ehr(data, "clients", "add", "--kind", "confidential", "--client-id", IMAGING_CLIENT,
                       "--name", "Imaging server", "--introspect")  # fmt: skip
        _ehr(data, "clients", "add", "--kind", "public", "--client-id", APP, "--name", "Bench viewer",
             "--scope", APP_SCOPE, "--redirect-uri", "http://127.0.0.1:3000/callback")  # fmt: skip
    except PeerError:
        server.stop()
        raise
    return server, str(imaging["client_secret"])


def smart_config(ehr: Server, imaging_url: str, secret_file: Path, who: Identity) -> str:
    """The `--config` of the authorized server (docs/authorization.md): the sandbox, this server's audiences."""
    return f"""[server]
auth = "smart"
[auth]
ehr_issuer = "{ehr.url}/fhir"
client_id = "{IMAGING_CLIENT}"
client_secret_file = "{secret_file}"
audience = "{imaging_url}/fhir"
associated_audiences = ["{imaging_url}/dicom-web"]
[fhir]
ehr_base = "{ehr.url}/fhir"
patient_identifier_systems = {{ "{who.mrn_system}" = "{who.issuer}" }}
"""


def start_authorized(workdir: Path, data: Path, extra_args: list[str], who: Identity) -> Authorized:
    """The sandbox and an `--auth smart` Aperture on ``data`` (already loaded); a token for ``who``.

    Raises PeerError if either does not start, or if the server does not refuse a request without
    the token (it must be enforcing, or the rows would compare two open servers).
    """
    port = free_port()
    imaging_url = f"http://127.0.0.1:{port}"
    ehr, secret = start_ehr(workdir, port)
    try:
        folder = workdir / "aperture-smart"
        folder.mkdir(parents=True, exist_ok=True)
        secret_file = folder / "client-secret"
        secret_file.write_text(secret + "\n")
        secret_file.chmod(0o600)
        config = folder / "smart.toml"
        config.write_text(smart_config(ehr, imaging_url, secret_file, who))
        server = start_aperture(workdir, extra_args, name="Aperture-smart", data=data, port=port, auth_config=config)
    except PeerError:
        ehr.stop()
        raise
    try:
        minted = _ehr(ehr_data(workdir), "token", "--client-id", APP, "--scope", APP_SCOPE,
                      "--patient", who.ehr_id, "--user", f"Patient/{who.ehr_id}")  # fmt: skip
        token = str(minted["access_token"])
        header_file = folder / "authorization-header"
        fd = os.open(header_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"Authorization: Bearer {token}\n")
        introspection = _introspect(ehr, token, secret)
        unlisted = unlisted_policy(introspection, who)
        if unlisted != "permit":  # the benchmark's studies are not in the EHR's list: they must be permitted
            raise PeerError(f"the token's entry for {who.ehr_id} has unlisted_studies {unlisted!r}, not 'permit'")
        _check_enforcing(server)
    except (PeerError, OSError, KeyError, ValueError) as exc:
        server.stop()
        ehr.stop()
        raise PeerError(f"--auth smart set-up failed: {exc}") from exc
    return Authorized(ehr, server, token, header_file, introspection)


def ehr_data(workdir: Path) -> Path:
    return workdir / "ehr" / "data"


def _introspect(ehr: Server, token: str, secret: str) -> dict[str, object]:
    resp = httpx.post(f"{ehr.url}/auth/introspect", data={"token": token}, auth=(IMAGING_CLIENT, secret), timeout=10)
    answer: dict[str, object] = resp.json()
    if resp.status_code != 200 or answer.get("active") is not True:
        raise PeerError(f"the sandbox says the bench token is not active: HTTP {resp.status_code} {answer}")
    return answer


def _check_enforcing(server: Server) -> None:
    resp = httpx.get(f"{server.url}/dicom-web/studies", headers={"Accept": "application/dicom+json"}, timeout=10)
    if resp.status_code != 401:
        raise PeerError(f"the --auth smart server answered a request without a token with {resp.status_code}, not 401")


def unlisted_policy(introspection: dict[str, object], who: Identity) -> str:
    """The `unlisted_studies` of the token's entry for ``who`` (the benchmark's studies are unlisted at the EHR)."""
    details = introspection.get("authorization_details")
    for entry in details if isinstance(details, list) else []:
        if isinstance(entry, dict) and entry.get("patient") == who.ehr_id:
            return str(entry.get("unlisted_studies"))
    return "no entry"
