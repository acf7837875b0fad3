"""Encoding frames on request: the encoders must not take the server down on small or odd frames."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder

from aperture.dicom.encode import RLE_LOSSLESS, encode_frame
from tests.helpers import make_instance


@pytest.mark.parametrize(
    ("shape", "dtype"), [((3, 3, 3), np.uint8), ((1, 1), np.uint16), ((5, 3, 3), np.uint16), ((64, 64), np.int16)]
)
def test_rle_frames_round_trip_even_when_tiny(shape: tuple[int, ...], dtype: type) -> None:
    """gdcm's RLE encoder aborted the whole process (an uncaught C++ assertion) on a 3x3 RGB frame."""
    import io

    import pydicom

    rng = np.random.default_rng(13)
    info = np.iinfo(dtype)
    pixels = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    ds = pydicom.dcmread(io.BytesIO(make_instance()))
    ds.PhotometricInterpretation = "RGB" if len(shape) == 3 else "MONOCHROME2"
    codestream = encode_frame(pixels, RLE_LOSSLESS, ds)
    decoded, _ = get_decoder(RLE_LOSSLESS).as_array(
        encapsulate([codestream]),
        rows=shape[0],
        columns=shape[1],
        samples_per_pixel=3 if len(shape) == 3 else 1,
        bits_allocated=pixels.dtype.itemsize * 8,
        bits_stored=pixels.dtype.itemsize * 8,
        pixel_representation=1 if pixels.dtype.kind == "i" else 0,
        photometric_interpretation=ds.PhotometricInterpretation,
        number_of_frames=1,
        planar_configuration=0,
    )
    assert np.array_equal(decoded.reshape(shape), pixels)
