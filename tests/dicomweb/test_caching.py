"""Strong ETags derived from content, If-None-Match → 304, byte-identical repeats, gzip for JSON."""

from __future__ import annotations

import json

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.helpers import make_instance, stow

MULTIPART_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MULTIPART_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture
def instance(client: httpx.Client) -> dict[str, str]:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    data = make_instance(study=study, series=series, sop=sop, frames=2, rows=32, columns=32)
    assert stow(client, [data]).status_code == 200
    base = f"/studies/{study}/series/{series}/instances/{sop}"
    return {"study": study, "series": series, "sop": sop, "base": base}


@pytest.mark.parametrize(
    ("suffix", "accept"),
    [
        ("", MULTIPART_DICOM),
        ("", "application/dicom"),
        ("/metadata", "application/dicom+json"),
        ("/frames/1,2", MULTIPART_FRAMES),
        ("/rendered", "image/png"),
        ("/bulkdata/7FE00010", "application/octet-stream"),
        ("/bulkdata/7FE00010", "multipart/related; type=application/octet-stream"),
    ],
)
def test_repeats_are_byte_identical_and_if_none_match_gives_304(
    client: httpx.Client, instance: dict[str, str], suffix: str, accept: str
) -> None:
    url = instance["base"] + suffix
    first = client.get(url, headers={"Accept": accept, "Accept-Encoding": "identity"})
    second = client.get(url, headers={"Accept": accept, "Accept-Encoding": "identity"})
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('"') and not tag.startswith("W/"), "a strong validator"
    assert second.headers["etag"] == tag
    assert second.content == first.content, "multipart boundaries come from the content, not chance"
    again = client.get(url, headers={"Accept": accept, "If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert client.get(url, headers={"Accept": accept, "If-None-Match": '"something-else"'}).status_code == 200


def test_etags_follow_content_not_time(client: httpx.Client) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    data = make_instance(study=study, series=series, sop=sop)
    url = f"/studies/{study}/series/{series}/instances/{sop}"
    assert stow(client, [data]).status_code == 200
    before = client.get(url, headers={"Accept": "application/dicom"}).headers["etag"]
    metadata_before = client.get(url + "/metadata").headers["etag"]
    assert client.delete(f"/studies/{study}").status_code == 204
    assert stow(client, [data]).status_code == 200  # the same bytes again, later
    assert client.get(url, headers={"Accept": "application/dicom"}).headers["etag"] == before
    assert client.get(url + "/metadata").headers["etag"] == metadata_before


def test_study_metadata_etag_changes_when_the_study_does(client: httpx.Client, instance: dict[str, str]) -> None:
    url = f"/studies/{instance['study']}/metadata"
    before = client.get(url).headers["etag"]
    assert stow(client, [make_instance(study=instance["study"])]).status_code == 200
    after = client.get(url)
    assert after.headers["etag"] != before
    assert client.get(url, headers={"If-None-Match": before}).status_code == 200


def test_json_is_gzipped_when_accepted(client: httpx.Client, instance: dict[str, str]) -> None:
    url = f"/studies/{instance['study']}/metadata"
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    with httpx.Client(base_url=str(client.base_url), timeout=30) as raw:
        compressed = raw.send(raw.build_request("GET", url, headers={"Accept-Encoding": "gzip"}), stream=True)
        body = compressed.read()  # httpx decodes; the header says what went over the wire
        assert compressed.headers["content-encoding"] == "gzip"
        assert compressed.headers["vary"] == "Accept, Accept-Encoding"  # JSON or XML by Accept, too
        assert json.loads(body) == plain.json()
        assert compressed.headers["etag"] != plain.headers["etag"], "each encoding has its own validator"
        gz_tag = compressed.headers["etag"]
    assert client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": gz_tag}).status_code == 304
    qido = client.get("/studies", params={"StudyInstanceUID": instance["study"]}, headers={"Accept-Encoding": "gzip"})
    assert qido.status_code == 200 and qido.json()
