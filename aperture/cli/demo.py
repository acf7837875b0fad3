"""`aperture demo`: the imaging server and the EHR sandbox with sample studies, printing the URLs to open.

Sample studies: the studies of the EHR sandbox's seed patients (`aperture/ehr/seed.json`, the one
data file both sides read, so the EHR's ImagingStudy index, its policy and the images agree:
same StudyInstanceUIDs, accession numbers, MRNs and issuer), a synthetic CT series, and every
storable file of pydicom's test data set (real files from many vendors, compressed and odd ones
included). They are stored through the same STOW-RS path a modality would use, once the server
answers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx

from aperture.cli.demo_receiver import RECEIVER_AET, RECEIVER_NAME, start_receiver
from aperture.clients import CLI_CLIENT_ID, CLI_REDIRECT_URI, SAMPLE_APP_CLIENT_ID, WEB_APP_CLIENT_ID
from aperture.lifecycle import ListenError, check_listen, die_with_parent

# A server gets this long to stop after SIGTERM (its workers get 5 s of it, then are killed).
STOP_SECONDS = 10
# Written into the data folder once the demo runs: its URLs, clients and patients, for scripts.
MANIFEST = "demo.json"
RECEIVED = "received"  # what the demo's transmit destination receives, in the data folder


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("demo", help="start the server with sample studies and print the URLs")
    parser.add_argument("--port", type=int, default=8080, help="imaging server port (default 8080)")
    parser.add_argument("--ehr-port", type=int, default=9090, help="EHR sandbox port (default 9090)")
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: a new temporary one)")
    parser.add_argument("--no-wait", action="store_true", help="load the samples and exit (for checks)")
    parser.add_argument(
        "--access-log", action="store_true", help="both servers log one line per request (query values redacted)"
    )
    parser.set_defaults(handler=run)


def _seed_studies() -> list[bytes]:
    """The images of the EHR seed patients' studies, under the UIDs and identifiers the EHR uses."""
    from aperture.dicom.synthetic import patient_study
    from aperture.ehr.people import load_directory

    directory = load_directory()
    files: list[bytes] = []
    for patient in directory.patients.values():
        for study in patient.studies:
            files += patient_study(
                study_uid=study.uid,
                accession=study.accession,
                modality=study.modality,
                description=study.description,
                study_date=study.date.replace("-", ""),
                patient_id=patient.mrn,
                issuer=directory.issuers[patient.mrn_system],
                patient_name=f"{patient.family}^{' '.join(patient.given)}",
                birth_date=patient.birth_date.replace("-", ""),
                sex={"female": "F", "male": "M"}.get(patient.gender, "O"),
                images=min(study.number_of_instances or 12, 40),
            )
    return files


def _sample_files() -> list[bytes]:
    import pydicom
    from pydicom.data import get_testdata_files

    from aperture.dicom.synthetic import ct_study

    files = _seed_studies()
    files += ct_study(n_slices=40, rows=256, cols=256, patient_id="DEMO-CT", patient_name="Demo^Ct")
    seen: set[str] = set()
    for name in sorted(get_testdata_files("*.dcm")):
        data = Path(name).read_bytes()
        try:
            uid = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True).get("SOPInstanceUID", ""))
        except Exception:
            uid = ""
        if uid and uid in seen:
            continue  # pydicom's data set has variants of one instance; the first one is the sample
        seen.add(uid)
        files.append(data)
    return files


def _stow(client: httpx.Client, base: str, files: list[bytes]) -> tuple[int, int]:
    stored = failed = 0
    for start in range(0, len(files), 25):
        boundary = "aperture-demo-boundary"
        body = (
            b"".join(
                b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
                for data in files[start : start + 25]
            )
            + b"--"
            + boundary.encode()
            + b"--\r\n"
        )
        response = client.post(
            f"{base}/studies",
            content=body,
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                     "Accept": "application/dicom+json"},
        )  # fmt: skip
        answer = response.json() if response.content else {}
        stored += len((answer.get("00081199") or {}).get("Value", []))
        failed += len((answer.get("00081198") or {}).get("Value", []))
    return stored, failed


def _wait_healthy(client: httpx.Client, url: str, process: subprocess.Popen[bytes]) -> bool:
    for _ in range(300):
        if process.poll() is not None:
            return False
        try:
            if client.get(url).status_code == 200:
                return True
        except httpx.TransportError:
            time.sleep(0.1)
    return False


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP end the demo as Ctrl-C does: its servers with it


def _child_setup() -> None:
    """In each server process, before it runs: it gets SIGTERM when the demo ends, however it ends."""
    die_with_parent(signal.SIGTERM)


