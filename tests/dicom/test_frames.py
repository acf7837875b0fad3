"""Frame index and seek+read frame access, checked against pydicom's own frame extraction."""

from __future__ import annotations

import ast
import os
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from aperture.dicom.frames import FrameError, FrameIndex, build_frame_index, read_frames

# Files in pydicom-data that have Pixel Data but whose frames cannot be located by offset.
UNINDEXABLE = {
    "image_dfl.dcm": "Deflated: the data set is compressed as a whole",
    "MR_truncated.dcm": "Pixel Data shorter than Rows x Columns x bits",
    "badVR.dcm": "Number of Frames '1A' is not a number",
    "meta_missing_tsyntax.dcm": "no Rows / Columns",
    "nested_priv_SQ.dcm": "no Rows / Columns",
    "OBXXXX1A_expb.dcm": "big endian 8-bit pixels stored as OW words",
    "OBXXXX1A_expb_2frame.dcm": "big endian 8-bit pixels stored as OW words",
    "SC_rgb_small_odd_big_endian.dcm": "big endian 8-bit pixels stored as OW words",
}


def _read(path: str) -> Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path)
        except Exception:
            return None


def _pixel_files() -> list[str]:
    found = []
    for path in sorted(get_testdata_files(), key=os.path.basename):
        if os.path.isfile(path):
            ds = _read(path)
            if ds is not None and "PixelData" in ds:
                found.append(path)
    return found


PIXEL_FILES = _pixel_files()


def _expected_frames(ds: Dataset, index: FrameIndex) -> list[bytes]:
    n = index.number_of_frames
    if not index.encapsulated:
        length = index.frames[0][0][1]
        return [ds.PixelData[i * length : (i + 1) * length] for i in range(n)]
    extended = None
    if "ExtendedOffsetTable" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(generate_frames(ds.PixelData, number_of_frames=n, extended_offsets=extended))[:n]


@pytest.mark.parametrize("path", PIXEL_FILES, ids=[os.path.basename(p) for p in PIXEL_FILES])
def test_frames_match_pydicom(path: str) -> None:
    index = build_frame_index(path)
    name = os.path.basename(path)
    if index is None:
        assert name in UNINDEXABLE, f"{name} unexpectedly got no frame index"
        return
    assert name not in UNINDEXABLE
    ds = _read(path)
    assert ds is not None
    assert index.transfer_syntax == ds.file_meta.TransferSyntaxUID
    assert index.number_of_frames == int(ds.get("NumberOfFrames", 1) or 1)
    frames = read_frames(path, index, list(range(1, index.number_of_frames + 1)))
    assert frames == _expected_frames(ds, index)
    assert FrameIndex.from_json(index.to_json()) == index


def test_a_healthy_number_of_files_is_indexed() -> None:
    indexed = [p for p in PIXEL_FILES if build_frame_index(p) is not None]
    assert len(PIXEL_FILES) > 100
    assert len(indexed) > 60
    assert sum(1 for p in indexed if build_frame_index(p).encapsulated) > 30  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "encapsulated", "n_frames"),
    [
        ("CT_small.dcm", False, 1),
        ("MR_small_RLE.dcm", True, 1),
        ("JPEG2000.dcm", True, 1),
        ("emri_small_jpeg_2k_lossless.dcm", True, 10),
        ("SC_rgb_rle_2frame.dcm", True, 2),
        ("emri_small_big_endian.dcm", False, 10),
        ("MR_small_implicit.dcm", False, 1),
        ("liver.dcm", False, 3),  # 1 bit per pixel, 512 x 512: frames are byte-aligned
        ("color3d_jpeg_baseline.dcm", True, 120),
    ],
)
def test_well_known_files(name: str, encapsulated: bool, n_frames: int) -> None:
    path = get_testdata_file(name)
    index = build_frame_index(path)
    assert index is not None
    assert index.encapsulated is encapsulated
    assert index.number_of_frames == n_frames
    ds = _read(path)
    assert read_frames(path, index, range(1, n_frames + 1)) == _expected_frames(ds, index)


