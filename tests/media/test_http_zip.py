"""`/media/studies[/{uid}]`: the PDI zip streamed by the imaging server, unpacked and checked like a download."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from aperture.dicom.synthetic import ct_study
from tests.conftest import SHARED_CONFIG, ApertureServer, start_server
from tests.helpers import stow
from tests.media.checks import assert_pdi_valid


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(client: httpx.Client, made: Iterable[bytes]) -> tuple[str, dict[str, str]]:
    files = list(made)
    for start in range(0, len(files), 50):
        assert stow(client, files[start : start + 50]).status_code == 200
    study = str(pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True).StudyInstanceUID)
    uids = {str(pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True).SOPInstanceUID): _sha(f) for f in files}
    return study, uids


def _unpack(data: bytes, folder: Path) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None  # every entry's CRC-32 matches
    assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
    archive.extractall(folder)
    return archive


@pytest.fixture
def quiet_server(tmp_path: Path) -> Iterator[ApertureServer]:
    """A server of its own with no background work (HTJ2K copies off): its reads are the request's."""
    srv = start_server(tmp_path / "data", config=SHARED_CONFIG)
    yield srv
    srv.stop()


def test_a_study_zip_unpacks_to_pdi_media_with_the_stored_bytes(server: ApertureServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.dicomweb, timeout=60) as client:
        study, digests = _store(client, ct_study(12, 32, 32, seed=1601))
        answer = httpx.get(f"{server.url}/media/studies/{study}", timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"].startswith("attachment;")
    _unpack(answer.content, tmp_path)
    references = assert_pdi_valid(tmp_path)
    assert {uid: _sha(p.read_bytes()) for uid, p in references.items()} == digests
    assert (tmp_path / "INDEX.HTM").is_file() and list((tmp_path / "IHE_PDI").rglob("*.JPG"))


def test_a_browser_form_posts_the_token_in_the_body(server: ApertureServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.dicomweb, timeout=60) as client:
        study, digests = _store(client, ct_study(3, 16, 16, seed=1602))
    url = f"{server.url}/media/studies/{study}"
    answer = httpx.post(url, data={"access_token": "ignored-without-auth"}, timeout=60)
    assert answer.status_code == 200, answer.text
    _unpack(answer.content, tmp_path)
    assert {uid: _sha(p.read_bytes()) for uid, p in assert_pdi_valid(tmp_path).items()} == digests
    wrong = httpx.post(url, content=b"{}", headers={"Content-Type": "application/json"}, timeout=60)
    assert wrong.status_code == 415 and "access_token" in wrong.text
    both = httpx.post(url, data={"access_token": "a"}, headers={"Authorization": "Bearer b"}, timeout=60)
    assert both.status_code == 400


def test_every_study_in_one_zip_and_a_missing_study_is_404(quiet_server: ApertureServer, tmp_path: Path) -> None:
    server = quiet_server  # of its own: the shared server holds every other test's studies
    assert httpx.get(f"{server.url}/media/studies", timeout=60).status_code == 404  # nothing stored yet
    with httpx.Client(base_url=server.dicomweb, timeout=60) as client:
        _, first = _store(client, ct_study(2, 16, 16, seed=1603))
        _, second = _store(client, ct_study(2, 16, 16, seed=1604))
    answer = httpx.get(f"{server.url}/media/studies", timeout=120)
    assert answer.status_code == 200
    media = tmp_path / "media"  # tmp_path/data is the server's
    _unpack(answer.content, media)
    found = {uid: _sha(p.read_bytes()) for uid, p in assert_pdi_valid(media).items()}
    assert found == {**first, **second}
    missing = httpx.get(f"{server.url}/media/studies/1.2.3.4.5.6.7.8.9", timeout=60)
    assert missing.status_code == 404 and "1.2.3.4.5.6.7.8.9" in missing.text


def _group_rss(server: ApertureServer) -> int:
    """Resident memory of the server and its worker processes (its process group), in bytes."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != server.process.pid:
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except (OSError, ProcessLookupError):
            continue
        total += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
    return total


def _group_reads(server: ApertureServer) -> int:
    """Bytes the server's processes have read (rchar: page cache included)."""
    total = 0
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.getpgid(int(pid)) == server.process.pid:
                io_stats = Path(f"/proc/{pid}/io").read_text()
                total += next(int(line.split()[1]) for line in io_stats.splitlines() if line.startswith("rchar:"))
        except (OSError, ProcessLookupError, StopIteration):
            continue
    return total


def test_memory_stays_flat_while_a_big_study_streams(quiet_server: ApertureServer) -> None:
    fresh_server = quiet_server
    with httpx.Client(base_url=fresh_server.dicomweb, timeout=120) as client:
        study, _ = _store(client, ct_study(160, 512, 512))  # about 84 MB
    url = f"{fresh_server.url}/media/studies/{study}"
    httpx.get(url, timeout=120).raise_for_status()  # warm: imports, thread pool, first render
    baseline = _group_rss(fresh_server)
    peak, sent = baseline, 0
    with httpx.stream("GET", url, timeout=120) as answer:
        for piece in answer.iter_bytes(1 << 20):
            sent += len(piece)
            time.sleep(0.005)  # a slower client: the server must not run ahead into memory
            peak = max(peak, _group_rss(fresh_server))
    assert sent > 80 * 2**20
    assert peak - baseline < 32 * 2**20, f"RSS grew {(peak - baseline) >> 20} MB while sending {sent >> 20} MB"


def test_a_client_that_disconnects_costs_nothing_more(quiet_server: ApertureServer) -> None:
    fresh_server = quiet_server
    with httpx.Client(base_url=fresh_server.dicomweb, timeout=120) as client:
        study, _ = _store(client, ct_study(100, 512, 512))
    url = f"{fresh_server.url}/media/studies/{study}"
    before = _group_reads(fresh_server)
    with httpx.stream("GET", url, timeout=60) as answer:
        got = 0
        for piece in answer.iter_bytes(1 << 16):
            got += len(piece)
            if got > 4 * 2**20:
                break
    time.sleep(1.0)
    settled = _group_reads(fresh_server)
    time.sleep(2.0)
    assert _group_reads(fresh_server) - settled < 2**20, "the server kept reading the study for nobody"
    assert settled - before < 30 * 2**20, "the server read most of the 52 MB study for a client that took 4 MB"
    assert httpx.get(f"{fresh_server.url}/healthz", timeout=10).status_code == 200
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(httpx.get(url, timeout=120).status_code))]
    for thread in threads:
        thread.start()
        thread.join()
    assert results == [200]


