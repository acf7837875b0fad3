"""`aperture demo` starts the imaging server and the EHR sandbox, loads the samples through STOW-RS
(the seed patients' studies among them), and prints working URLs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from aperture.ehr.people import load_directory
from tests.conftest import free_port


def test_demo_loads_samples_and_prints_urls(tmp_path: Path) -> None:
    port, ehr_port = free_port(), free_port()
    command = [sys.executable, "-m", "aperture", "demo", "--port", str(port), "--ehr-port", str(ehr_port),
               "--data", str(tmp_path / "demo")]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 300
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Press Ctrl-C" in text, text
        stored = int(re.search(r"\((\d+) sample instances stored", text).group(1))  # type: ignore[union-attr]
        assert stored >= 90
        dicomweb = f"http://127.0.0.1:{port}/dicom-web"
        assert f"{dicomweb}/studies" in text
        assert re.search(r"/studies/[0-9.]+/metadata", text)
        assert f"http://127.0.0.1:{ehr_port}/fhir/.well-known/smart-configuration" in text
        assert "elena / elena-demo" in text

        directory = load_directory()
        with httpx.Client(timeout=30) as http:
            # every seed patient's study is in the imaging server, under the EHR's identifiers
            for patient in directory.patients.values():
                issuer = directory.issuers[patient.mrn_system]
                found = http.get(
                    f"{dicomweb}/studies", params={"PatientID": patient.mrn, "IssuerOfPatientID": issuer}
                ).json()
                by_uid = {d["0020000D"]["Value"][0]: d for d in found}
                for study in patient.studies:
                    assert study.uid in by_uid, f"{patient.id}: study {study.uid} not stored"
                    assert by_uid[study.uid]["00080050"]["Value"] == [study.accession]
            # the EHR sandbox answers, advertising this imaging server, and guards its FHIR data
            discovery = http.get(f"http://127.0.0.1:{ehr_port}/fhir/.well-known/smart-configuration").json()
            assert f"http://127.0.0.1:{port}/fhir" in str(discovery.get("associated_endpoints"))
            assert http.get(f"http://127.0.0.1:{ehr_port}/fhir/ImagingStudy").status_code == 401
        assert (tmp_path / "demo" / "index.sqlite3").exists()
        assert (tmp_path / "demo" / "ehr" / "ehr.sqlite3").exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
