"""HTJ2K copies decode to exactly the original pixels, for every pydicom-data file that gets one."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from aperture.dicom.htj2k import copy_problem, decode_frame, decomposition_levels, encode_frame
from tests.data import PYDICOM_DATA


def _frames(ds: pydicom.Dataset) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return pixels if frames > 1 else pixels[np.newaxis]


def _copyable() -> list[Path]:
    chosen = []
    for path in PYDICOM_DATA:
        try:
            ds = pydicom.dcmread(path)
            if copy_problem(ds, str(ds.file_meta.TransferSyntaxUID)) is None:
                _frames(ds)
                chosen.append(path)
        except Exception:
            continue
    return chosen


COPYABLE = _copyable()


def test_a_fair_share_of_pydicom_data_gets_a_copy() -> None:
    assert len(COPYABLE) >= 40


@pytest.mark.parametrize("path", COPYABLE, ids=lambda p: p.name)
def test_copy_decodes_to_the_original_pixels(path: Path) -> None:
    ds = pydicom.dcmread(path)
    for number, frame in enumerate(_frames(ds), start=1):
        codestream = encode_frame(frame)
        assert codestream[:4] == b"\xff\x4f\xff\x51", "a J2K codestream (SOC, SIZ)"
        decoded = decode_frame(codestream)
        assert decoded.shape == frame.shape, number
        assert np.array_equal(decoded.astype(frame.dtype), frame), f"frame {number} differs"


def test_rpcl_with_tlm_and_enough_levels() -> None:
    frame = (np.arange(512 * 512, dtype=np.uint16) % 4096).reshape(512, 512)
    codestream = encode_frame(frame)
    assert b"\xff\x55" in codestream, "a TLM marker segment"
    cod = codestream.index(b"\xff\x52")
    progression, levels = codestream[cod + 5], codestream[cod + 9]
    assert progression == 2, "RPCL"
    assert levels == decomposition_levels(512, 512) >= 3
    assert 512 >> levels <= 64


def test_what_gets_no_copy_says_why() -> None:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("JPEG-lossy.dcm"))
    assert "lossy" in (copy_problem(ds, "1.2.840.10008.1.2.4.51") or "")
