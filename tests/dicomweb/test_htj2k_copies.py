"""Background HTJ2K copies: made after STOW-RS, served to frame requests that take any syntax, exact."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from aperture.dicom.htj2k import HTJ2K_LOSSLESS_RPCL, decode_frame
from tests.conftest import ApertureServer, start_server
from tests.dicomweb.test_wado import split_multipart
from tests.helpers import store_sample

OHIF_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(scope="module")
def copying_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    srv = start_server(tmp_path_factory.mktemp("copies") / "data")
    yield srv
    srv.stop()


def _store(srv: ApertureServer, name: str) -> tuple[bytes, str]:
    with httpx.Client(base_url=srv.dicomweb) as http:
        return store_sample(http, name)


def _wait_for_copy(http: httpx.Client, url: str, seconds: float = 30) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = http.get(url, headers={"Accept": OHIF_FRAMES})
        if HTJ2K_LOSSLESS_RPCL in response.headers.get("content-type", "") or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.mark.parametrize("name", ["CT_small.dcm", "emri_small_jpeg_2k_lossless.dcm", "MR_small_RLE.dcm"])
def test_copy_is_served_for_any_syntax_and_decodes_exactly(copying_server: ApertureServer, name: str) -> None:
    data, url = _store(copying_server, name)
    ds = pydicom.dcmread(io.BytesIO(data))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = ds.pixel_array if frames > 1 else ds.pixel_array[np.newaxis]
    with httpx.Client(timeout=30) as http:
        response = _wait_for_copy(http, f"{url}/frames/{','.join(str(n) for n in range(1, frames + 1))}")
        parts = split_multipart(response)
        assert all(f"transfer-syntax={HTJ2K_LOSSLESS_RPCL}" in ctype for ctype, _ in parts), parts[0][0]
        for number, (_, codestream) in enumerate(parts):
            assert np.array_equal(decode_frame(codestream).astype(pixels.dtype), pixels[number]), number
        stored = http.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
        assert stored.content == data, "the instance itself is never replaced by the copy"
        raw = http.get(f"{url}/frames/1", headers={"Accept": "multipart/related; type=application/octet-stream"})
        assert HTJ2K_LOSSLESS_RPCL not in split_multipart(raw)[0][0], "uncompressed still means uncompressed"


def test_lossy_instances_get_no_copy(copying_server: ApertureServer) -> None:
    _, url = _store(copying_server, "SC_rgb_jpeg_dcmtk.dcm")
    with httpx.Client(timeout=30) as http:
        time.sleep(2)
        response = http.get(f"{url}/frames/1", headers={"Accept": OHIF_FRAMES})
        assert "1.2.840.10008.1.2.4.50" in split_multipart(response)[0][0]


def test_deleting_an_instance_deletes_its_copy(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", config="[dicomweb]\nallow_delete = true\n")
    try:
        _, url = _store(srv, "CT_small.dcm")
        with httpx.Client(timeout=30) as http:
            assert HTJ2K_LOSSLESS_RPCL in _wait_for_copy(http, f"{url}/frames/1").headers["content-type"]
            assert list((srv.data / "blobs").rglob("*.htj2k"))
            assert http.delete(url.split("/series/")[0]).status_code == 204
        assert not list((srv.data / "blobs").rglob("*.htj2k"))
        assert not list((srv.data / "blobs").rglob("*.dcm"))
    finally:
        srv.stop()


def test_byte_ranges_of_a_frame_concatenate_to_the_whole(copying_server: ApertureServer) -> None:
    """Cornerstone's progressive loading: a prefix first, then the rest, appended."""
    _, url = _store(copying_server, "CT_small.dcm")
    with httpx.Client(timeout=30) as http:
        whole = _wait_for_copy(http, f"{url}/frames/1")
        assert whole.headers["accept-ranges"] == "bytes"
        tag = whole.headers["etag"]
        head = http.get(f"{url}/frames/1", headers={"Accept": OHIF_FRAMES, "Range": "bytes=0-999"})
        assert head.status_code == 206
        assert head.headers["content-range"] == f"bytes 0-999/{len(whole.content)}"
        rest = http.get(f"{url}/frames/1", headers={"Accept": OHIF_FRAMES, "Range": "bytes=1000-"})
        assert rest.status_code == 206
        assert head.content + rest.content == whole.content
        assert rest.headers["etag"] == tag
        beyond = http.get(f"{url}/frames/1", headers={"Accept": OHIF_FRAMES, "Range": f"bytes={len(whole.content)}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(whole.content)}"
        fresh = http.get(f"{url}/frames/1", headers={"Accept": OHIF_FRAMES, "Range": "bytes=0-9", "If-Range": tag})
        assert fresh.status_code == 206 and fresh.content == whole.content[:10]
        stale = http.get(f"{url}/frames/1", headers={"Accept": OHIF_FRAMES, "Range": "bytes=0-9", "If-Range": '"x"'})
        assert stale.status_code == 200 and stale.content == whole.content
