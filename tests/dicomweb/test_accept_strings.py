"""The exact Accept headers that OHIF 3.13, dicomweb-client (and Slicer, which uses it) send.

Each must get a 200 whose parts all carry a media type and `transfer-syntax=` as PS3.18 §8.7.3
requires; quoting, q-values and lists are parsed per RFC 9110.
"""

from __future__ import annotations

import httpx
import pytest

from tests.dicomweb.test_wado import split_multipart
from tests.helpers import store_sample

J2K = "emri_small_jpeg_2k_lossless.dcm"


@pytest.fixture(scope="module")
def compressed(server) -> str:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.dicomweb) as http:
        _, url = store_sample(http, J2K)
    return url.split("/dicom-web", 1)[1]


CASES = [
    # (who, resource suffix, Accept header)
    ("OHIF 3.13 frames", "/frames/1", "multipart/related; type=application/octet-stream; transfer-syntax=*"),
    ("OHIF 3.13 bulkdata", "/bulkdata/7FE00010", "multipart/related; type=application/octet-stream; transfer-syntax=*"),
    ("OHIF 3.13 metadata", "/metadata", "application/dicom+json"),
    ("OHIF 3.13 rendered", "/rendered", "image/jpeg"),
    ("dicomweb-client instance", "", 'multipart/related; type="application/dicom"'),
    ("dicomweb-client instance any syntax", "", 'multipart/related; type="application/dicom"; transfer-syntax=*'),
    ("dicomweb-client frames", "/frames/1,2", 'multipart/related; type="application/octet-stream"'),
    ("dicomweb-client frames list",  "/frames/1",
     'multipart/related; type="image/jp2", multipart/related; type="application/octet-stream"'),
    ("dicomweb-client metadata", "/metadata", "application/dicom+json, application/json"),
    ("Slicer series retrieve (via dicomweb-client)", "", 'multipart/related; type="application/dicom"'),
    ("q-values prefer octet-stream", "/frames/1",
     'multipart/related; type="image/jp2"; q=0.5, multipart/related; type="application/octet-stream"; q=0.9'),
    ("any", "/frames/1", "*/*"),
]  # fmt: skip


@pytest.mark.parametrize(("who", "suffix", "accept"), CASES, ids=[c[0] for c in CASES])
def test_client_accept_strings(client: httpx.Client, compressed: str, who: str, suffix: str, accept: str) -> None:
    response = client.get(compressed + suffix, headers={"Accept": accept})
    assert response.status_code == 200, f"{who}: {response.text}"
    content_type = response.headers["content-type"]
    if content_type.startswith("multipart/related"):
        parts = split_multipart(response)
        assert parts
        assert all("transfer-syntax=" in ctype for ctype, _ in parts), parts[0][0]
        if "q=0.9" in accept:
            assert all(ctype.startswith("application/octet-stream") for ctype, _ in parts)
            assert all("1.2.840.10008.1.2.1" in ctype for ctype, _ in parts)


def test_an_accept_header_past_its_bounds_is_400_naming_the_bound(client: httpx.Client, compressed: str) -> None:
    """Each distinct header was parsed and kept (512 of them, up to 1 MB each): now 4096 characters, 32 ranges."""
    long_header = "application/dicom+json" + "; x=y" * 1000
    response = client.get("/studies", headers={"Accept": long_header})
    assert response.status_code == 400 and "4096" in response.json()["message"]
    many = ", ".join(f"image/x-{n}" for n in range(33)) + ", */*"
    response = client.get(compressed + "/metadata", headers={"Accept": many})
    assert response.status_code == 400 and "32" in response.json()["message"]
    response = client.get("/studies", params={"accept": long_header})
    assert response.status_code == 400
    assert client.get("/studies", headers={"Accept": ", ".join(["application/dicom+json"] * 32)}).status_code == 200
