"""WADO-URI (PS3.18 §9): `GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…`."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from tests.conftest import ApertureServer
from tests.helpers import make_instance, sample_with_new_uids, stow

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"


@dataclass
class Stored:
    data: bytes
    study: str
    series: str
    sop: str

    def params(self, **extra: str) -> dict[str, str]:
        return {"requestType": "WADO", "studyUID": self.study, "seriesUID": self.series, "objectUID": self.sop, **extra}


def store(client: httpx.Client, data: bytes) -> Stored:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    response = stow(client, [data])
    assert response.status_code == 200, response.text
    return Stored(data, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


@pytest.fixture
def wado(server: ApertureServer) -> Iterator[httpx.Client]:
    """A client at the server root, where /wado lives."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture
def ct(client: httpx.Client) -> Stored:
    return store(client, sample_with_new_uids("CT_small.dcm"))  # 128 x 128, Explicit VR Little Endian


def image_of(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def pixels(data: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(data)).pixel_array


# --- Retrieve DICOM Instance (§9.4) ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_dicom_is_the_stored_bytes_by_default_for_little_endian_and_lossy_files(
    wado: httpx.Client, client: httpx.Client, name: str
) -> None:
    """Explicit VR Little Endian is the default (§9.4.2.4); a lossy JPEG stays as stored, as in WADO-RS."""
    stored = store(client, sample_with_new_uids(name))
    response = wado.get("/wado", params=stored.params(contentType="application/dicom"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"  # no transfer-syntax parameter (§9.1.3)
    assert response.content == stored.data


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm"])
def test_dicom_in_its_own_transfer_syntax_is_the_stored_bytes(
    wado: httpx.Client, client: httpx.Client, name: str
) -> None:
    stored = store(client, sample_with_new_uids(name))
    syntax = pydicom.dcmread(io.BytesIO(stored.data)).file_meta.TransferSyntaxUID
    response = wado.get("/wado", params=stored.params(contentType="application/dicom", transferSyntax=syntax))
    assert response.status_code == 200, response.text
    assert response.content == stored.data


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm"])
def test_dicom_without_transfer_syntax_is_explicit_little_endian(
    wado: httpx.Client, client: httpx.Client, name: str
) -> None:
    """§9.4.2.4: without transferSyntax the payload is in Explicit VR Little Endian."""
    stored = store(client, sample_with_new_uids(name))
    response = wado.get("/wado", params=stored.params(contentType="application/dicom"))
    assert response.status_code == 200, response.text
    ds = pydicom.dcmread(io.BytesIO(response.content))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert ds.SOPInstanceUID == stored.sop
    assert np.array_equal(ds.pixel_array, pixels(stored.data))


def test_transfer_syntax_parameter_transcodes_or_names_what_is_available(wado: httpx.Client, ct: Stored) -> None:
    response = wado.get("/wado", params=ct.params(contentType="application/dicom", transferSyntax=IMPLICIT_LE))
    assert response.status_code == 200, response.text
    ds = pydicom.dcmread(io.BytesIO(response.content))
    assert ds.file_meta.TransferSyntaxUID == IMPLICIT_LE
    assert np.array_equal(ds.pixel_array, pixels(ct.data))

    jpeg2000 = "1.2.840.10008.1.2.4.90"  # a valid syntax Aperture does not encode: 406 (§9.4.2.4)
    refused = wado.get("/wado", params=ct.params(contentType="application/dicom", transferSyntax=jpeg2000))
    assert refused.status_code == 406, refused.text
    assert EXPLICIT_LE in refused.json()["message"]

    for bad in ("abc", "1.2..3", ""):
        response = wado.get("/wado", params=ct.params(contentType="application/dicom", transferSyntax=bad))
        assert response.status_code == 400, (bad, response.text)
        assert "transferSyntax" in response.json()["message"]


def test_dicom_answers_304_to_its_etag_and_head_like_get(wado: httpx.Client, ct: Stored) -> None:
    params = ct.params(contentType="application/dicom")
    first = wado.get("/wado", params=params)
    assert first.status_code == 200
    again = wado.get("/wado", params=params, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    head = wado.head("/wado", params=params)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == "application/dicom"
    assert head.headers["etag"] == first.headers["etag"]


# --- Retrieve Rendered Instance (§9.5) ------------------------------------------------------------


def test_default_is_a_jpeg_of_the_stored_size(wado: httpx.Client, ct: Stored) -> None:
    """§9.3: no contentType and Accept */* select image/jpeg."""
    response = wado.get("/wado", params=ct.params(), headers={"Accept": "*/*"})
    assert response.headers["content-type"] == "image/jpeg"
    image = image_of(response)
    assert (image.format, image.size) == ("JPEG", (128, 128))
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
    assert image_of(wado.get("/wado", params=ct.params(), headers={"Accept": browser})).format == "JPEG"
    png = wado.get("/wado", params=ct.params(), headers={"Accept": "image/png"})
    assert image_of(png).format == "PNG"
    dicom = wado.get("/wado", params=ct.params(), headers={"Accept": "application/dicom"})
    assert dicom.status_code == 200 and dicom.content == ct.data


def test_content_type_list_takes_the_first_supported(wado: httpx.Client, ct: Stored) -> None:
    response = wado.get("/wado", params=ct.params(contentType="image/jp2,image/png"))
    assert image_of(response).format == "PNG"
    weighted = wado.get("/wado", params=ct.params(contentType="image/png;q=0.5,image/jpeg"))
    assert image_of(weighted).format == "JPEG"


def test_rows_and_columns_keep_the_aspect_ratio(wado: httpx.Client, client: httpx.Client) -> None:
    """§9.5.2.5: both are maxima; one alone fixes that side and the other follows the aspect ratio."""
    wide = store(client, make_instance(rows=32, columns=64))
    for extra, size in (
        ({}, (64, 32)),
        ({"rows": "16"}, (32, 16)),
        ({"columns": "16"}, (16, 8)),
        ({"rows": "16", "columns": "16"}, (16, 8)),
        ({"rows": "64", "columns": "256"}, (128, 64)),
    ):
        image = image_of(wado.get("/wado", params=wide.params(contentType="image/png", **extra)))
        assert image.size == size, (extra, image.size)


def test_region_selects_a_normalized_part_of_the_image(wado: httpx.Client, ct: Stored) -> None:
    quarter = image_of(wado.get("/wado", params=ct.params(contentType="image/png", region="0,0,0.5,0.5")))
    assert quarter.size == (64, 64)
    scaled = wado.get("/wado", params=ct.params(contentType="image/png", region="0.5,0.5,1,1", columns="32"))
    assert image_of(scaled).size == (32, 32)
    whole = np.asarray(image_of(wado.get("/wado", params=ct.params(contentType="image/png"))))
    assert np.array_equal(np.asarray(quarter), whole[:64, :64])


def test_window_parameters_change_the_pixels(wado: httpx.Client, ct: Stored) -> None:
    def drawn(**extra: str) -> np.ndarray:
        return np.asarray(image_of(wado.get("/wado", params=ct.params(contentType="image/png", **extra))))

    plain = drawn()
    narrow = drawn(windowCenter="40", windowWidth="80")
    wide = drawn(windowCenter="40", windowWidth="4000")
    assert not np.array_equal(plain, narrow)
    assert not np.array_equal(narrow, wide)
    assert np.array_equal(narrow, drawn(windowCenter="40.0", windowWidth="80"))


def test_frame_number_picks_a_frame_of_a_multi_frame_image(
    wado: httpx.Client, client: httpx.Client, server: ApertureServer
) -> None:
    mri = store(client, sample_with_new_uids("emri_small.dcm"))  # 10 frames
    first = wado.get("/wado", params=mri.params(contentType="image/png"))
    fifth = wado.get("/wado", params=mri.params(contentType="image/png", frameNumber="5"))
    assert np.array_equal(np.asarray(image_of(first)), np.asarray(image_of(
        wado.get("/wado", params=mri.params(contentType="image/png", frameNumber="1")))))  # fmt: skip
    assert first.content != fifth.content
    rendered = client.get(
        f"/studies/{mri.study}/series/{mri.series}/instances/{mri.sop}/frames/5/rendered",
        headers={"Accept": "image/png"},
    )
    assert fifth.content == rendered.content  # one drawing pipeline for WADO-RS and WADO-URI
    for bad in ("11", "0", "-1", "x", "1.5"):
        response = wado.get("/wado", params=mri.params(frameNumber=bad))
        assert response.status_code == 400, (bad, response.text)
        assert "frameNumber" in response.json()["message"]
    assert "10 frame" in wado.get("/wado", params=mri.params(frameNumber="11")).json()["message"]


def test_image_quality_changes_the_jpeg(wado: httpx.Client, client: httpx.Client) -> None:
    noisy = np.random.default_rng(7).integers(0, 4096, (64, 64), dtype=np.uint16)
    stored = store(client, make_instance(rows=64, columns=64, extra={"PixelData": noisy.tobytes()}))
    low = wado.get("/wado", params=stored.params(imageQuality="10"))
    high = wado.get("/wado", params=stored.params(imageQuality="95"))
    assert image_of(low).format == image_of(high).format == "JPEG"
    assert len(low.content) < len(high.content)


def test_rendered_head_and_etag(wado: httpx.Client, ct: Stored) -> None:
    params = ct.params(contentType="image/png", rows="64")
    first = wado.get("/wado", params=params)
    assert first.status_code == 200
    assert wado.get("/wado", params=params, headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    head = wado.head("/wado", params=params)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"] == "image/png"


def test_unsupported_optional_parameters_are_ignored_with_a_warning(wado: httpx.Client, ct: Stored) -> None:
    """§8.3: unsupported query parameters are ignored; the Warning header says which."""
    for name, value in (("annotation", "patient"), ("charset", "UTF-8"), ("presentationUID", "1.2.3")):
        response = wado.get("/wado", params=ct.params(**{name: value}))
        assert response.status_code == 200, (name, response.text)
        assert name in response.headers.get("warning", ""), name
    plain = wado.get("/wado", params=ct.params(contentType="application/dicom", charset="ISO_IR 192"))
    assert plain.status_code == 200 and plain.content == ct.data


def test_an_instance_without_pixels_is_406_as_an_image_and_served_as_dicom(
    wado: httpx.Client, client: httpx.Client
) -> None:
    ds = pydicom.dcmread(io.BytesIO(make_instance()))
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    stored = store(client, out.getvalue())
    response = wado.get("/wado", params=stored.params())
    assert response.status_code == 406, response.text
    assert "contentType=application/dicom" in response.json()["message"]
    assert wado.get("/wado", params=stored.params(contentType="application/dicom")).content == stored.data


# --- errors ---------------------------------------------------------------------------------------


def without(params: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in params.items() if k != name}


def test_malformed_requests_are_400_with_a_message_that_names_the_parameter(wado: httpx.Client, ct: Stored) -> None:
    base = ct.params()
    cases: list[tuple[object, str]] = [
        (without(base, "requestType"), "requestType"),
        ({**base, "requestType": "WADO-RS"}, "requestType"),
        ({**base, "requestType": "wado"}, "requestType"),
        (without(base, "studyUID"), "studyUID"),
        (without(base, "seriesUID"), "seriesUID"),
        (without(base, "objectUID"), "objectUID"),
        ({**base, "studyUID": "1.2.abc/../x"}, "studyUID"),
        ({**base, "objectUID": ""}, "objectUID"),
        ({**base, "rows": "abc"}, "rows"),
        ({**base, "rows": "0"}, "rows"),
        ({**base, "columns": "-5"}, "columns"),
        ({**base, "columns": "100000"}, "columns"),
        ({**base, "frameNumber": "0"}, "frameNumber"),
        ({**base, "imageQuality": "0"}, "imageQuality"),
        ({**base, "imageQuality": "101"}, "imageQuality"),
        ({**base, "imageQuality": "high"}, "imageQuality"),
        ({**base, "windowCenter": "40"}, "windowWidth"),
        ({**base, "windowWidth": "400"}, "windowCenter"),
        ({**base, "windowCenter": "abc", "windowWidth": "400"}, "windowCenter"),
        ({**base, "windowCenter": "40", "windowWidth": "0"}, "window"),
        ({**base, "windowCenter": "40", "windowWidth": "400", "presentationUID": "1.2.3"}, "presentation"),
        ({**base, "contentType": "application/dicom", "windowCenter": "40", "windowWidth": "400"}, "application/dicom"),
        ({**base, "region": "0,0,1"}, "region"),
        ({**base, "region": "0.5,0,0.2,1"}, "region"),
        ({**base, "region": "0,0,1.5,1"}, "region"),
        ({**base, "contentType": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"}, "transferSyntax"),
        ({**base, "contentType": "image/jpeg; charset=utf-8"}, "charset"),
        ({**base, "contentType": "application/dicom,image/jpeg"}, "application/dicom"),
        ({**base, "anonymize": "no"}, "anonymize"),
        ({**base, "contentType": ""}, "contentType"),
        ({**base, "contentType": "jpeg"}, "contentType"),
        ({**base, "contentType": "application/dicom", "rows": "abc"}, "rows"),  # checked for either transaction
        ({**base, "contentType": "image/png", "transferSyntax": "x.y"}, "transferSyntax"),
        (list(base.items()) + [("objectUID", ct.sop)], "objectUID"),
        (list(base.items()) + [("rows", "10"), ("rows", "20")], "rows"),
    ]
    for params, word in cases:
        response = wado.get("/wado", params=params)  # type: ignore[arg-type]
        assert response.status_code == 400, (params, response.status_code, response.text)
        message = response.json()["message"]
        assert word in message, (params, message)


def test_anonymize_is_refused_because_deidentification_does_not_exist_yet(wado: httpx.Client, ct: Stored) -> None:
    for content_type in ("application/dicom", "image/jpeg"):
        response = wado.get("/wado", params=ct.params(contentType=content_type, anonymize="yes"))
        assert response.status_code == 400, response.text
        assert "de-identif" in response.json()["message"]


def test_unsupported_content_types_are_406(wado: httpx.Client, ct: Stored) -> None:
    for content_type in ("image/jp2", "text/html", "video/mpeg", "application/pdf"):
        response = wado.get("/wado", params=ct.params(contentType=content_type))
        assert response.status_code == 406, (content_type, response.text)
        assert "image/jpeg" in response.json()["message"]
    refused = wado.get("/wado", params=ct.params(), headers={"Accept": "text/html"})
    assert refused.status_code == 406, refused.text


def test_unknown_instance_is_404(wado: httpx.Client, ct: Stored) -> None:
    for name in ("studyUID", "seriesUID", "objectUID"):
        response = wado.get("/wado", params={**ct.params(), name: generate_uid()})
        assert response.status_code == 404, (name, response.text)
        dicom = wado.get("/wado", params={**ct.params(contentType="application/dicom"), name: generate_uid()})
        assert dicom.status_code == 404, (name, dicom.text)