IMAGING_CLIENT = "imaging-server"  # the imaging server's registration at the EHR (introspection)
PUBLISHER_CLIENT = "imaging-publisher"  # its Backend Services registration (publishing ImagingStudy)
PUBLISH_AFTER_SECONDS = 5  # a study stored while the demo runs reaches the EHR's index this long after
SAMPLE_APP = SAMPLE_APP_CLIENT_ID  # a public SMART app registered with a launch URL, so the launch page lists one
SAMPLE_APP_NAME = "Sample imaging viewer"  # its files: aperture/clients/sample_app/, served at /apps/sample/
WEB_APP = WEB_APP_CLIENT_ID  # the app people use: view, preview and download (aperture/clients/web_app/, at /app/)
WEB_APP_NAME = "Your images (view, preview, download)"


def _server_command(args: argparse.Namespace, data: Path, auth: list[str], access_log: list[str]) -> list[str]:
    return [sys.executable, "-m", "aperture", "serve", "--host", "127.0.0.1", "--port", str(args.port),
            "--data", str(data), *auth, *access_log]  # fmt: skip


def _register_imaging_server(data: Path, imaging: str) -> tuple[Path, Path]:
    """Register the imaging server with the EHR (once per data folder): as the introspecting client
    (its secret in a 0600 file) and as a Backend Services client that publishes ImagingStudy (its
    private key in a 0600 JWK file, the public half registered)."""
    from joserfc.jwk import ECKey

    from aperture.ehr.clients import DEFAULT_APP_SCOPE, get_client, register_client
    from aperture.ehr.store import open_store

    secret_file = data / "imaging-server.secret"
    key_file = data / "imaging-publisher.jwk"
    engine = open_store(data / "ehr")
    try:
        if get_client(engine, PUBLISHER_CLIENT) is None or not key_file.is_file():
            if get_client(engine, PUBLISHER_CLIENT) is not None:
                raise SystemExit(
                    f"aperture demo: {data} has an imaging-publisher registration but lost its key file; "
                    "start the demo with a new --data folder."
                )
            key = ECKey.generate_key("P-384", parameters={"kid": "imaging-publisher-1"}, private=True)
            key_file.touch(mode=0o600)
            key_file.write_text(json.dumps(key.as_dict(private=True)), encoding="utf-8")
            register_client(
                engine, kind="backend", name="Aperture imaging server (publishes ImagingStudy)",
                scope="system/ImagingStudy.cu", client_id=PUBLISHER_CLIENT,
                jwks={"keys": [key.as_dict(private=False)]},
            )  # fmt: skip
        if get_client(engine, IMAGING_CLIENT) is None or not secret_file.is_file():
            if get_client(engine, IMAGING_CLIENT) is not None:
                raise SystemExit(
                    f"aperture demo: {data} has an imaging-server registration but lost its secret file; "
                    "start the demo with a new --data folder."
                )
            _, secret = register_client(
                engine, kind="confidential", name="Aperture imaging server (demo)", scope="",
                client_id=IMAGING_CLIENT, introspect=True,
            )  # fmt: skip
            assert secret is not None
            secret_file.touch(mode=0o600)
            secret_file.write_text(secret + "\n", encoding="utf-8")
        if get_client(engine, WEB_APP) is None:
            register_client(
                engine, kind="public", name=WEB_APP_NAME, client_id=WEB_APP, scope=DEFAULT_APP_SCOPE,
                redirect_uris=(f"{imaging}/app/",), launch_url=f"{imaging}/app/launch.html",
            )  # fmt: skip
        if get_client(engine, SAMPLE_APP) is None:
            register_client(
                engine, kind="public", name=SAMPLE_APP_NAME, client_id=SAMPLE_APP,
                scope=DEFAULT_APP_SCOPE,
                redirect_uris=(f"{imaging}/apps/sample/",), launch_url=f"{imaging}/apps/sample/launch.html",
            )  # fmt: skip
        if get_client(engine, CLI_CLIENT_ID) is None:  # `aperture download`, signing in as a native app
            register_client(
                engine, kind="public", name="Aperture command line (download, transmit)", client_id=CLI_CLIENT_ID,
                scope=DEFAULT_APP_SCOPE, redirect_uris=(CLI_REDIRECT_URI,),
            )  # fmt: skip
    finally:
        engine.dispose()
    return secret_file, key_file