def test_frames_come_back_in_the_order_asked() -> None:
    path = get_testdata_file("emri_small_jpeg_2k_lossless.dcm")
    index = build_frame_index(path)
    assert index is not None
    all_frames = read_frames(path, index, range(1, 11))
    assert read_frames(path, index, [3, 1, 10]) == [all_frames[2], all_frames[0], all_frames[9]]
    assert len(set(all_frames)) == 10


@pytest.mark.parametrize("number", [0, 11, -1])
def test_out_of_range_frame_is_named(number: int) -> None:
    path = get_testdata_file("emri_small.dcm")
    index = build_frame_index(path)
    assert index is not None
    with pytest.raises(FrameError, match=rf"Frame {number} does not exist.* 10 frames"):
        read_frames(path, index, [1, number])


def test_no_pixel_data_and_deflated_give_none() -> None:
    assert build_frame_index(get_testdata_file("rtplan.dcm")) is None
    assert build_frame_index(get_testdata_file("image_dfl.dcm")) is None


def test_json_round_trip_and_bad_json() -> None:
    index = FrameIndex(encapsulated=True, transfer_syntax="1.2.840.10008.1.2.5", frames=(((10, 4), (22, 6)),))
    text = index.to_json()
    assert FrameIndex.from_json(text) == index
    assert " " not in text
    for bad in ("", "[]", '{"encapsulated": 1, "transfer_syntax": "1", "frames": []}', '{"frames": [[[1]]]}'):
        with pytest.raises(ValueError):
            FrameIndex.from_json(bad)


def test_file_truncated_after_ingest_is_reported(tmp_path: Path) -> None:
    source = Path(get_testdata_file("CT_small.dcm"))
    copy = tmp_path / "ct.dcm"
    copy.write_bytes(source.read_bytes())
    index = build_frame_index(copy)
    assert index is not None
    offset, length = index.frames[0][0]
    copy.write_bytes(source.read_bytes()[: offset + length - 100])
    with pytest.raises(OSError, match="shorter than its frame index"):
        read_frames(copy, index, [1])


# --- synthetic layouts: several fragments per frame ----------------------------------------------


def _rewrite(name: str, tmp_path: Path, *, fragments_per_frame: int, has_bot: bool) -> tuple[Path, list[bytes]]:
    """Re-encapsulate a multi-frame file with several fragments per frame."""
    ds = _read(get_testdata_file(name))
    n = int(ds.NumberOfFrames)
    frames = list(generate_frames(ds.PixelData, number_of_frames=n))
    ds.PixelData = encapsulate(frames, fragments_per_frame=fragments_per_frame, has_bot=has_bot)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    path = tmp_path / f"{fragments_per_frame}-{has_bot}-{name}"
    ds.save_as(path, enforce_file_format=True)
    return path, frames


def _fragment_offsets(path: Path) -> list[int]:
    """Offsets of each fragment item tag, relative to the first one (as offset tables count)."""
    ds = _read(str(path))
    offsets, position = [], 0
    data = ds.PixelData
    bot_length = struct.unpack("<L", data[4:8])[0]
    cursor = 8 + bot_length
    while cursor < len(data):
        tag, length = struct.unpack("<LL", data[cursor : cursor + 8])
        if tag == 0xE0DDFFFE:
            break
        offsets.append(position)
        position += 8 + length
        cursor += 8 + length
    return offsets


def test_basic_offset_table_groups_fragments(tmp_path: Path) -> None:
    path, frames = _rewrite("emri_small_jpeg_2k_lossless.dcm", tmp_path, fragments_per_frame=3, has_bot=True)
    index = build_frame_index(path)
    assert index is not None
    assert all(len(runs) == 3 for runs in index.frames)
    got = read_frames(path, index, range(1, 11))
    # fragmenting pads each frame to an even length
    assert [g[: len(f)] for g, f in zip(got, frames, strict=True)] == frames


def test_jpeg_markers_group_fragments_without_offset_table(tmp_path: Path) -> None:
    path, frames = _rewrite("emri_small_jpeg_2k_lossless.dcm", tmp_path, fragments_per_frame=2, has_bot=False)
    index = build_frame_index(path)
    assert index is not None
    got = read_frames(path, index, range(1, 11))
    assert [g[: len(f)] for g, f in zip(got, frames, strict=True)] == frames


