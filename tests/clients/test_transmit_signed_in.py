"""`aperture transmit --issuer`: sign in at the EHR, send exactly the studies the authorization reaches."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from tests.clients.test_download import MAYA, command, demo, environment  # noqa: F401  (the module's demo stack)
from tests.conftest import start_server
from tests.e2e.conftest import register_backend
from tests.e2e.imaging import instances_of, studies_of
from tests.stack import DemoStack


def test_a_backend_client_transmits_its_patients_studies_byte_for_byte_and_nothing_else(
    demo: DemoStack,  # noqa: F811
    tmp_path: Path,
) -> None:
    client = register_backend(demo, "transmit-backend", "system/ImagingStudy.rs", "--patients", MAYA)
    key = tmp_path / "key.jwk"
    key.write_text(json.dumps(client.key.as_dict(private=True)))
    receiver = start_server(tmp_path / "receiver")
    try:
        report = tmp_path / "report.json"
        args = ["--issuer", demo.ehr_fhir, "--client-id", client.client_id, "--key", str(key), "--patient", MAYA,
                "--to", f"dicomweb:{receiver.dicomweb}", "--report", str(report)]  # fmt: skip
        sent = subprocess.run(
            [*command()[:-1], "transmit", *args], capture_output=True, text=True, env=environment(), timeout=300
        )
        assert sent.returncode == 0, sent.stderr
        expected = [i for uid in studies_of(MAYA) for i in instances_of(uid)]
        assert f"{len(expected)} sent, 0 skipped, 0 refused, 0 failed" in sent.stdout, sent.stdout
        assert "Bearer" not in sent.stdout + sent.stderr
        with httpx.Client(base_url=receiver.dicomweb, timeout=60) as http:
            studies = {s["0020000D"]["Value"][0] for s in http.get("/studies").json()}
            assert studies == studies_of(MAYA)  # every study of hers, no one else's
            for i in expected:
                got = http.get(f"/studies/{i.study}/series/{i.series}/instances/{i.sop}",
                               headers={"Accept": "application/dicom; transfer-syntax=*"})  # fmt: skip
                assert got.status_code == 200 and got.content == i.data, i.sop
        outcomes = {entry["outcome"] for entry in json.loads(report.read_text())["instances"]}
        assert outcomes == {"sent"}
    finally:
        receiver.stop()


def test_transmit_wants_one_source() -> None:
    both = subprocess.run(
        [*command()[:-1], "transmit", "--source", "x", "--issuer", "http://127.0.0.1:9/fhir", "--to", "dimse:A@h:1"],
        capture_output=True, text=True, env=environment(), timeout=60,
    )  # fmt: skip
    assert both.returncode == 2 and "either --source" in both.stderr
