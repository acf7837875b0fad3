"""Frames in a lossless compressed syntax named by the client: encoded on request, exact, cached."""

from __future__ import annotations

import io

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders import RLELosslessDecoder

from tests.dicomweb.test_wado import split_multipart
from tests.helpers import store_sample


def _store(client: httpx.Client, name: str) -> tuple[pydicom.Dataset, str]:
    data, url = store_sample(client, name)
    return pydicom.dcmread(io.BytesIO(data)), url


def _decode(target: str, body: bytes, ds: pydicom.Dataset) -> np.ndarray:
    if target in ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"):
        return np.asarray(imagecodecs.htj2k_decode(body))
    if target == "1.2.840.10008.1.2.4.90":
        return np.asarray(imagecodecs.jpeg2k_decode(body))
    if target == "1.2.840.10008.1.2.4.80":
        return np.asarray(imagecodecs.jpegls_decode(body))
    options = {"rows": ds.Rows, "columns": ds.Columns, "samples_per_pixel": ds.SamplesPerPixel,
               "bits_allocated": ds.BitsAllocated, "bits_stored": ds.BitsAllocated,
               "pixel_representation": ds.PixelRepresentation,
               "photometric_interpretation": ds.PhotometricInterpretation, "number_of_frames": 1,
               "planar_configuration": 0}  # fmt: skip
    return RLELosslessDecoder.as_array(encapsulate([body]), **options)[0]


@pytest.mark.parametrize(
    ("accept", "target"),
    [
        ('multipart/related; type="image/jphc"', "1.2.840.10008.1.2.4.202"),
        ('multipart/related; type="image/jphc"; transfer-syntax=1.2.840.10008.1.2.4.201', "1.2.840.10008.1.2.4.201"),
        ("multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.202",
         "1.2.840.10008.1.2.4.202"),
        ('multipart/related; type="image/jp2"', "1.2.840.10008.1.2.4.90"),
        ('multipart/related; type="image/dicom-rle"', "1.2.840.10008.1.2.5"),
        ('multipart/related; type="image/jls"', "1.2.840.10008.1.2.4.80"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "US1_UNCR.dcm"])
def test_encoded_frames_decode_to_the_original(client: httpx.Client, name: str, accept: str, target: str) -> None:
    ds, url = _store(client, name)
    response = client.get(f"{url}/frames/1", headers={"Accept": accept})
    if target == "1.2.840.10008.1.2.4.80" and ds.PixelRepresentation == 1:
        assert response.status_code == 406, "JPEG-LS is not offered for signed pixels"
        assert "available by request" in response.json()["message"]
        return
    assert response.status_code == 200, response.text
    ((ctype, body),) = split_multipart(response)
    assert f"transfer-syntax={target}" in ctype
    pixels = ds.pixel_array if int(ds.get("NumberOfFrames", 1) or 1) == 1 else ds.pixel_array[0]
    assert np.array_equal(_decode(target, body, ds).astype(pixels.dtype).reshape(pixels.shape), pixels)
    again = client.get(f"{url}/frames/1", headers={"Accept": accept})
    assert again.content == response.content


def test_lossy_originals_are_not_re_encoded(client: httpx.Client) -> None:
    _, url = _store(client, "SC_rgb_jpeg_dcmtk.dcm")
    response = client.get(f"{url}/frames/1", headers={"Accept": 'multipart/related; type="image/jp2"'})
    assert response.status_code == 406