def _imaging_config(data: Path, imaging: str, ehr: str, secret_file: Path, key_file: Path, receiver: int) -> Path:
    """The imaging server's TOML config: SMART authorization at the sandbox, its MRN systems mapped to issuers,
    and the demo's receiver (on port `receiver`) as the one transmit destination."""
    from aperture.ehr.people import load_directory

    systems = load_directory().issuers  # MRN system -> DICOM IssuerOfPatientID, as the seed studies carry them
    lines = [
        "# Written by `aperture demo`: the imaging server asks the EHR sandbox about every token.",
        "[server]",
        'auth = "smart"',
        'cors_origins = ["*"]',
        "[auth]",
        f'ehr_issuer = "{ehr}/fhir"',
        f'client_id = "{IMAGING_CLIENT}"',
        f"client_secret_file = {json.dumps(str(secret_file))}",
        f'audience = "{imaging}/fhir"',
        f'associated_audiences = ["{imaging}/dicom-web"]',
        f'backend_client_id = "{PUBLISHER_CLIENT}"',
        f"backend_private_key_file = {json.dumps(str(key_file))}",
        "[fhir]",
        f'ehr_base = "{ehr}/fhir"',
        f"publish_after_seconds = {PUBLISH_AFTER_SECONDS}",
        "[fhir.patient_identifier_systems]",
        *(f"{json.dumps(system)} = {json.dumps(issuer)}" for system, issuer in sorted(systems.items())),
        "[[transmit.destinations]]",
        f"name = {json.dumps(RECEIVER_NAME)}",
        f'to = "dimse:{RECEIVER_AET}@127.0.0.1:{receiver}"',
    ]
    path = data / "imaging.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _start(command: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    with open(log_file, "ab") as log:  # the child process writes it until the end
        return subprocess.Popen(
            command, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, preexec_fn=_child_setup
        )