def test_rle_without_offsets_is_unindexable_and_extended_offset_table_fixes_it(tmp_path: Path) -> None:
    path, frames = _rewrite("emri_small_RLE.dcm", tmp_path, fragments_per_frame=2, has_bot=False)
    assert build_frame_index(path) is None  # RLE has no start-of-frame marker to go by

    ds = _read(str(path))
    starts = _fragment_offsets(path)[::2]
    ds.ExtendedOffsetTable = struct.pack(f"<{len(starts)}Q", *starts)
    ds.ExtendedOffsetTableLengths = struct.pack(f"<{len(frames)}Q", *(len(f) for f in frames))
    ds.save_as(path, enforce_file_format=True)
    index = build_frame_index(path)
    assert index is not None
    got = read_frames(path, index, range(1, 11))
    assert [g[: len(f)] for g, f in zip(got, frames, strict=True)] == frames


def _tiny_dataset(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def test_bit_packed_frames_off_byte_boundary_are_unindexable(tmp_path: Path) -> None:
    ds = _tiny_dataset(
        Rows=3, Columns=3, NumberOfFrames=2, BitsAllocated=1, BitsStored=1, HighBit=0,
        SamplesPerPixel=1, PixelRepresentation=0, PhotometricInterpretation="MONOCHROME2",
        PixelData=b"\x55\xaa\x55\x00",
    )  # fmt: skip
    path = tmp_path / "bits.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert build_frame_index(path) is None

    ds.NumberOfFrames = 1  # a single frame always starts at the value offset
    ds.save_as(path, enforce_file_format=True)
    index = build_frame_index(path)
    assert index is not None
    assert read_frames(path, index, [1]) == [b"\x55\xaa"]


def test_float_pixel_data_is_unindexable(tmp_path: Path) -> None:
    ds = _tiny_dataset(
        Rows=2, Columns=2, BitsAllocated=32, SamplesPerPixel=1,
        PhotometricInterpretation="MONOCHROME2", FloatPixelData=struct.pack("<4f", 0, 1, 2, 3),
    )  # fmt: skip
    path = tmp_path / "float.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert build_frame_index(path) is None


def test_large_extended_offset_table_is_read_from_the_file(tmp_path: Path) -> None:
    # 600 frames: the table (4800 bytes) is large enough that the header parse skips its value
    frames = [struct.pack("<HH", i, i + 1) * 2 for i in range(600)]
    ds = _tiny_dataset(
        Rows=1, Columns=4, NumberOfFrames=600, BitsAllocated=16, BitsStored=16, HighBit=15,
        SamplesPerPixel=1, PixelRepresentation=0, PhotometricInterpretation="MONOCHROME2",
    )  # fmt: skip
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.5"
    ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.ExtendedOffsetTable = struct.pack("<600Q", *(i * 2 * (8 + 4) for i in range(600)))
    ds.ExtendedOffsetTableLengths = struct.pack("<600Q", *(8 for _ in range(600)))
    path = tmp_path / "eot.dcm"
    ds.save_as(path, enforce_file_format=True)
    index = build_frame_index(path)
    assert index is not None
    assert read_frames(path, index, [1, 600]) == [frames[0], frames[599]]


def test_numpy_integers_are_frame_numbers_and_junk_is_not() -> None:
    path = get_testdata_file("emri_small.dcm")
    index = build_frame_index(path)
    assert index is not None
    assert read_frames(path, index, [np.int64(2)]) == read_frames(path, index, [2])
    for junk in ("2", 2.0, True, None):
        with pytest.raises(FrameError, match="does not exist"):
            read_frames(path, index, [junk])  # type: ignore[list-item]


ALLOWED_IMPORTS = {"pydicom", "numpy", "PIL", "aperture"} | set(sys.stdlib_module_names)
FORBIDDEN = {"socket", "http", "urllib", "asyncio", "ssl"}


@pytest.mark.parametrize("module", ["frames", "transcode", "render"])
def test_modules_import_only_stdlib_pydicom_numpy_and_pil(module: str) -> None:
    source = Path(__file__).parents[2] / "aperture" / "dicom" / f"{module}.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert imported <= ALLOWED_IMPORTS
    assert not imported & FORBIDDEN
