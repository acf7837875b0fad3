"""Extra real servers for the attack suite: a second EHR sandbox (another issuer) and imaging servers
configured against it, or against a broken introspection peer.

Each is `aperture ehr serve` or `aperture serve --auth smart` in a subprocess (tests/conftest.py);
nothing of the server under test is mocked.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pydicom

from aperture.dicom.synthetic import patient_study
from aperture.ehr.people import load_directory
from tests.conftest import ApertureServer, start_command, start_server
from tests.security.attacks import ORIGIN, Target, distinctive_run
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


def stow(http: httpx.Client, dicomweb: str, files: list[bytes], *, token: str | None = None,
         study: str | None = None) -> httpx.Response:  # fmt: skip
    """STOW-RS of Part-10 files in one multipart request (as a modality would)."""
    boundary = "attack-suite-boundary"
    body = (
        b"".join(
            b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
            for data in files
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
               "Accept": "application/dicom+json", "Origin": ORIGIN}  # fmt: skip
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{dicomweb}/studies" + (f"/{study}" if study else "")
    return http.post(url, content=body, headers=headers, timeout=120)


def load(data: Path, files: list[bytes]) -> None:
    """Store `files` into the data folder `data` through a short-lived `aperture serve --auth none` on loopback."""
    server = start_server(data)
    try:
        with httpx.Client(timeout=120) as http:
            answer = stow(http, server.dicomweb, files)
            assert answer.status_code == 200, answer.text[:500]
    finally:
        server.stop()


def seed_files(*patients: str) -> list[bytes]:
    """The demo's images of these seed patients' studies (the same UIDs and identities as in the demo)."""
    directory = load_directory()
    files: list[bytes] = []
    for patient_id in patients:
        patient = directory.patients[patient_id]
        for study in patient.studies:
            files += patient_study(
                study_uid=study.uid, accession=study.accession, modality=study.modality,
                description=study.description, study_date=study.date.replace("-", ""), patient_id=patient.mrn,
                issuer=directory.issuers[patient.mrn_system],
                patient_name=f"{patient.family}^{' '.join(patient.given)}", images=4,
            )  # fmt: skip
    return files


def target_of(files: list[bytes], patient: str) -> Target:
    """A Target read from the files themselves (for a study no EHR patient reaches, so no token can learn it)."""
    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in files]
    first = datasets[0]
    pixels = first.PixelData
    return Target(
        patient=patient,
        study=str(first.StudyInstanceUID),
        series=sorted({str(ds.SeriesInstanceUID) for ds in datasets}),
        instances=[(str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)) for ds in datasets],
        name_parts=[p for p in str(first.PatientName).replace("^", " ").split() if len(p) >= 3],
        mrn=str(first.PatientID),
        pixels=distinctive_run(pixels),
        bulkdata_path="7FE00010",
        extra=[str(first.AccessionNumber), str(first.get("IssuerOfPatientID", ""))],
    )
