"""A SIGKILL in the middle of STOW-RS leaves no half-stored instance and loses nothing acknowledged."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import database_config, start_server
from tests.helpers import make_instance, multipart_body, partial_uploads, stow


def _everything_served_is_whole(http: httpx.Client, uploaded: dict[str, bytes]) -> int:
    """Every instance the index lists must come back byte-identical to what was uploaded."""
    count = 0
    for study in http.get("/studies", params={"limit": 10000}).json():
        study_uid = study["0020000D"]["Value"][0]
        for item in http.get(f"/studies/{study_uid}/instances").json():
            sop = item["00080018"]["Value"][0]
            served = http.get(item["00081190"]["Value"][0], headers={"Accept": "application/dicom"})
            assert served.status_code == 200, served.text
            assert served.content == uploaded[sop], f"instance {sop} is served changed after the crash"
            count += 1
    return count


def _slow_body(body: bytes, killed: threading.Event) -> Iterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        if killed.is_set():
            return
        yield body[start : start + 64 * 1024]
        time.sleep(0.01)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_during_and_after_upload(tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    data = tmp_path / "data"
    # no HTJ2K copies: their work files in tmp/ would race the check that startup empties it
    config = database_config(request, backend, "crash", store="htj2k_copies = false\n")
    srv = start_server(data, config=config)
    uploaded: dict[str, bytes] = {}

    def remember(parts: list[bytes], study: str) -> None:
        for n, part in enumerate(parts):
            uploaded[f"{study}.{n}"] = part

    with httpx.Client(base_url=srv.dicomweb, timeout=60) as http:
        acknowledged_study = generate_uid()
        acknowledged = []
        for n in range(5):
            sop = generate_uid()
            acknowledged.append(make_instance(study=acknowledged_study, sop=sop, instance_number=n))
            uploaded[sop] = acknowledged[-1]
        assert stow(http, acknowledged).status_code == 200

    # 1. killed while the body is still arriving
    study = generate_uid()
    parts = []
    for n in range(40):
        sop = generate_uid()
        parts.append(make_instance(study=study, sop=sop, instance_number=n, rows=256, columns=256))
        uploaded[sop] = parts[-1]
    body, ctype = multipart_body(parts)
    killed = threading.Event()

    def upload() -> None:
        try:
            httpx.post(f"{srv.dicomweb}/studies", content=_slow_body(body, killed),
                       headers={"Content-Type": ctype}, timeout=30)  # fmt: skip
        except httpx.HTTPError:
            pass

    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(0.3)
    srv.stop(signal.SIGKILL)
    killed.set()
    thread.join()
    assert partial_uploads(data), "the kill should have left a partial upload behind"

    # 2. killed after the body arrived, while instances are being written and indexed
    srv = start_server(data, config=config)
    leftovers = partial_uploads(data)
    if leftovers:
        srv.stop()  # no server outlives a failed test
    assert not leftovers, f"partial uploads are removed at startup: {leftovers}"
    study2 = generate_uid()
    parts2 = []
    for n in range(150):
        sop = generate_uid()
        parts2.append(make_instance(study=study2, sop=sop, instance_number=n, rows=64, columns=64))
        uploaded[sop] = parts2[-1]
    body2, ctype2 = multipart_body(parts2)
    thread = threading.Thread(
        target=lambda: _post_ignoring_errors(f"{srv.dicomweb}/studies", body2, ctype2), daemon=True
    )
    thread.start()
    time.sleep(0.25)
    srv.stop(signal.SIGKILL)
    thread.join(timeout=30)

    srv = start_server(data, config=config)
    try:
        with httpx.Client(base_url=srv.dicomweb, timeout=60) as http:
            served = _everything_served_is_whole(http, uploaded)
            listed = http.get(f"/studies/{acknowledged_study}/instances").json()
            assert len(listed) == 5, "everything acknowledged before the kill is still there"
            assert served >= 5
            half = http.get(f"/studies/{study2}/instances")
            assert half.status_code in (200, 404)
            # the store keeps working after the crashes
            assert stow(http, [make_instance()]).status_code == 200
    finally:
        srv.stop()


def _post_ignoring_errors(url: str, body: bytes, ctype: str) -> None:
    try:
        httpx.post(url, content=body, headers={"Content-Type": ctype}, timeout=30)
    except httpx.HTTPError:
        pass
