"""WADO-RS answers `Want-Repr-Digest: sha-256` (RFC 9530) with the SHA-256 of the stored bytes, per instance."""

from __future__ import annotations

import base64
import hashlib
import io

import httpx
import pydicom

from aperture.dicom.synthetic import ct_study
from tests.e2e.imaging import split_multipart
from tests.helpers import stow


def sha256(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def test_instances_and_series_parts_carry_the_digest_only_when_asked(client: httpx.Client) -> None:
    files = list(ct_study(3, 64, 64, patient_id="DIGEST-1", seed=16))
    stow(client, files)
    ds = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
    series = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    instance = f"{series}/instances/{ds.SOPInstanceUID}"
    stored = {"Accept": "application/dicom; transfer-syntax=*"}
    one = client.get(instance, headers={**stored, "Want-Repr-Digest": "sha-256=10"})
    assert one.status_code == 200 and one.content == files[0]
    assert one.headers["repr-digest"] == sha256(files[0])
    plain = client.get(
        f"{series}/instances/{ds.SOPInstanceUID}", headers={"Accept": "application/dicom; transfer-syntax=*"}
    )
    assert "repr-digest" not in plain.headers
    refused = client.get(instance, headers={**stored, "Want-Repr-Digest": "sha-256=0"})
    assert "repr-digest" not in refused.headers

    whole = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    answer = client.get(series, headers={"Accept": whole, "Want-Repr-Digest": "sha-256=10"})
    assert answer.status_code == 200 and int(answer.headers["content-length"]) == len(answer.content)
    digests = [
        line.split(b": ", 1)[1].decode() for line in answer.content.split(b"\r\n") if line.startswith(b"Repr-Digest: ")
    ]
    parts = split_multipart(answer)
    assert sorted(parts) == sorted(files) and sorted(digests) == sorted(sha256(f) for f in files)
    assert client.get(series, headers={"Accept": whole}).headers["etag"] != answer.headers["etag"]