def test_head_answers_the_headers_of_get_without_reading_the_study(quiet_server: ApertureServer) -> None:
    """HEAD runs GET's handler (its 404s, its headers) but never starts the body: no zip, no multipart.

    Not even the first instance is read (granian drops a HEAD's body after its first piece, which
    for the zip is one read of an instance; the WADO-RS multipart read the whole study).
    """
    server = quiet_server
    little = 128 * 1024  # an instance here is 512 KiB of pixels
    with httpx.Client(base_url=server.dicomweb, timeout=120) as client:
        study, _ = _store(client, ct_study(40, 512, 512, seed=1606))  # about 21 MB
    zips = {"study": f"{server.url}/media/studies/{study}", "all": f"{server.url}/media/studies"}
    retrieve = f"{server.dicomweb}/studies/{study}"  # WADO-RS: every instance, multipart/related
    with httpx.Client(timeout=120) as http:
        for name, url in zips.items():
            get = http.get(url)
            before = _group_reads(server)
            head = http.head(url)
            assert _group_reads(server) - before < little, f"HEAD of the {name} zip read an instance"
            assert head.status_code == get.status_code == 200 and head.content == b""
            for field in ("content-type", "content-disposition", "cache-control"):
                assert head.headers[field] == get.headers[field], field
        assert head.headers["content-type"] == "application/zip"
        assert head.headers["content-disposition"] == 'attachment; filename="studies.zip"'
        get = http.get(retrieve)
        before = _group_reads(server)
        head = http.head(retrieve)
        assert _group_reads(server) - before < little, "HEAD of the WADO-RS study retrieve read an instance"
        assert head.status_code == get.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["etag"] == get.headers["etag"]
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
        missing = http.head(f"{server.url}/media/studies/1.2.3.4.5.6.7.8.9")
        assert missing.status_code == 404 and missing.content == b""


def test_an_entry_over_4_gb_is_announced_as_zip64_before_its_bytes(tmp_path: Path) -> None:
    """Sizes are known only after a streamed entry; one the index says passes 4 GB gets ZIP64 fields up front."""
    from aperture.media.archive import MediaSource, pdi_zip

    raw = next(iter(ct_study(1, 16, 16, seed=1605)))
    ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
    stored = tmp_path / "blob"
    stored.write_bytes(raw)
    source = MediaSource(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, stored, 5 * 2**30)
    data = b"".join(pdi_zip([source]))
    archive = zipfile.ZipFile(io.BytesIO(data))
    (entry,) = [i for i in archive.infolist() if i.filename.startswith("DICOM/")]
    local = data[entry.header_offset :]
    name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
    extra = local[30 + name_length : 30 + name_length + extra_length]
    assert local[:4] == b"PK\x03\x04" and extra[:2] == b"\x01\x00"  # the local header's ZIP64 field
    assert archive.read(entry) == raw and archive.testzip() is None
