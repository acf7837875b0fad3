"""WADO-RS (PS3.18 §10.4): instances, metadata, frames, bulk data, rendered, zip, transfer syntaxes."""

from __future__ import annotations

import io
import zipfile
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid

from tests.helpers import make_instance, sequence_items, store_sample, stow

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def split_multipart(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part, parsed with the standard library's MIME parser."""
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    assert message.is_multipart(), response.headers["content-type"]
    return [
        (str(part["Content-Type"]).replace('"', ""), part.get_payload(decode=True)) for part in message.iter_parts()
    ]


def store_file(client: httpx.Client, name: str) -> tuple[bytes, str, str, str]:
    """Store a pydicom-data file under fresh UIDs; returns (bytes, study, series, sop)."""
    data, url = store_sample(client, name)
    study, series, sop = url.split("/studies/")[1].replace("/series/", "/").replace("/instances/", "/").split("/")
    return data, study, series, sop


@pytest.fixture(scope="module")
def study(server) -> dict[str, object]:  # type: ignore[no-untyped-def]
    study_uid, series_uid = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    parts = [
        make_instance(study=study_uid, series=series_uid, sop=sop, instance_number=n + 1, frames=2, rows=32, columns=32)
        for n, sop in enumerate(sops)
    ]
    with httpx.Client(base_url=server.dicomweb, timeout=30) as http:
        assert stow(http, parts).status_code == 200
    return {"study": study_uid, "series": series_uid, "sops": sops, "parts": parts}


def test_study_retrieve_streams_every_instance_as_stored(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    response = client.get(
        f"/studies/{study['study']}", headers={"Accept": 'multipart/related; type="application/dicom"'}
    )
    assert response.status_code == 200
    parts = split_multipart(response)
    assert [body for _, body in parts] == study["parts"]
    assert all(
        ctype.startswith("application/dicom") and f"transfer-syntax={EXPLICIT_LE}" in ctype for ctype, _ in parts
    )
    assert int(response.headers["content-length"]) == len(response.content)


def test_series_and_instance_retrieve(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    series = client.get(f"/studies/{study['study']}/series/{study['series']}")
    assert len(split_multipart(series)) == 3
    url = f"/studies/{study['study']}/series/{study['series']}/instances/{study['sops'][1]}"
    single = client.get(url, headers={"Accept": "application/dicom"})
    assert single.headers["content-type"].startswith("application/dicom")
    assert single.content == study["parts"][1]


def test_metadata_at_three_levels_with_bulk_data_uris(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    base = f"/studies/{study['study']}"
    study_md = client.get(f"{base}/metadata").json()
    series_md = client.get(f"{base}/series/{study['series']}/metadata").json()
    instance_md = client.get(f"{base}/series/{study['series']}/instances/{study['sops'][0]}/metadata").json()
    assert len(study_md) == 3 and len(series_md) == 3 and len(instance_md) == 1
    pixel = instance_md[0]["7FE00010"]
    assert set(pixel) == {"vr", "BulkDataURI"}
    bulk = client.get(pixel["BulkDataURI"], headers={"Accept": "application/octet-stream"})
    assert bulk.status_code == 200
    assert bulk.content == pydicom.dcmread(io.BytesIO(study["parts"][0])).PixelData
    parsed = pydicom.Dataset.from_json(instance_md[0], bulk_data_uri_handler=lambda *_: b"")
    assert parsed.SOPInstanceUID == study["sops"][0]


def test_metadata_matches_a_fresh_derivation_from_the_file(client: httpx.Client) -> None:
    """The precomputed fast path returns what pydicom derives from the file itself (sequences included)."""
    data, st, se, sop = store_file(client, "CT_small.dcm")
    served = client.get(f"/studies/{st}/series/{se}/instances/{sop}/metadata").json()[0]
    ds = pydicom.dcmread(io.BytesIO(data))
    expected = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda e: "x")
    for key, element in expected.items():
        if key == "FFFCFFFC" or key.endswith("0000"):
            continue  # trailing padding and group lengths are encoding details, not attributes
        if "BulkDataURI" in element:
            assert "BulkDataURI" in served[key]
        else:
            assert served[key] == element, key


def test_frames_native_as_stored_and_several_at_once(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    url = f"/studies/{study['study']}/series/{study['series']}/instances/{study['sops'][0]}/frames/2,1"
    response = client.get(
        url, headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    )
    assert response.status_code == 200
    parts = split_multipart(response)
    pixels = pydicom.dcmread(io.BytesIO(study["parts"][0])).PixelData
    frame_size = 32 * 32 * 2
    assert [body for _, body in parts] == [pixels[frame_size:], pixels[:frame_size]]
    assert all(f"transfer-syntax={EXPLICIT_LE}" in ctype for ctype, _ in parts)


def test_compressed_frames_as_stored_or_decoded(client: httpx.Client) -> None:
    data, st, se, sop = store_file(client, "emri_small_jpeg_2k_lossless.dcm")
    url = f"/studies/{st}/series/{se}/instances/{sop}/frames/3"
    ds = pydicom.dcmread(io.BytesIO(data))
    stored = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))[2]
    as_stored = client.get(
        url, headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    )
    ((ctype, body),) = split_multipart(as_stored)
    assert body == stored and "1.2.840.10008.1.2.4.90" in ctype
    as_jp2 = client.get(url, headers={"Accept": 'multipart/related; type="image/jp2"'})
    assert split_multipart(as_jp2)[0][1] == stored
    decoded = client.get(url, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    ((ctype, body),) = split_multipart(decoded)
    assert EXPLICIT_LE in ctype
    assert np.array_equal(
        np.frombuffer(body, dtype=ds.pixel_array.dtype).reshape(ds.Rows, ds.Columns), ds.pixel_array[2]
    )


def test_frame_errors(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    base = f"/studies/{study['study']}/series/{study['series']}/instances/{study['sops'][0]}/frames"
    assert client.get(f"{base}/3").status_code == 404
    assert client.get(f"{base}/0").status_code == 400
    assert client.get(f"{base}/1-2").status_code == 400
    response = client.get(f"{base}/1", headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert response.status_code == 406 and "application/octet-stream" in response.json()["message"]


def test_rendered_and_thumbnail(client: httpx.Client) -> None:
    _, st, se, sop = store_file(client, "CT_small.dcm")
    base = f"/studies/{st}/series/{se}/instances/{sop}"
    jpeg = client.get(f"{base}/rendered", headers={"Accept": "image/jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (128, 128)
    png = client.get(f"{base}/rendered", params={"viewport": "64,64"}, headers={"Accept": "image/png"})
    image = Image.open(io.BytesIO(png.content))
    assert image.format == "PNG" and image.size == (64, 64)
    wide = client.get(f"{base}/rendered", params={"window": "40,400,LINEAR"}, headers={"Accept": "image/png"})
    narrow = client.get(f"{base}/rendered", params={"window": "40,40,LINEAR"}, headers={"Accept": "image/png"})
    assert wide.content != narrow.content
    low = client.get(f"{base}/rendered", params={"quality": "10"})
    high = client.get(f"{base}/rendered", params={"quality": "95"})
    assert len(low.content) < len(high.content)
    assert client.get(f"{base}/frames/1/rendered").status_code == 200
    thumb = client.get(f"{base}/thumbnail")
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 128
    assert client.get(f"/studies/{st}/series/{se}/thumbnail").status_code == 200
    assert client.get(f"{base}/rendered", params={"window": "abc"}).status_code == 400
    assert client.get(f"{base}/frames/2/rendered").status_code == 404
    assert client.get(f"{base}/rendered", headers={"Accept": "image/tiff"}).status_code == 406


def test_zip_of_a_study(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    for response in (
        client.get(f"/studies/{study['study']}", params={"accept": "application/zip"}),
        client.get(f"/studies/{study['study']}", headers={"Accept": "application/zip"}),
    ):
        assert response.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            names = archive.namelist()
            assert len(names) == 3 and all(n.endswith(".dcm") for n in names)
            assert sorted(archive.read(n) for n in names) == sorted(study["parts"])


def test_transcoding_on_request_and_406_when_impossible(client: httpx.Client) -> None:
    data, st, se, sop = store_file(client, "JPEG2000.dcm")
    url = f"/studies/{st}/series/{se}/instances/{sop}"
    as_stored = client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert as_stored.content == data
    explicit = client.get(url, headers={"Accept": f"application/dicom; transfer-syntax={EXPLICIT_LE}"})
    assert explicit.status_code == 200
    decoded = pydicom.dcmread(io.BytesIO(explicit.content))
    assert decoded.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert np.array_equal(decoded.pixel_array, pydicom.dcmread(io.BytesIO(data)).pixel_array)
    multi = client.get(
        url, headers={"Accept": f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}'}
    )
    assert pydicom.dcmread(io.BytesIO(split_multipart(multi)[0][1])).file_meta.TransferSyntaxUID == EXPLICIT_LE
    impossible = client.get(url, headers={"Accept": "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"})
    assert impossible.status_code == 406
    assert EXPLICIT_LE in impossible.json()["message"]
    unknown = client.get(url, headers={"Accept": "application/dicom; transfer-syntax=1.2.3.4.5"})
    assert unknown.status_code == 406


@pytest.mark.parametrize(
    "name", ["SC_rgb_jpeg_dcmtk.dcm", "JPEG-LL.dcm", "MR_small_RLE.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm"]
)
def test_transcode_to_explicit_little_endian(client: httpx.Client, name: str) -> None:
    data, st, se, sop = store_file(client, name)
    response = client.get(
        f"/studies/{st}/series/{se}/instances/{sop}",
        headers={"Accept": f"application/dicom; transfer-syntax={EXPLICIT_LE}"},
    )
    assert response.status_code == 200, response.text
    out = pydicom.dcmread(io.BytesIO(response.content))
    assert out.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert np.array_equal(out.pixel_array, pydicom.dcmread(io.BytesIO(data)).pixel_array)


def test_a_file_no_decoder_can_read_is_406_not_500(client: httpx.Client) -> None:
    _, st, se, sop = store_file(client, "JPEG-lossy.dcm")  # 12-bit JPEG Extended: no installed decoder
    url = f"/studies/{st}/series/{se}/instances/{sop}"
    response = client.get(url, headers={"Accept": f"application/dicom; transfer-syntax={EXPLICIT_LE}"})
    assert response.status_code == 406
    assert "transfer-syntax=*" in response.json()["message"]
    assert client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"}).status_code == 200


def test_not_found_and_bad_accept(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    missing = generate_uid()
    instance = f"/studies/{study['study']}/series/{study['series']}/instances/{missing}"
    for url in (f"/studies/{missing}", f"/studies/{missing}/metadata",
                f"/studies/{study['study']}/series/{missing}", f"{instance}/frames/1"):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"] == "application/json"
        assert missing in response.json()["message"]
    bad = client.get(f"/studies/{study['study']}", headers={"Accept": "text/html"})
    assert bad.status_code == 406
    assert (
        client.get(f"/studies/{study['study']}/metadata", headers={"Accept": "application/dicom+xml"}).status_code
        == 406
    )


def test_delete_study_series_instance(client: httpx.Client) -> None:
    study_uid, series_uid = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    parts = [make_instance(study=study_uid, series=series_uid, sop=s, instance_number=i) for i, s in enumerate(sops)]
    parts.append(make_instance(study=study_uid))
    assert stow(client, parts).status_code == 200
    assert client.delete(f"/studies/{study_uid}/series/{series_uid}/instances/{sops[0]}").status_code == 204
    (found,) = client.get("/studies", params={"StudyInstanceUID": study_uid}).json()
    assert found["00201208"]["Value"] == [3]
    assert client.delete(f"/studies/{study_uid}/series/{series_uid}").status_code == 204
    assert client.get(f"/studies/{study_uid}/series/{series_uid}/metadata").status_code == 404
    assert client.delete(f"/studies/{study_uid}").status_code == 204
    assert client.get(f"/studies/{study_uid}/metadata").status_code == 404
    assert client.delete(f"/studies/{study_uid}").status_code == 404


def test_delete_is_off_by_default(fresh_server) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=fresh_server.dicomweb) as http:
        answer = stow(http, [make_instance()]).json()
        study = sequence_items(answer, "00081199")[0]["00081190"]["Value"][0].split("/studies/")[1].split("/")[0]
        response = http.delete(f"/studies/{study}")
        assert response.status_code == 405
        assert "allow_delete" in response.json()["message"]


def _value_at(ds: pydicom.Dataset, path: str) -> bytes:
    node: object = ds
    for position, part in enumerate(path.split("/")):
        node = node[int(part, 16)].value if position % 2 == 0 else node[int(part)]  # type: ignore[index]
    return node  # type: ignore[return-value]


def test_every_bulk_data_uri_of_real_files_returns_the_element_value(client: httpx.Client) -> None:
    """Over pydicom-data: each BulkDataURI in /metadata serves exactly the value pydicom reads there."""
    from tests.data import PYDICOM_DATA

    checked = 0
    for path in PYDICOM_DATA:
        answer = stow(client, [path.read_bytes()]).json()
        referenced = sequence_items(answer, "00081199")
        if not referenced:
            continue
        url = referenced[0]["00081190"]["Value"][0]
        ds = pydicom.dcmread(path)
        for uri in _bulk_uris(client.get(url + "/metadata").json()[0]):
            element_path = uri.split("/bulkdata/")[1]
            if element_path == "7FE00010" and ds.file_meta.TransferSyntaxUID.is_compressed:
                continue  # compressed Pixel Data is served as frames, checked by the frame tests
            served = client.get(uri, headers={"Accept": "application/octet-stream"})
            assert served.status_code == 200, f"{path.name} {element_path}: {served.text}"
            expected = _value_at(ds, element_path)
            if isinstance(expected, str):  # a malformed text value the server keeps as bulk data
                expected = expected.encode("latin-1")
            if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2" and element_path == "7FE00010":
                assert len(served.content) == len(expected)
            else:
                assert served.content == expected, f"{path.name} {element_path}"
            checked += 1
    assert checked > 60


def _bulk_uris(dataset: dict) -> list[str]:  # type: ignore[type-arg]
    uris = []
    for element in dataset.values():
        if "BulkDataURI" in element:
            uris.append(element["BulkDataURI"])
        for item in element.get("Value", []) if element.get("vr") == "SQ" else []:
            uris.extend(_bulk_uris(item))
    return uris


@pytest.mark.parametrize("name", ["image_dfl.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm"])
def test_frames_any_accept_gives_pixels_a_client_can_read(client: httpx.Client, name: str) -> None:
    """Deflated (no frame offsets), big endian and RLE: */* and octet-stream answer, never 406 or 500."""
    data, st, se, sop = store_file(client, name)
    ds = pydicom.dcmread(io.BytesIO(data))
    url = f"/studies/{st}/series/{se}/instances/{sop}/frames/1"
    for accept in ("*/*", "multipart/related; type=application/octet-stream",
                   "multipart/related; type=application/octet-stream; transfer-syntax=*"):  # fmt: skip
        response = client.get(url, headers={"Accept": accept})
        assert response.status_code == 200, (accept, response.text)
        ((ctype, body),) = split_multipart(response)
        if "transfer-syntax=1.2.840.10008.1.2.5" in ctype:
            assert accept.endswith("*")  # RLE as stored
            continue
        assert EXPLICIT_LE in ctype or ds.file_meta.TransferSyntaxUID in ctype, ctype
        if EXPLICIT_LE in ctype:
            pixels = np.frombuffer(body, dtype=ds.pixel_array.dtype.newbyteorder("<"))
            assert np.array_equal(
                pixels.reshape(ds.pixel_array.shape[-2:]), ds.pixel_array.reshape(-1, *ds.pixel_array.shape[-2:])[0]
            )


def test_old_media_type_names_are_understood(client: httpx.Client) -> None:
    _, st, se, sop = store_file(client, "MR_small_RLE.dcm")
    url = f"/studies/{st}/series/{se}/instances/{sop}/frames/1"
    response = client.get(url, headers={"Accept": 'multipart/related; type="image/x-dicom-rle"'})
    assert response.status_code == 200
    assert "1.2.840.10008.1.2.5" in split_multipart(response)[0][0]


@pytest.fixture(scope="module")
def small_image(server) -> str:  # type: ignore[no-untyped-def]
    """A 16x16 instance of 3 frames: any large rendering of it is an upscale."""
    with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
        study, series, sop = generate_uid(), generate_uid(), generate_uid()
        assert stow(http, [make_instance(study=study, series=series, sop=sop, frames=3)]).status_code == 200
    return f"/studies/{study}/series/{series}/instances/{sop}"


@pytest.mark.parametrize(
    ("suffix", "params", "needle"),
    [
        ("/rendered", {"viewport": "100000,100000"}, "8192"),  # grew a worker past 6.5 GB
        ("/rendered", {"viewport": "8193,16"}, "8192"),
        ("/rendered", {"viewport": "16,8193,0,0,16,16"}, "8192"),
        ("/rendered", {"viewport": "5000,5000"}, "4096x4096"),
        ("/thumbnail", {"viewport": "100000,100000"}, "8192"),
        ("/frames/1/rendered", {"viewport": "1" * 5000 + ",1"}, "8192"),
        ("/rendered", {"quality": "¹"}, "quality"),  # '¹'.isdigit() is True, int('¹') raises: a 500
        ("/rendered", {"quality": "1" * 5000}, "quality"),
        ("/rendered", {"viewport": "¹,¹"}, "viewport"),
        ("/frames/¹/rendered", {}, "frame number"),
        ("/frames/" + "1" * 5000 + "/rendered", {}, "frame number"),
        ("/rendered", {"window": "40," + "4" * 5000}, "window"),
    ],
)
def test_rendering_parameters_past_their_bounds_are_400_naming_the_bound(
    client: httpx.Client, small_image: str, suffix: str, params: dict[str, str], needle: str
) -> None:
    response = client.get(small_image + suffix, params=params)
    assert response.status_code == 400, (suffix, str(params)[:80], response.status_code)
    assert needle in response.json()["message"]


def test_rendering_up_to_the_bound_is_drawn(client: httpx.Client, small_image: str) -> None:
    response = client.get(small_image + "/rendered", params={"viewport": "8192,64"}, headers={"Accept": "image/png"})
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (64, 64)  # fits the box, keeping the aspect


def test_frame_lists_refuse_repeats_and_numbers_int_cannot_read(client: httpx.Client, small_image: str) -> None:
    """frames/1,1,…,1 built a 419 MB answer of one 4 MB frame; a 5000-item list was accepted."""
    accept = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    repeated = client.get(small_image + "/frames/" + ",".join(["1"] * 100), headers=accept)
    assert repeated.status_code == 400 and "more than once" in repeated.json()["message"]
    assert client.get(small_image + "/frames/2,3,2", headers=accept).status_code == 400
    long_list = client.get(small_image + "/frames/" + ",".join(str(n) for n in range(1, 5001)), headers=accept)
    assert long_list.status_code == 404 and "3 frame" in long_list.json()["message"]
    huge = client.get(small_image + "/frames/" + "9" * 5000, headers=accept)
    assert huge.status_code == 400 and "10 digits" in huge.json()["message"]
    assert client.get(small_image + "/frames/١", headers=accept).status_code == 400  # not an ASCII digit


def test_several_frames_stream_part_by_part(client: httpx.Client) -> None:
    """A whole multi-frame instance in one list is fine: sent a frame at a time, never joined in memory."""
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    data = make_instance(study=study, series=series, sop=sop, frames=40, rows=128, columns=128)  # 1.3 MB
    assert stow(client, [data]).status_code == 200
    base = f"/studies/{study}/series/{series}/instances/{sop}"
    pixels = pydicom.dcmread(io.BytesIO(data)).PixelData
    size = 128 * 128 * 2
    numbers = list(range(40, 0, -1))
    for accept in (
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
        'multipart/related; type="image/jls"',  # encoded on request, frame by frame
    ):
        with client.stream("GET", f"{base}/frames/{','.join(map(str, numbers))}", headers={"Accept": accept}) as answer:
            assert answer.status_code == 200
            assert answer.headers.get("transfer-encoding") == "chunked" and "content-length" not in answer.headers
            answer.read()
        parts = split_multipart(answer)
        assert len(parts) == 40
        if "transfer-syntax=*" in accept:
            assert [body for _, body in parts] == [pixels[(n - 1) * size : n * size] for n in numbers]
    whole = client.get(
        f"{base}/bulkdata/7FE00010", headers={"Accept": "multipart/related; type=application/octet-stream"}
    )
    assert whole.headers.get("transfer-encoding") == "chunked"
    assert [body for _, body in split_multipart(whole)] == [pixels]


def test_encapsulated_pixel_data_as_bulk_data_streams_its_frames(client: httpx.Client) -> None:
    """A file over 1 MB: its frames are streamed; a small one is answered whole, in one read."""
    source = pydicom.dcmread(get_testdata_file("emri_small_jpeg_2k_lossless.dcm"))
    frames = list(generate_frames(source.PixelData, number_of_frames=int(source.NumberOfFrames)))
    for expected, streamed in ((frames, False), (frames * 40, True)):  # 400 frames: about 1.5 MB
        source.PixelData = encapsulate(expected)
        source.NumberOfFrames = len(expected)
        source.StudyInstanceUID, source.SeriesInstanceUID = generate_uid(), generate_uid()
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        out = io.BytesIO()
        source.save_as(out, enforce_file_format=True)
        assert stow(client, [out.getvalue()]).status_code == 200
        url = (
            f"/studies/{source.StudyInstanceUID}/series/{source.SeriesInstanceUID}"
            f"/instances/{source.SOPInstanceUID}/bulkdata/7FE00010"
        )
        answer = client.get(url, headers={"Accept": "multipart/related; type=application/octet-stream"})
        assert answer.status_code == 200
        assert (answer.headers.get("transfer-encoding") == "chunked") is streamed
        assert [body for _, body in split_multipart(answer)] == expected
