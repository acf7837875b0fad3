"""`aperture demo` starts the imaging server and the EHR sandbox, loads the samples through STOW-RS
(the seed patients' studies among them), and prints working URLs."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from aperture.ehr.people import load_directory
from tests.cli import descendants, wait_until_gone
from tests.conftest import ApertureServer, free_port
from tests.stack import start_demo, stop_demo


def test_demo_loads_samples_and_prints_urls(tmp_path: Path) -> None:
    port, ehr_port = free_port(), free_port()
    stack = start_demo(tmp_path / "demo", port=port, ehr_port=ehr_port)  # raises unless it says it is ready
    process, text = stack.process, stack.console
    output = text.splitlines(keepends=True)
    try:
        stored = int(re.search(r"\((\d+) sample instances stored", text).group(1))  # type: ignore[union-attr]
        assert stored >= 90
        dicomweb = f"http://127.0.0.1:{port}/dicom-web"
        assert f"{dicomweb}" in text and f"http://127.0.0.1:{port}/fhir" in text
        assert f"http://127.0.0.1:{ehr_port}/fhir/.well-known/smart-configuration" in text
        assert "elena / elena-demo" in text
        data = tmp_path / "demo"

        directory = load_directory()
        with httpx.Client(timeout=30) as http:
            # the imaging server runs with SMART authorization: nothing without a token
            assert http.get(f"{dicomweb}/studies").status_code == 401
            # every seed patient's study is in the imaging server, under the EHR's identifiers, and
            # the patient's own token finds it
            for patient in directory.patients.values():
                issuer = directory.issuers[patient.mrn_system]
                token = _token(data, patient.id)
                found = http.get(
                    f"{dicomweb}/studies",
                    params={"PatientID": patient.mrn, "IssuerOfPatientID": issuer},
                    headers={"Authorization": f"Bearer {token}"},
                ).json()
                by_uid = {d["0020000D"]["Value"][0]: d for d in found}
                for study in patient.studies:
                    assert study.uid in by_uid, f"{patient.id}: study {study.uid} not stored"
                    assert by_uid[study.uid]["00080050"]["Value"] == [study.accession]
            # the EHR sandbox answers, advertising this imaging server, and guards its FHIR data
            discovery = http.get(f"http://127.0.0.1:{ehr_port}/fhir/.well-known/smart-configuration").json()
            assert f"http://127.0.0.1:{port}/fhir" in str(discovery.get("associated_endpoints"))
            assert http.get(f"http://127.0.0.1:{ehr_port}/fhir/ImagingStudy").status_code == 401
            # the developer page is on, at the URL printed, and lists the demo's apps
            (developer,) = [line.split(":", 1)[1].split()[0] for line in output if "Developer page:" in line]
            assert developer == f"http://127.0.0.1:{ehr_port}/sandbox"
            assert json.loads((tmp_path / "demo" / "demo.json").read_text())["ehr"]["developer_page"] == developer
            console = http.get(developer)
            assert console.status_code == 200 and 'data-client-id="sample-viewer"' in console.text
        assert (tmp_path / "demo" / "index.sqlite3").exists()
        assert (tmp_path / "demo" / "ehr" / "ehr.sqlite3").exists()

        # demo.json tells a script everything it needs
        manifest = json.loads((tmp_path / "demo" / "demo.json").read_text())
        assert manifest["imaging"]["dicomweb"] == dicomweb
        assert (
            manifest["ehr"]["smart_configuration"]
            == f"http://127.0.0.1:{ehr_port}/fhir/.well-known/smart-configuration"
        )
        assert {p["id"]: (p["mrn"]["value"], sorted(p["studies"])) for p in manifest["patients"]} == {
            p.id: (p.mrn, sorted(s.uid for s in p.studies)) for p in directory.patients.values()
        }
        # every printed command runs as printed; given the demo's folder, the sandbox commands use its sandbox
        assert "..." not in text
        (printed_token,) = [line.split(":", 1)[1].strip() for line in output if "A token for" in line]
        minted = subprocess.run(shlex.split(printed_token), capture_output=True, text=True, timeout=60)
        assert minted.returncode == 0, minted.stderr
        (curl,) = [line.split(":", 1)[1].strip() for line in output if line.strip().startswith("Then:")]
        url = shlex.split(curl)[-1]
        bearer = {"Authorization": f"Bearer {json.loads(minted.stdout)['access_token']}"}
        bundle = httpx.get(url, headers=bearer, timeout=30).json()
        assert bundle["resourceType"] == "Bundle" and bundle["entry"], bundle
        # the sample SMART app is served where the printed launch URL (the one registered at the sandbox) points,
        # and its scripts may call this server and the EHR sandbox only
        (app_line,) = [line.split(":", 1)[1].split()[0] for line in output if "Sample imaging app:" in line]
        assert app_line == f"http://127.0.0.1:{port}/apps/sample/launch.html"
        page = httpx.get(app_line, timeout=30)
        assert page.status_code == 200 and 'src="app.js"' in page.text
        assert f"connect-src 'self' http://127.0.0.1:{ehr_port};" in page.headers["content-security-policy"]
        (register,) = [line.split(":", 1)[1].split(" (or")[0].strip() for line in output if "Register an app:" in line]
        done = subprocess.run(shlex.split(register), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        client_id = json.loads(done.stdout)["client_id"]
        listing = subprocess.run(
            [sys.executable, "-m", "aperture", "ehr", "clients", "list", "--data", str(tmp_path / "demo")],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert client_id in {c["client_id"] for c in json.loads(listing.stdout)}
        assert not (tmp_path / "demo" / "ehr.sqlite3").exists(), "an empty sandbox was created beside the demo's"
    finally:
        stop_demo(process)


def _token(data: Path, patient: str) -> str:
    """A token of the demo's sample app for `patient`, signed in as that patient (who sees all their studies)."""
    done = subprocess.run(
        [sys.executable, "-m", "aperture", "ehr", "token", "--data", str(data), "--client-id", "sample-viewer",
         "--scope", "launch/patient patient/ImagingStudy.rs", "--patient", patient, "--user", f"Patient/{patient}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return str(json.loads(done.stdout)["access_token"])


def _start_demo(data: Path) -> tuple[subprocess.Popen[str], str]:
    """Start `aperture demo` and read its console until it says it is ready."""
    stack = start_demo(data)
    return stack.process, stack.console


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def test_sigterm_ends_the_demo_and_both_servers_and_the_console_is_quiet(tmp_path: Path) -> None:
    """One demo run for two checks: what a person sees, and that SIGTERM leaves nothing running."""
    process, console = _start_demo(tmp_path / "demo")
    try:
        assert "Press Ctrl-C" in console, console
        logs = {name: (tmp_path / "demo" / name).read_text(errors="replace") for name in ("server.log", "ehr.log")}
        for name, text in {"console": console, **logs}.items():
            assert "alembic" not in text, f"{name}:\n{text}"
            assert not re.search(r"\w*Warning: ", text), f"{name}:\n{text}"
        tree = descendants(process.pid)
        assert len(tree) >= 4, tree  # two granian mains, their workers, the imaging worker's parsers
        process.send_signal(signal.SIGTERM)  # the demo alone, as `kill PID` would
        assert process.wait(timeout=60) == 0
        left = wait_until_gone(tree, 30)
        assert not left, f"still running 30 s after SIGTERM to the demo: {sorted(left)}"
    finally:
        _kill_group(process)


def test_demo_on_a_busy_port_is_a_start_up_error(fresh_server: ApertureServer, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "aperture", "demo", "--port", str(fresh_server.port),
               "--ehr-port", str(free_port()), "--data", str(tmp_path / "demo"), "--no-wait"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=240)
    finally:
        _kill_group(process)
    assert process.returncode == 1, output
    assert f"127.0.0.1:{fresh_server.port} is already in use" in output and "--port" in output, output
    assert "Aperture demo is running" not in output
    assert not (tmp_path / "demo" / "server.log").exists()  # nothing was started


def test_killing_the_demo_ends_both_servers(tmp_path: Path) -> None:
    process, console = _start_demo(tmp_path / "demo")
    try:
        assert "Press Ctrl-C" in console, console
        tree = descendants(process.pid)
        process.kill()  # SIGKILL: the demo cannot stop anything itself
        process.wait(timeout=10)
        left = wait_until_gone(tree, 30)
        assert not left, f"still running 30 s after the demo was killed: {sorted(left)}"
    finally:
        _kill_group(process)
