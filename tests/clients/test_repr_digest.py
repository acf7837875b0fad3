"""WADO-RS answers `Want-Repr-Digest: sha-256` (RFC 9530) with the SHA-256 of the stored bytes, per instance.

The shared server makes no HTJ2K copies, so its background pass never runs and every digest there is
computed on the request; `recording` is a server whose pass records them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pydicom
import pytest
from sqlalchemy import create_engine, text

from aperture.dicom.synthetic import ct_study
from tests.conftest import ApertureServer, start_server
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


# With HTJ2K copies on (the default), the background pass records each image's SHA-256 after upload
# and requests answer from the row; an instance without a recorded value is hashed on the request.

WHOLE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
STORED = {"Accept": "application/dicom; transfer-syntax=*", "Want-Repr-Digest": "sha-256=10"}


@pytest.fixture(scope="module")
def recording(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ApertureServer, list[bytes], list[bytes]]]:
    """A server whose background pass runs: a series of small instances and one of instances over 1 MB."""
    srv = start_server(tmp_path_factory.mktemp("digests") / "data")
    try:
        small = list(ct_study(3, 64, 64, patient_id="DIGEST-2", seed=17))
        large = list(ct_study(2, 768, 768, patient_id="DIGEST-3", seed=18))  # parts hashed off the loop
        with httpx.Client(base_url=srv.dicomweb, timeout=60) as http:
            assert stow(http, small).status_code == 200 and stow(http, large).status_code == 200
            deadline = time.monotonic() + 60
            while http.get(f"{srv.url}/healthz?background=1").json()["htj2k_pending"]:
                assert time.monotonic() < deadline, "the background pass did not finish"
                time.sleep(0.1)
        yield srv, small, large
    finally:
        srv.stop()


def _uids(data: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def _series_url(data: bytes) -> str:
    study, series, _ = _uids(data)
    return f"/studies/{study}/series/{series}"


def _instance_url(data: bytes) -> str:
    return f"{_series_url(data)}/instances/{_uids(data)[2]}"


def _recorded(srv: ApertureServer) -> dict[str, str | None]:
    engine = create_engine(f"sqlite:///{srv.data / 'index.sqlite3'}")
    try:
        with engine.connect() as conn:
            return {row.sop_uid: row.sha256 for row in conn.execute(text("SELECT sop_uid, sha256 FROM instances"))}
    finally:
        engine.dispose()


def _record(srv: ApertureServer, sop: str, value: str | None) -> None:
    engine = create_engine(f"sqlite:///{srv.data / 'index.sqlite3'}")
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE instances SET sha256 = :v WHERE sop_uid = :sop"), {"v": value, "sop": sop})
    finally:
        engine.dispose()


def _parts(response: httpx.Response) -> list[tuple[str | None, bytes]]:
    """(Repr-Digest, body) of each part; the answer's Content-Length must be its length."""
    assert response.status_code == 200, response.text
    assert int(response.headers["content-length"]) == len(response.content)
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    return [(part["Repr-Digest"], part.get_payload(decode=True)) for part in message.iter_parts()]


def _served(http: httpx.Client, files: list[bytes]) -> dict[bytes, str | None]:
    """Each file's Repr-Digest as served: alone, alone in a multipart answer, and as a part of its series."""
    answers: dict[bytes, str | None] = {}
    for data in files:
        one = http.get(_instance_url(data), headers=STORED)
        assert one.status_code == 200 and one.content == data
        ((as_part, body),) = _parts(http.get(_instance_url(data), headers={**STORED, "Accept": WHOLE}))
        assert body == data and as_part == one.headers["repr-digest"]
        answers[data] = as_part
    series = _parts(http.get(_series_url(files[0]), headers={**STORED, "Accept": WHOLE}))
    in_series = {body: digest for digest, body in series}
    assert in_series == answers, "a part of the series carries another digest than the instance alone"
    return answers


def test_the_pass_records_each_files_sha256_and_requests_serve_it(
    recording: tuple[ApertureServer, list[bytes], list[bytes]],
) -> None:
    srv, small, large = recording
    recorded = _recorded(srv)
    for data in small + large:
        assert recorded[_uids(data)[2]] == hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=srv.dicomweb, timeout=60) as http:
        for files in (small, large):
            assert _served(http, files) == {data: sha256(data) for data in files}


def test_an_instance_with_no_recorded_sha256_is_hashed_on_the_request(
    recording: tuple[ApertureServer, list[bytes], list[bytes]],
) -> None:
    srv, small, large = recording
    unrecorded = [small[1], large[0]]  # as for rows the pass has not reached yet
    for data in unrecorded:
        _record(srv, _uids(data)[2], None)
    try:
        with httpx.Client(base_url=srv.dicomweb, timeout=60) as http:
            for files in (small, large):
                assert _served(http, files) == {data: sha256(data) for data in files}
    finally:
        for data in unrecorded:
            _record(srv, _uids(data)[2], hashlib.sha256(data).hexdigest())


def test_the_recorded_value_is_what_is_served_not_a_new_hash(
    recording: tuple[ApertureServer, list[bytes], list[bytes]],
) -> None:
    srv, small, large = recording
    planted = {small[2]: hashlib.sha256(b"not these bytes").digest(), large[1]: hashlib.sha256(b"nor these").digest()}
    for data, value in planted.items():
        _record(srv, _uids(data)[2], value.hex())
    try:
        with httpx.Client(base_url=srv.dicomweb, timeout=60) as http:
            for files in (small, large):
                expected = {
                    data: f"sha-256=:{base64.b64encode(planted[data]).decode()}:" if data in planted else sha256(data)
                    for data in files
                }
                assert _served(http, files) == expected
    finally:
        for data in planted:
            _record(srv, _uids(data)[2], hashlib.sha256(data).hexdigest())
