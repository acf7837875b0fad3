"""`aperture download` against the demo stack: a patient signs in at the EHR, her files are the stored bytes.

The CLI runs as a subprocess, as a user runs it. With `--no-browser` it prints the EHR's authorize
URL; the test is the user: a cookie jar posting the sandbox's sign-in and consent forms
(tests/ehr/test_launch.py's `User`), then following the redirect to the CLI's loopback listener.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aperture.media.names import instance_path
from tests.e2e.conftest import register_backend
from tests.e2e.imaging import instances_of, studies_of
from tests.ehr.test_launch import User
from tests.media.checks import assert_pdi_valid
from tests.stack import DemoStack, start_demo, stop_demo

MAYA = "maya-alvarez"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    stack = start_demo(tmp_path_factory.mktemp("demo") / "data")
    yield stack
    stop_demo(stack.process)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "aperture", "download", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def sign_in_as(process: subprocess.Popen[str], login: str, password: str) -> str:
    """Read the URL the CLI prints, sign in and allow at the EHR, and deliver the redirect to the CLI's listener."""
    assert process.stdout is not None
    printed = ""
    while "Open this URL" not in printed or not re.search(r"^https?://\S+$", printed, re.M):
        line = process.stdout.readline()
        assert line, f"the CLI ended before printing a URL: {printed}"
        printed += line
    url = re.search(r"^(https?://\S+)$", printed, re.M).group(1)  # type: ignore[union-attr]
    answer = User(login, password).consent(url)
    assert answer.status_code in (302, 303), answer.text
    location = answer.headers["location"]
    assert re.match(r"^http://127\.0\.0\.1:\d+/callback\?", location), location
    landed = httpx.get(location)
    assert landed.status_code == 200 and "Signed in" in landed.text
    return url


def stored(uid: str) -> dict[Path, bytes]:
    return {Path(instance_path(i.study, i.series, i.sop)): i.data for i in instances_of(uid)}


def test_patient_signs_in_with_the_browser_flow_and_gets_her_studies_byte_identical(
    demo: DemoStack, tmp_path: Path
) -> None:
    out = tmp_path / "media"
    process = subprocess.Popen(
        command("--issuer", demo.ehr_fhir, "--no-browser", "--out", str(out)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip
    url = sign_in_as(process, "maya", "maya-demo")
    assert "code_challenge_method=S256" in url and "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in url
    stdout, stderr = process.communicate(timeout=120)
    expected: dict[Path, bytes] = {}
    for uid in studies_of(MAYA):
        expected |= stored(uid)
    assert len(expected) > 2
    found = {p.relative_to(out): p.read_bytes() for p in (out / "DICOM").rglob("*") if p.is_file()}
    assert found.keys() == expected.keys()
    assert all(found[p] == expected[p] for p in expected), "a downloaded file differs from the stored one"
    assert f"{len(studies_of(MAYA))} studies, {len(expected)} instances: {len(expected)} fetched" in stdout, stderr
    assert "Bearer" not in stdout + stderr
    assert "Media: DICOMDIR of" in stdout, stdout
    on_media = assert_pdi_valid(out)  # dciodvfy, dcmtk and pydicom accept the DICOMDIR; it lists every file
    assert {Path(p).relative_to(out) for p in on_media.values()} == expected.keys()


def test_backend_services_client_downloads_a_preauthorized_patient_and_resumes_after_sigkill(
    demo: DemoStack, tmp_path: Path
) -> None:
    client = register_backend(demo, "download-backend", "system/ImagingStudy.rs", "--patients", MAYA)
    key = tmp_path / "key.jwk"
    key.write_text(json.dumps(client.key.as_dict(private=True)))
    out = tmp_path / "media"
    args = command("--issuer", demo.ehr_fhir, "--client-id", client.client_id, "--key", str(key),
                   "--patient", MAYA, "--out", str(out), "--streams", "1", "--quiet", "--no-index")  # fmt: skip
    manifest = tmp_path / ".media.aperture-download" / "manifest.jsonl"
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (manifest.is_file() and manifest.read_text().count("\n") >= 3):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    done = [json.loads(line)["path"] for line in manifest.read_text().splitlines()]
    total = sum(len(instances_of(uid)) for uid in studies_of(MAYA))
    assert 3 <= len(done) < total, "the download was not interrupted mid-way"
    before = {p: (out / p).stat().st_ino for p in done}

    rerun = subprocess.run(args, capture_output=True, text=True, env=environment(), timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{total - len(done)} fetched" in rerun.stdout and f"{len(done)} already here" in rerun.stdout, rerun.stdout
    assert {p: (out / p).stat().st_ino for p in done} == before, "a finished instance was written again"
    for uid in studies_of(MAYA):
        for path, data in stored(uid).items():
            assert (out / path).read_bytes() == data

    media = [a for a in args if a != "--no-index"]
    zipped = subprocess.run([*media, "--zip"], capture_output=True, text=True, env=environment(), timeout=120)
    assert zipped.returncode == 0 and f"0 fetched (0.0 MB), {total} already here" in zipped.stdout, zipped.stderr
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(out.with_name("media.zip")) as archive:
        names = set(archive.namelist())
        dicom = {p.as_posix() for uid in studies_of(MAYA) for p in stored(uid)}
        assert {n for n in names if n.startswith("DICOM/")} == dicom  # and no download state
        assert {"DICOMDIR", "README.TXT", "INDEX.HTM"} <= names
        assert all(archive.read(p.as_posix()) == d for uid in studies_of(MAYA) for p, d in stored(uid).items())
        archive.extractall(unzipped)
    assert len(assert_pdi_valid(unzipped)) == total