def run(args: argparse.Namespace) -> int:
    for port, flag in ((args.port, "--port"), (args.ehr_port, "--ehr-port")):
        try:
            check_listen("127.0.0.1", port, flag)
        except ListenError as exc:
            print(f"aperture demo: {exc}", file=sys.stderr)
            return 1
    data = args.data or Path(tempfile.mkdtemp(prefix="aperture-demo-"))
    imaging = f"http://127.0.0.1:{args.port}"
    ehr = f"http://127.0.0.1:{args.ehr_port}"
    base = f"{imaging}/dicom-web"
    data.mkdir(parents=True, exist_ok=True)
    access_log = ["--access-log"] if args.access_log else []
    logs = {"imaging server": data / "server.log", "EHR sandbox": data / "ehr.log"}
    ehr_command = [sys.executable, "-m", "aperture", "ehr", "serve", "--host", "127.0.0.1",
                   "--port", str(args.ehr_port), "--data", str(data / "ehr"),
                   "--imaging-fhir-base", f"{imaging}/fhir", "--cors-origin", "*", "--developer-page",
                   *access_log]  # fmt: skip
    processes: dict[str, subprocess.Popen[bytes]] = {}
    warnings.simplefilter("ignore")  # pydicom's warnings about odd sample files are not news here
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    receiver = start_receiver(data / RECEIVED)
    try:
        secret_file, key_file = _register_imaging_server(data, imaging)
        receiver_port = receiver.server_address[1]
        config = _imaging_config(data, imaging, ehr, secret_file, key_file, receiver_port)
        processes["EHR sandbox"] = _start(ehr_command, logs["EHR sandbox"])
        with httpx.Client(timeout=60) as client:
            # The samples go in first, through STOW-RS, while the server listens on loopback without
            # authorization (no token reaches pydicom's test patients); then it restarts with --auth smart.
            loader = _start(_server_command(args, data, ["--auth", "none"], []), logs["imaging server"])
            processes["sample loader"] = loader
            if not _wait_healthy(client, f"{imaging}/healthz", loader):
                print(
                    f"aperture demo: the imaging server did not start; see {logs['imaging server']}.", file=sys.stderr
                )
                return 1
            stored, failed = _stow(client, base, _sample_files())
            _stop({"sample loader": processes.pop("sample loader")})
            server = _server_command(args, data, ["--config", str(config)], access_log)
            processes["imaging server"] = _start(server, logs["imaging server"])
            for name, health in (("imaging server", f"{imaging}/healthz"), ("EHR sandbox", f"{ehr}/healthz")):
                if not _wait_healthy(client, health, processes[name]):
                    print(f"aperture demo: the {name} did not start; see {logs[name]}.", file=sys.stderr)
                    return 1
        _write_manifest(data, imaging, ehr)
        _print_urls(args, data, logs, stored, failed, receiver_port)
        if args.no_wait:
            print("(--no-wait: stopping the servers now.)", flush=True)
            return 0
        print("Press Ctrl-C to stop.", flush=True)
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the stopping short
        _stop(processes)
        receiver.shutdown()


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM each server; one that has not ended after STOP_SECONDS is killed (its workers die with it)."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _write_manifest(data: Path, imaging: str, ehr: str) -> None:
    """`DIR/demo.json`: what a script driving the demo needs, without parsing the console."""
    from aperture.ehr.clients import list_clients
    from aperture.ehr.people import load_directory
    from aperture.ehr.store import open_store

    engine = open_store(data / "ehr")
    try:
        clients = [{"client_id": c.client_id, "kind": c.kind} for c in list_clients(engine)]
    finally:
        engine.dispose()
    patients = [
        {
            "id": patient.id,
            "mrn": {"system": patient.mrn_system, "value": patient.mrn},
            "studies": [study.uid for study in patient.studies],
        }
        for patient in load_directory().patients.values()
    ]
    manifest = {
        "ehr": {
            "fhir": f"{ehr}/fhir",
            "smart_configuration": f"{ehr}/fhir/.well-known/smart-configuration",
            "developer_page": f"{ehr}/sandbox",
        },
        "imaging": {"fhir": f"{imaging}/fhir", "dicomweb": f"{imaging}/dicom-web"},
        "clients": clients,
        "patients": patients,
        "transmit": {"destination": RECEIVER_NAME, "received": str(data / RECEIVED)},
    }
    (data / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def aperture_command() -> str:
    """How to run `aperture` from a shell here: the bare name only if PATH finds this very install."""
    script = Path(sys.executable).with_name("aperture")
    found = shutil.which("aperture")
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return "aperture"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m aperture"


def _print_urls(args: argparse.Namespace, data: Path, logs: dict[str, Path], stored: int, failed: int,
                receiver: int) -> None:  # fmt: skip
    from aperture.ehr.people import load_directory

    imaging = f"http://127.0.0.1:{args.port}"
    ehr = f"http://127.0.0.1:{args.ehr_port}"
    base = f"{imaging}/dicom-web"
    print()
    print(f"Aperture demo is running ({stored} sample instances stored, {failed} refused as unstorable).")
    print(f"Open your images:                 {imaging}/app/ (sign in as a patient below; the EHR launch page "
          f"lists it as {WEB_APP_NAME})")  # fmt: skip
    print(f"  Send to… in the app:            {RECEIVER_NAME} (C-STORE to {RECEIVER_AET}@127.0.0.1:{receiver}; "
          f"what it receives goes to {data / RECEIVED})")  # fmt: skip
    print("Imaging server (SMART Imaging Access: every request needs a token from the EHR sandbox)")
    print(f"  DICOMweb base (QIDO/WADO/STOW): {base}")
    print(f"  Imaging FHIR (ImagingStudy):    {imaging}/fhir")
    print(f"  Health:                         {imaging}/healthz")
    print(f"  Its configuration:              {data / 'imaging.toml'}")
    print(f"  Publishing:                     a study reaches the EHR's ImagingStudy index {PUBLISH_AFTER_SECONDS} s "
          "after its last instance")  # fmt: skip
    print("EHR sandbox (SMART on FHIR; its seed patients' studies are stored above)")
    print(f"  SMART discovery:                {ehr}/fhir/.well-known/smart-configuration")
    print(f"  FHIR base:                      {ehr}/fhir")
    print(f"  EHR launch page:                {ehr}/ehr/launch")
    print(f"  Developer page:                 {ehr}/sandbox (register, remove and launch apps)")
    print(
        f"  Sample imaging app:             {imaging}/apps/sample/launch.html "
        f"(standalone launch; the EHR launch page lists it as {SAMPLE_APP_NAME})"
    )
    users = ", ".join(f"{user.login} / {user.password}" for user in load_directory().users.values())
    print(f"  Sign in as (login / password):  {users}")
    print(f"  Download a patient's images:    {aperture_command()} download --issuer {ehr}/fhir --out my-images "
          "(signs in in your browser)")  # fmt: skip
    register = [
        aperture_command(), "ehr", "clients", "add", "--data", shlex.quote(str(data)), "--kind", "public",
        "--name", "'My app'", "--redirect-uri", "http://127.0.0.1:8000/", "--launch-url",
        "http://127.0.0.1:8000/launch.html",
    ]  # fmt: skip
    print("  Register an app:                " + " ".join(register) + " (or on the developer page)")
    print("  Testing your own app:           docs/ehr-sandbox.md, 'Test your app'")
    patient = next(iter(load_directory().patients.values()))
    token = [
        aperture_command(), "ehr", "token", "--data", shlex.quote(str(data)), "--client-id", SAMPLE_APP,
        "--scope", "'launch/patient patient/ImagingStudy.rs'", "--patient", patient.id,
    ]  # fmt: skip
    print(f"  A token for {patient.id}:" + " " * max(1, 19 - len(patient.id)) + " ".join(token))
    print(
        f'  Then:                           curl -H "Authorization: Bearer $TOKEN" '
        f"'{imaging}/fhir/ImagingStudy?patient={patient.id}'"
    )
    print(f"Data folder:                      {data} (URLs, clients and patients for scripts: {data / MANIFEST})")
    print(f"Logs:                             {logs['imaging server']}, {logs['EHR sandbox']}")
