"""Rendered Study and Rendered Series (PS3.18 §10.4.1.1.3, Table 10.3-2: mandatory for an origin server).

The study below is stored out of order on purpose: the answer follows the index (series number,
then instance number), not the order of arrival. Its second series is one multi-frame instance,
rendered frame by frame; its third is a structured report, which has no image to draw.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from tests.helpers import make_instance, stow

MULTIPART_JPEG = 'multipart/related; type="image/jpeg"'
MULTIPART_PNG = 'multipart/related; type="image/png"'
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


@dataclass(frozen=True)
class Part:
    content_type: str
    location: str
    body: bytes


def split_parts(response: httpx.Response) -> list[Part]:
    """Each part's Content-Type, Content-Location and body, parsed with the standard library's MIME parser."""
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    assert message.is_multipart(), response.headers["content-type"]
    return [
        Part(str(p["Content-Type"]), str(p["Content-Location"]), p.get_payload(decode=True))
        for p in message.iter_parts()
    ]


def report(study: str, series: str) -> bytes:
    """A structured report in the study: an instance with no pixel data."""
    ds = pydicom.dcmread(io.BytesIO(make_instance(study=study, series=series, modality="SR", series_number=3)))
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "SamplesPerPixel", "PhotometricInterpretation"):  # fmt: skip
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.ValueType = "CONTAINER"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def study(server) -> dict[str, object]:  # type: ignore[no-untyped-def]
    uid = generate_uid()
    ct, cine, sr = generate_uid(), generate_uid(), generate_uid()
    slices = [generate_uid() for _ in range(3)]
    multiframe = generate_uid()
    parts = [
        report(uid, sr),
        make_instance(study=uid, series=cine, sop=multiframe, series_number=2, frames=3, rows=20, columns=20),
        *(
            make_instance(study=uid, series=ct, sop=sop, series_number=1, instance_number=n, rows=24, columns=32)
            for n, sop in reversed(list(enumerate(slices, start=1)))
        ),
    ]
    with httpx.Client(base_url=server.dicomweb, timeout=30) as http:
        assert stow(http, parts).status_code == 200
    return {"study": uid, "ct": ct, "cine": cine, "sr": sr, "slices": slices, "multiframe": multiframe}


def test_rendered_study_has_one_image_per_frame_in_index_order(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    response = client.get(f"/studies/{study['study']}/rendered", headers={"Accept": MULTIPART_JPEG})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(MULTIPART_JPEG + "; boundary=")
    parts = split_parts(response)
    base = f"{str(client.base_url).rstrip('/')}/studies/{study['study']}/series"
    expected = [f"{base}/{study['ct']}/instances/{sop}/rendered" for sop in study["slices"]] + [
        f"{base}/{study['cine']}/instances/{study['multiframe']}/frames/{n}/rendered" for n in (1, 2, 3)
    ]
    assert [p.location for p in parts] == expected, "series by number, instances by number, frames in order; no SR"
    assert {p.content_type for p in parts} == {"image/jpeg"}
    sizes = [Image.open(io.BytesIO(p.body)).size for p in parts]
    assert [(Image.open(io.BytesIO(p.body)).format) for p in parts] == ["JPEG"] * 6
    assert sizes == [(32, 24)] * 3 + [(20, 20)] * 3
    # Each part is what the instance (or frame) resource gives: the same drawing, the same cache.
    for part in parts:
        alone = client.get(part.location, headers={"Accept": "image/jpeg"})
        assert alone.status_code == 200 and alone.content == part.body


def test_rendered_series_and_its_parameters(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    series = f"/studies/{study['study']}/series/{study['ct']}"
    params = {"viewport": "16,12", "window": "100,50,linear"}
    response = client.get(f"{series}/rendered", params={**params, "accept": MULTIPART_PNG})
    assert response.status_code == 200, response.text
    parts = split_parts(response)
    assert len(parts) == 3 and {p.content_type for p in parts} == {"image/png"}
    for sop, part in zip(study["slices"], parts, strict=True):
        image = Image.open(io.BytesIO(part.body))
        assert (image.format, image.size) == ("PNG", (16, 12))
        alone = client.get(f"{series}/instances/{sop}/rendered", params=params, headers={"Accept": "image/png"})
        assert alone.content == part.body, "viewport and window are applied to every part as to one instance"
    low = client.get(f"{series}/rendered", params={"quality": "5"}, headers={"Accept": MULTIPART_JPEG})
    high = client.get(f"{series}/rendered", params={"quality": "95"}, headers={"Accept": MULTIPART_JPEG})
    assert all(len(a.body) < len(b.body) for a, b in zip(split_parts(low), split_parts(high), strict=True))
    cine = client.get(f"/studies/{study['study']}/series/{study['cine']}/rendered", headers={"Accept": "*/*"})
    assert cine.headers["content-type"].startswith(MULTIPART_JPEG)
    assert len(split_parts(cine)) == 3, "a multi-frame instance is drawn one frame per part"


def test_rendered_study_is_streamed_and_revalidated(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    url = f"/studies/{study['study']}/rendered"
    with client.stream("GET", url, headers={"Accept": MULTIPART_JPEG}) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers, "parts are drawn as they are sent, not all first"
        assert response.headers.get("transfer-encoding") == "chunked"
        first = next(response.iter_bytes())
        assert first.startswith(b"--aperture-")
    tag = response.headers["etag"]
    assert client.get(url, headers={"Accept": MULTIPART_JPEG, "If-None-Match": tag}).status_code == 304
    head = client.head(url, headers={"Accept": MULTIPART_JPEG})
    assert head.status_code == 200 and head.content == b""
    assert (head.headers["etag"], head.headers["content-type"]) == (tag, response.headers["content-type"])
    png = client.head(url, headers={"Accept": MULTIPART_PNG})
    assert png.headers["etag"] != tag, "the media type is part of the representation"
    elsewhere = client.get(url, headers={"Accept": MULTIPART_JPEG, "Host": "pacs.example"})
    assert split_parts(elsewhere)[0].location.startswith("http://pacs.example/dicom-web/studies/")
    assert elsewhere.headers["etag"] != tag, "so is the base URL written in each Content-Location"


@pytest.mark.parametrize(
    "accept",
    [
        "image/jpeg",  # single part: for one instance or frame only (PS3.18 §10.4.4)
        "image/*",
        'multipart/related; type="image/jp2"',
        'multipart/related; type="application/dicom"',
        "application/dicom",
    ],
)
def test_rendered_study_refuses_what_it_cannot_send(client: httpx.Client, study: dict, accept: str) -> None:  # type: ignore[type-arg]
    response = client.get(f"/studies/{study['study']}/rendered", headers={"Accept": accept})
    assert response.status_code == 406
    assert 'multipart/related; type="image/jpeg"' in response.json()["message"]


def test_rendered_study_errors(client: httpx.Client, study: dict) -> None:  # type: ignore[type-arg]
    accept = {"Accept": MULTIPART_JPEG}
    unknown = client.get(f"/studies/{generate_uid()}/rendered", headers=accept)
    assert unknown.status_code == 404 and "not on this server" in unknown.text
    assert client.get(f"/studies/{study['study']}/series/{generate_uid()}/rendered", headers=accept).status_code == 404
    report_only = client.get(f"/studies/{study['study']}/series/{study['sr']}/rendered", headers=accept)
    assert report_only.status_code == 404 and "pixel data" in report_only.text
    for params, word in (
        ({"quality": "500"}, "quality"),
        ({"viewport": "0,0"}, "viewport"),
        ({"window": "x"}, "window"),
    ):
        bad = client.get(f"/studies/{study['study']}/rendered", params=params, headers=accept)
        assert bad.status_code == 400 and word in bad.text.lower(), bad.text


def test_an_instance_that_cannot_be_drawn_is_left_out(client: httpx.Client) -> None:
    study, mixed, alone = generate_uid(), generate_uid(), generate_uid()
    good, bad = generate_uid(), generate_uid()
    odd = {"PhotometricInterpretation": "HSV"}  # retired, and not drawn by Aperture
    parts = [
        make_instance(study=study, series=mixed, sop=bad, instance_number=1, extra=odd),
        make_instance(study=study, series=mixed, sop=good, instance_number=2),
        make_instance(study=study, series=alone, sop=generate_uid(), series_number=2, extra=odd),
    ]
    assert stow(client, parts).status_code == 200
    accept = {"Accept": MULTIPART_JPEG}
    single = client.get(f"/studies/{study}/series/{mixed}/instances/{bad}/rendered")
    assert single.status_code == 406 and "HSV" in single.text
    series = client.get(f"/studies/{study}/series/{mixed}/rendered", headers=accept)
    assert series.status_code == 200
    assert [p.location.rsplit("/", 2)[-2] for p in split_parts(series)] == [good]
    refused = client.get(f"/studies/{study}/series/{alone}/rendered", headers=accept)
    assert refused.status_code == 406 and "HSV" in refused.text, "nothing to send: the refusal, as for one instance"
