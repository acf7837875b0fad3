"""The PDI zip under `--auth smart` (the demo stack): a patient's token gets their studies as media, nothing else."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import httpx
import pydicom

from tests.media.checks import assert_pdi_valid
from tests.stack import DemoStack

VIEWER = "sample-viewer"


def _token(stack: DemoStack, patient: str) -> str:
    return stack.token(VIEWER, "launch/patient patient/ImagingStudy.rs", patient=patient, user=f"Patient/{patient}")


def test_a_patient_downloads_their_studies_as_media_and_only_theirs(demo_stack: DemoStack, tmp_path: Path) -> None:
    root = demo_stack.dicomweb.removesuffix("/dicom-web")
    maya, walter = demo_stack.patient("maya-alvarez"), demo_stack.patient("walter-nguyen")
    token = _token(demo_stack, "maya-alvarez")
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=300) as http:
        assert http.get(f"{root}/media/studies").status_code == 401
        answer = http.post(f"{root}/media/studies", data={"access_token": token})  # what the app's form sends
        assert answer.status_code == 200, answer.text
        assert "token" not in str(answer.url) and token not in answer.headers.get("location", "")
        zipfile.ZipFile(io.BytesIO(answer.content)).extractall(tmp_path)
        references = assert_pdi_valid(tmp_path)
        studies = {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in references.values()}
        assert set(maya["studies"]) <= studies and not studies & set(walter["studies"])
        # the stored bytes: each file as WADO-RS serves it untouched
        some_uid, some_path = next(iter(references.items()))
        ds = pydicom.dcmread(some_path, stop_before_pixels=True)
        wado = http.get(
            f"{demo_stack.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{some_uid}",
            headers={**bearer, "Accept": "application/dicom; transfer-syntax=*"},
        )
        assert hashlib.sha256(wado.content).digest() == hashlib.sha256(some_path.read_bytes()).digest()
        theirs = http.get(f"{root}/media/studies/{walter['studies'][0]}", headers=bearer)
        made_up = http.get(f"{root}/media/studies/2.25.1234567890", headers=bearer)
        assert theirs.status_code == made_up.status_code == 404
        one = http.get(f"{root}/media/studies/{maya['studies'][0]}", headers=bearer)
        assert one.status_code == 200 and one.headers["cache-control"] == "private, no-store"
        # HEAD: GET's authorization and 404s, GET's headers, no body
        assert http.head(f"{root}/media/studies/{maya['studies'][0]}").status_code == 401
        assert http.head(f"{root}/media/studies/{walter['studies'][0]}", headers=bearer).status_code == 404
        head = http.head(f"{root}/media/studies/{maya['studies'][0]}", headers=bearer)
        assert head.status_code == 200 and head.content == b""
        assert {k: head.headers[k] for k in ("content-type", "content-disposition", "cache-control")} == {
            k: one.headers[k] for k in ("content-type", "content-disposition", "cache-control")
        }
