"""Transfer syntax table, whole-file transcoding and single-frame decoding over pydicom-data."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pack_bits

from aperture.dicom.frames import build_frame_index, read_frames
from aperture.dicom.transcode import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    FRAME_MEDIA_TYPES,
    IMPLICIT_VR_LITTLE_ENDIAN,
    NATIVE_SYNTAXES,
    TranscodeError,
    available_targets,
    can_transcode,
    frame_media_type,
    transcode_file,
    transcode_frame,
)

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
SOURCE_SYNTAXES = {
    IMPLICIT_VR_LITTLE_ENDIAN, BIG_ENDIAN, DEFLATED, "1.2.840.10008.1.2.5",
    *(f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70, 80, 81, 90, 91, 201, 202, 203)),
}  # fmt: skip
# pydicom-data files in those syntaxes that no installed pydicom plugin can decode
# pydicom-data files that cannot be converted: no installed plugin decodes the first two; the
# last has no SOP Class / Instance UID, so it cannot be written as a Part-10 file.
UNCONVERTIBLE = {"JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm", "nested_priv_SQ.dcm"}
# What the conversion may change; everything else must survive untouched.
CHANGEABLE = {0x00280004, 0x00280006, 0x7FE00001, 0x7FE00002, 0x7FE00010}
_SWAPPED = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _read(path: str | Path | io.BytesIO, **kwargs: object) -> Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, **kwargs)
        except Exception:
            return None


def _decode(ds: Dataset) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ds.pixel_array


def _source_files() -> list[str]:
    found = []
    for path in sorted(get_testdata_files(), key=os.path.basename):
        ds = _read(path) if os.path.isfile(path) else None
        if ds is not None and "PixelData" in ds and ds.file_meta.get("TransferSyntaxUID") in SOURCE_SYNTAXES:
            found.append(path)
    return found


SOURCE_FILES = _source_files()
DECODABLE_FILES = [p for p in SOURCE_FILES if os.path.basename(p) not in UNCONVERTIBLE]


def _assert_same_attributes(before: Dataset, after: Dataset, *, big_endian: bool, top: bool = True) -> None:
    skip = CHANGEABLE if top else set()

    def kept(tag: int) -> bool:  # group lengths (gggg,0000) are retired and rightly dropped on write
        return tag not in skip and tag & 0xFFFF != 0

    assert {t for t in before.keys() if kept(t)} == {t for t in after.keys() if kept(t)}
    for elem in before:
        if not kept(elem.tag):
            continue
        other = after[elem.tag]
        if elem.VR == "SQ":
            assert len(elem.value) == len(other.value)
            for item_before, item_after in zip(elem.value, other.value, strict=True):
                _assert_same_attributes(item_before, item_after, big_endian=big_endian, top=False)
        elif big_endian and elem.VR in _SWAPPED and isinstance(elem.value, bytes):
            width = _SWAPPED[elem.VR]
            assert np.array_equal(np.frombuffer(elem.value, f">u{width}"), np.frombuffer(other.value, f"<u{width}")), (
                elem.tag
            )
        else:
            assert elem.value == other.value, elem.tag


@pytest.mark.parametrize("path", DECODABLE_FILES, ids=[os.path.basename(p) for p in DECODABLE_FILES])
def test_transcode_to_explicit_little_endian(path: str) -> None:
    original = _read(path)
    source_ts = original.file_meta.TransferSyntaxUID
    out = transcode_file(path, EXPLICIT_VR_LITTLE_ENDIAN)
    assert out[128:132] == b"DICM"
    result = _read(io.BytesIO(out))
    assert result is not None
    assert result.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
    # same instance, new encoding: the UIDs stay (the file meta is rebuilt from the data set)
    assert result.SOPInstanceUID == result.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert result.file_meta.MediaStorageSOPClassUID == original.SOPClassUID
    assert not result["PixelData"].is_undefined_length
    # lossy sources too: equal to pydicom's decode of the original (same decoder)
    assert np.array_equal(_decode(result), _decode(original))
    _assert_same_attributes(original, result, big_endian=source_ts == BIG_ENDIAN)
    if source_ts == JPEG_BASELINE and original.SamplesPerPixel == 3:
        assert result.PhotometricInterpretation == "RGB"


@pytest.mark.parametrize(
    "name", ["MR_small_jp2klossless.dcm", "SC_rgb_rle_2frame.dcm", "emri_small_big_endian.dcm", "image_dfl.dcm"]
)
def test_transcode_to_implicit_little_endian(name: str) -> None:
    path = get_testdata_file(name)
    result = _read(io.BytesIO(transcode_file(path, IMPLICIT_VR_LITTLE_ENDIAN)))
    assert result.file_meta.TransferSyntaxUID == IMPLICIT_VR_LITTLE_ENDIAN
    assert np.array_equal(_decode(result), _decode(_read(path)))


def test_explicit_to_implicit_and_back_is_lossless(tmp_path: Path) -> None:
    path = get_testdata_file("CT_small.dcm")
    implicit = tmp_path / "implicit.dcm"
    implicit.write_bytes(transcode_file(path, IMPLICIT_VR_LITTLE_ENDIAN))
    back = _read(io.BytesIO(transcode_file(implicit, EXPLICIT_VR_LITTLE_ENDIAN)))
    original = _read(path)
    assert np.array_equal(_decode(back), _decode(original))
    assert back.PatientName == original.PatientName
    assert back.ImagePositionPatient == original.ImagePositionPatient


@pytest.mark.parametrize("name", sorted(UNCONVERTIBLE))
def test_unconvertible_source_raises_transcode_error(name: str) -> None:
    with pytest.raises(TranscodeError, match="Could not convert from .* to Explicit VR Little Endian"):
        transcode_file(get_testdata_file(name), EXPLICIT_VR_LITTLE_ENDIAN)


def test_palette_lookup_tables_survive_big_endian_conversion() -> None:
    path = get_testdata_file("gdcm-US-ALOKA-16_big.dcm")
    result = _read(io.BytesIO(transcode_file(path, EXPLICIT_VR_LITTLE_ENDIAN)))
    original = _read(path)
    rgb_before = pydicom.pixels.apply_color_lut(_decode(original), original)
    rgb_after = pydicom.pixels.apply_color_lut(_decode(result), result)
    assert np.array_equal(rgb_before, rgb_after)


@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm", "MR_small_bigendian.dcm"])
def test_same_syntax_returns_the_stored_bytes(name: str) -> None:
    path = get_testdata_file(name)
    ts = _read(path).file_meta.TransferSyntaxUID
    assert transcode_file(path, ts) == Path(path).read_bytes()


def test_unavailable_target_names_what_is_available() -> None:
    with pytest.raises(TranscodeError) as excinfo:
        transcode_file(get_testdata_file("CT_small.dcm"), JPEG_BASELINE)
    message = str(excinfo.value)
    assert JPEG_BASELINE in message and "Explicit VR Little Endian" in message
    assert f"{EXPLICIT_VR_LITTLE_ENDIAN}, {IMPLICIT_VR_LITTLE_ENDIAN}" in message
    with pytest.raises(TranscodeError, match="1.2.3.4"):
        transcode_file(get_testdata_file("JPEG2000.dcm"), "1.2.3.4")


def test_available_targets_table() -> None:
    assert available_targets(JPEG_BASELINE) == [JPEG_BASELINE, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]
    assert available_targets(EXPLICIT_VR_LITTLE_ENDIAN) == [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]
    assert available_targets(BIG_ENDIAN) == [BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]
    assert available_targets(DEFLATED)[1:] == [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]
    for ts in ("1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
               "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.5"):  # fmt: skip
        assert can_transcode(ts, EXPLICIT_VR_LITTLE_ENDIAN)
    assert available_targets("1.2.840.10008.1.2.4.102") == ["1.2.840.10008.1.2.4.102"]  # video: as stored only
    assert not can_transcode(EXPLICIT_VR_LITTLE_ENDIAN, BIG_ENDIAN)
    assert not can_transcode(EXPLICIT_VR_LITTLE_ENDIAN, JPEG_BASELINE)
    assert BIG_ENDIAN in NATIVE_SYNTAXES


def test_frame_media_types() -> None:
    expected = {
        EXPLICIT_VR_LITTLE_ENDIAN: "application/octet-stream",
        "1.2.840.10008.1.2.4.50": "image/jpeg",
        "1.2.840.10008.1.2.4.51": "image/jpeg",
        "1.2.840.10008.1.2.4.57": "image/jpeg",
        "1.2.840.10008.1.2.4.70": "image/jpeg",
        "1.2.840.10008.1.2.4.80": "image/jls",
        "1.2.840.10008.1.2.4.81": "image/jls",
        "1.2.840.10008.1.2.4.90": "image/jp2",
        "1.2.840.10008.1.2.4.91": "image/jp2",
        "1.2.840.10008.1.2.4.92": "image/jpx",
        "1.2.840.10008.1.2.4.93": "image/jpx",
        "1.2.840.10008.1.2.4.201": "image/jphc",
        "1.2.840.10008.1.2.4.203": "image/jphc",
        "1.2.840.10008.1.2.5": "image/dicom-rle",
        "1.2.840.10008.1.2.4.100": "video/mpeg2",
        "1.2.840.10008.1.2.4.102": "video/mp4",
        "1.2.840.10008.1.2.4.106.1": "video/mp4",
        "1.2.840.10008.1.2.4.107": "video/H265",
    }
    for ts, media_type in expected.items():
        assert frame_media_type(ts) == media_type == FRAME_MEDIA_TYPES[ts]
    with pytest.raises(TranscodeError, match="1.2.3.4.5"):
        frame_media_type("1.2.3.4.5")


# --- single frames -------------------------------------------------------------------------------


def _little_endian_frame(ds: Dataset, arr: np.ndarray, index: int) -> bytes:
    frame = arr[index] if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr
    if ds.BitsAllocated == 1:
        return pack_bits(frame)
    if ds.SamplesPerPixel > 1 and ds.get("PlanarConfiguration") == 1:
        frame = frame.transpose(2, 0, 1)  # frames are served in the declared planar layout
    return frame.astype(frame.dtype.newbyteorder("<")).tobytes()


FRAME_FILES = [p for p in DECODABLE_FILES if _read(p).file_meta.TransferSyntaxUID != DEFLATED]


@pytest.mark.parametrize("path", FRAME_FILES, ids=[os.path.basename(p) for p in FRAME_FILES])
def test_transcode_frame_matches_pydicom(path: str) -> None:
    index = build_frame_index(path)
    if index is None:  # e.g. big endian 8-bit OW: served by whole-file decoding instead
        assert os.path.basename(path) in {"OBXXXX1A_expb.dcm", "OBXXXX1A_expb_2frame.dcm",
                                          "SC_rgb_small_odd_big_endian.dcm"}  # fmt: skip
        return
    full = _read(path)
    header = _read(path, stop_before_pixels=True)  # what the server has at request time
    arr = _decode(full)
    stored = read_frames(path, index, range(1, index.number_of_frames + 1))
    for i, frame in enumerate(stored):
        got = transcode_frame(
            frame, source_ts=index.transfer_syntax, target_ts=EXPLICIT_VR_LITTLE_ENDIAN, dataset=header
        )
        assert got == _little_endian_frame(full, arr, i), f"frame {i + 1}"


def test_transcode_frame_same_syntax_and_bad_target() -> None:
    path = get_testdata_file("JPEG2000.dcm")
    header = _read(path, stop_before_pixels=True)
    index = build_frame_index(path)
    (frame,) = read_frames(path, index, [1])
    ts = index.transfer_syntax
    assert transcode_frame(frame, source_ts=ts, target_ts=ts, dataset=header) == frame
    with pytest.raises(TranscodeError, match="RLE Lossless"):
        transcode_frame(frame, source_ts=ts, target_ts="1.2.840.10008.1.2.5", dataset=header)
    with pytest.raises(TranscodeError, match="Could not decode a JPEG 2000"):
        transcode_frame(frame[:50], source_ts=ts, target_ts=EXPLICIT_VR_LITTLE_ENDIAN, dataset=header)
