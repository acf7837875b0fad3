"""Content-Location on every part of a multipart answer (PS3.18 §8.6.1.2, Table 8.6.1-1).

"Shall be present if the response payload contains a representation of a resource": each frame,
instance and bulk data value in a multipart answer is one, so each part names the URL it can be
fetched at alone, on the public base URL. Clients match the parts of `/frames/3,1,2` to the frames
they asked for by it (PS3.18 §8.7.3.3.2 note: parts are distinguished by Content-Type and
Content-Location).
"""

from __future__ import annotations

import io
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pydicom
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from tests.conftest import ApertureServer
from tests.dicomweb.test_wado import store_file
from tests.helpers import make_instance, stow

ANY_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"
DECODED = "multipart/related; type=application/octet-stream"


def parts(response: httpx.Response) -> list[tuple[str | None, bytes]]:
    """(Content-Location, body) of each part, parsed with the standard library's MIME parser."""
    assert response.status_code == 200, response.text
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    assert message.is_multipart()
    return [(part["Content-Location"], part.get_payload(decode=True)) for part in message.iter_parts()]


def test_frame_parts_name_their_frame(server: ApertureServer, client: httpx.Client) -> None:
    data, study, series, sop = store_file(client, "emri_small_jpeg_2k_lossless.dcm")  # 10 frames, stored as J2K
    ds = pydicom.dcmread(io.BytesIO(data))
    stored = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    instance = f"{server.dicomweb}/studies/{study}/series/{series}/instances/{sop}"
    for accept in (ANY_STORED, 'multipart/related; type="image/jp2"', DECODED):
        answer = client.get(f"{instance}/frames/3,1,2", headers={"Accept": accept})
        found = parts(answer)
        assert [location for location, _ in found] == [f"{instance}/frames/{n}" for n in (3, 1, 2)], accept
        if accept != DECODED:
            assert [body for _, body in found] == [stored[2], stored[0], stored[1]]
        for location, body in found:  # each part is what its Content-Location answers alone
            (again,) = parts(client.get(location, headers={"Accept": accept}))
            assert again == (location, body)


def test_streamed_frame_parts_name_their_frame(server: ApertureServer, client: httpx.Client) -> None:
    """Over 1 MB the parts are sent one by one (stored, or encoded on request): same headers."""
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    data = make_instance(study=study, series=series, sop=sop, frames=40, rows=128, columns=128)
    assert stow(client, [data]).status_code == 200
    instance = f"{server.dicomweb}/studies/{study}/series/{series}/instances/{sop}"
    pixels = pydicom.dcmread(io.BytesIO(data)).PixelData
    size = 128 * 128 * 2
    for accept in (ANY_STORED, 'multipart/related; type="image/jls"'):
        with client.stream("GET", f"{instance}/frames/40,3,1,2", headers={"Accept": accept}) as answer:
            assert answer.headers.get("transfer-encoding") == "chunked"
            answer.read()
        found = parts(answer)
        assert [location for location, _ in found] == [f"{instance}/frames/{n}" for n in (40, 3, 1, 2)]
        if accept == ANY_STORED:
            assert [body for _, body in found] == [pixels[(n - 1) * size : n * size] for n in (40, 3, 1, 2)]


def test_instance_parts_of_a_study_retrieve_name_their_instance(server: ApertureServer, client: httpx.Client) -> None:
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    files = [make_instance(study=study, series=series, sop=sop, instance_number=n) for n, sop in enumerate(sops, 1)]
    assert stow(client, files).status_code == 200
    for url in (f"/studies/{study}", f"/studies/{study}/series/{series}"):
        for accept in ('multipart/related; type="application/dicom"; transfer-syntax=*', "multipart/related"):
            found = parts(client.get(url, headers={"Accept": accept}))
            assert sorted(location or "" for location, _ in found) == sorted(
                f"{server.dicomweb}/studies/{study}/series/{series}/instances/{sop}" for sop in sops
            )
            for location, body in found:
                assert pydicom.dcmread(io.BytesIO(body)).SOPInstanceUID == str(location).rsplit("/", 1)[1]
    instance = f"{server.dicomweb}/studies/{study}/series/{series}/instances/{sops[0]}"
    ((location, _),) = parts(client.get(instance, headers={"Accept": "multipart/related"}))
    assert location == instance


def test_bulk_data_parts_name_their_value(server: ApertureServer, client: httpx.Client) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    assert stow(client, [make_instance(study=study, series=series, sop=sop, rows=64, columns=64)]).status_code == 200
    instance = f"{server.dicomweb}/studies/{study}/series/{series}/instances/{sop}"
    ((location, _),) = parts(client.get(f"{instance}/bulkdata/7FE00010", headers={"Accept": "multipart/related"}))
    assert location == f"{instance}/bulkdata/7FE00010"
    _, study, series, sop = store_file(client, "emri_small_jpeg_2k_lossless.dcm")
    instance = f"{server.dicomweb}/studies/{study}/series/{series}/instances/{sop}"
    found = parts(client.get(f"{instance}/bulkdata/7fe00010", headers={"Accept": "multipart/related"}))
    assert [location for location, _ in found] == [f"{instance}/frames/{n}" for n in range(1, 11)]


def test_public_base_from_the_scope_is_what_request_url_gives() -> None:
    """The base every part's Content-Location holds is made from the scope without parsing the URL;
    for any Host header it must be what Starlette's `request.url` makes of it."""
    from types import SimpleNamespace

    from starlette.requests import Request

    from aperture.dicomweb.urls import public_base

    app = SimpleNamespace(state=SimpleNamespace(config=SimpleNamespace(server=SimpleNamespace(public_url=""))))
    hosts = [b"127.0.0.1:8080", b"Example.ORG", b"[::1]:80", b"[::1]", b"a_b.c-d:1", b"ex ample", b"a/b", b"a?b"]
    hosts += [b"a@b:1", b"x:99999", b"x:65535", b"x:65536", b"x:0", b"x:", b"-", b"[zz]", b"1.2.3.4:00080", b""]
    for host in [*hosts, None]:
        for scheme in ("http", "https"):
            scope = {
                "type": "http",
                "scheme": scheme,
                "server": ("127.0.0.1", 8080),
                "root_path": "/pacs/dicom-web",
                "path": "/pacs/dicom-web/studies",
                "query_string": b"",
                "headers": [(b"host", host)] if host is not None else [],
                "app": app,
            }
            parsed = Request(scope).url
            assert public_base(Request(scope)) == f"{parsed.scheme}://{parsed.netloc}/pacs/dicom-web", (host, scheme)
