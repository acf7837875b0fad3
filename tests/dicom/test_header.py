"""The byte-level header reader (aperture.dicom.header) against the pydicom path it stands in for.

For every file, `read_common_case` either declines (None) or returns exactly the record that
`read_with_pydicom` makes: every field, with the DICOM JSON compared as text so that key order and
number formatting count. Refusals are always the pydicom path's: the fast path declines every file
that path refuses, including every truncation and corruption of a valid header tried here.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
)

from aperture.dicom.instance import InstanceRecord, InvalidInstance, read_common_case, read_instance, read_with_pydicom
from aperture.dicom.synthetic import ct_study, small_study, synthetic_uid
from tests.data import PYDICOM_DATA


def _record_text(record: InstanceRecord) -> dict[str, Any]:
    out = {f.name: getattr(record, f.name) for f in fields(record)}
    for name in ("metadata", "study_attrs", "series_attrs", "instance_attrs"):
        out[name] = json.dumps(out[name])  # order and number formatting count
    return out


def _outcome(read: Any, path: Path) -> tuple[Any, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ("record", _record_text(read(path)))
        except InvalidInstance as exc:
            return ("refused", exc.reason, str(exc), exc.sop_class_uid, exc.sop_instance_uid)
        except Exception as exc:  # the pydicom path may let other errors out; they must stay the same
            return ("raised", type(exc).__name__, str(exc))


def _compare(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(handled, declined); asserts every handled file reads exactly as through pydicom."""
    handled: list[Path] = []
    declined: list[Path] = []
    for path in paths:
        size = path.stat().st_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = read_common_case(path, size)
        slow = _outcome(lambda p: read_with_pydicom(p, p.stat().st_size), path)
        if fast is None:
            declined.append(path)
            continue
        handled.append(path)
        assert slow[0] == "record", f"{path.name}: the fast path read a file the pydicom path refuses: {slow}"
        fast_text, slow_text = _record_text(fast), slow[1]
        for name in slow_text:
            assert fast_text[name] == slow_text[name], f"{path.name}: {name} differs"
    return handled, declined


def test_pydicom_data_reads_the_same() -> None:
    paths = sorted({Path(p) for p in get_testdata_files() if Path(p).is_file()} | set(PYDICOM_DATA))
    handled, declined = _compare(paths)
    print(f"pydicom-data: fast path handled {len(handled)}, declined {len(declined)} of {len(paths)} files")
    assert len(handled) >= 150
    distinct = set(PYDICOM_DATA)
    assert len([p for p in handled if p in distinct]) >= 100


def test_synthetic_studies_are_all_handled(tmp_path: Path) -> None:
    paths = []
    for i, data in enumerate(ct_study(n_slices=12, rows=64, cols=64)):
        paths.append(tmp_path / f"ct{i}.dcm")
        paths[-1].write_bytes(data)
    for i in range(12):
        paths.append(tmp_path / f"small{i}.dcm")
        paths[-1].write_bytes(small_study(i))
    handled, declined = _compare(paths)
    print(f"synthetic: fast path handled {len(handled)} of {len(paths)} files")
    assert declined == []


# --- files written to reach the corners: every VR empty and set, sequences of every length form ---

_VALUES: dict[str, Any] = {
    "AE": "STORESCP",
    "AS": "042Y",
    "AT": [0x00100010, 0x7FE00010],
    "CS": ["ORIGINAL", " PRIMARY", ""],
    "DA": "20240105",
    "DS": ["1.5", "-0", "2", " 3.25 ", "1e3", "1.0"],
    "DT": "20240105083000.5+0100",
    "FD": [1.5, -2.0, 1e300],
    "FL": [0.25, 3.0],
    "IS": ["12", " -4", "007"],
    "LO": ["Gruesse", "", "x"],
    "LT": "Line one\r\nLine two  ",
    "OB": b"\x00\x01\x02\x03",
    "OD": b"\x00" * 16,
    "OF": b"\x00" * 8,
    "OL": b"\x01\x00\x00\x00",
    "OV": b"\x02" * 8,
    "OW": b"\x03\x00\x04\x00",
    "PN": ["Mueller^Hans=M^H", "Doe^J^^Dr"],
    "SH": "Abo",
    "SL": [-5, 7],
    "SS": [-1, 2],
    "ST": "  short text",
    "SV": [-(2**40), 3],
    "TM": "083000.123",
    "UC": ["unlimited", "chars"],
    "UI": "1.2.3.4",
    "UL": [4000000000],
    "UN": b"\x01\x02",
    "UR": "http://example.com/a b",
    "US": [512, 0],
    "UT": "unlimited text ",
    "UV": [2**63],
}


def _private(ds: Dataset, group: int, empty: bool) -> None:
    """One private element per VR (explicit VR keeps it; implicit VR makes the file a pydicom case)."""
    ds.add_new((group, 0x0010), "LO", "APERTURE TEST")
    for index, (vr, value) in enumerate(sorted(_VALUES.items())):
        if not (empty and vr == "UN"):  # an empty UN is pydicom's: it takes the dictionary VR
            ds.add_new((group, 0x1000 + index), vr, None if empty else value)


def _corner_dataset(charset: str | None, undefined: bool, big: bool) -> Dataset:
    """Every VR set and empty, sequences nested, bulk values inline, by reference and deferred."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
        ds.StudyDescription = "Grüße ÆØÅ" if charset == "ISO_IR 100" else "Grüße ミュラー"
        ds.ReferringPhysicianName = "Müller^Hans=ミュラー^ハンス" if charset == "ISO_IR 192" else "Müller^Hans"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = synthetic_uid("corner", charset, undefined, big)
    ds.StudyInstanceUID = synthetic_uid("corner-study")
    ds.SeriesInstanceUID = synthetic_uid("corner-series")
    ds.PatientName = "Ærø^Åse" if charset else "Doe^Jane"
    ds.PatientComments = "long comment " * (100 if big and undefined else 1)  # over 1024 bytes: declined
    ds.PatientID = "CORNER"
    ds.StudyDate = ""
    ds.AccessionNumber = None
    ds.InstanceNumber = None
    ds.SliceThickness = None
    ds.ImagePositionPatient = ["1.5", "-0.0", "2"]
    ds.WindowCenter = "40"
    ds.RescaleIntercept = " -1024 "
    ds.FrameTime = "33.3"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.add_new(0x60000010, "US", None)
    ds.RedPaletteColorLookupTableData = b"\x00\x01" * (800 if big else 8)
    ds.ICCProfile = b"\x00" * (3000 if big else 0)
    _private(ds, 0x0009, empty=False)
    _private(ds, 0x0011, empty=True)
    item = Dataset()
    item.CodeValue = "T-D1100"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = "Weiß" if charset else "Weiss"
    item.add_new(0x00091010, "OB", b"\x01" * (2000 if big else 3))
    item.add_new(0x00091011, "OB", None)
    item.add_new(0x00091012, "DS", None)
    item.add_new(0x00091013, "US", None)
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3"
    inner.ReferencedFrameNumber = ["1", "2"]
    item.add_new(0x00081199, "SQ", Sequence([inner, Dataset()]))
    ds.AnatomicRegionSequence = Sequence([item, Dataset(), item])
    ds.ReferencedImageSequence = Sequence([])
    ds.add_new(0x00091050, "SQ", Sequence([inner]))
    for sequence in (ds.AnatomicRegionSequence, item[0x00081199].value, ds[0x00091050].value):
        sequence.is_undefined_length = undefined
        for entry in sequence:
            entry.is_undefined_length_sequence_item = undefined
    return ds


def _write(ds: Dataset, path: Path, syntax: str, pixels: str, padding: bool) -> Path:
    ds = ds.copy()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.ImplementationClassUID = "1.2.3.4.5"
    if pixels != "none":
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 4
        ds.Columns = 4
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.NumberOfFrames = 3
        if syntax == JPEGBaseline8Bit:
            ds.PixelData = encapsulate([b"\xff\xd8" + bytes([i]) * 6 + b"\xff\xd9" for i in range(3)])
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = bytes(range(48))
            ds["PixelData"].VR = "OB" if pixels == "OB" else "OW"
        if padding:
            ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 10)
    dcmwrite(path, ds, enforce_file_format=True)
    return path


CORNERS = [
    (syntax, charset, undefined, big, pixels)
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit)
    for charset in (None, "ISO_IR 100", "ISO_IR 192")
    for undefined in (False, True)
    for big in (False, True)
    for pixels in (("none", "OB") if syntax == JPEGBaseline8Bit else ("none", "OB", "OW"))
]


def test_corner_cases_read_the_same(tmp_path: Path) -> None:
    paths = []
    for n, (syntax, charset, undefined, big, pixels) in enumerate(CORNERS):
        ds = _corner_dataset(charset, undefined, big)
        if syntax == ImplicitVRLittleEndian:  # private tags make implicit files pydicom's; keep some plain
            for group in (0x0009, 0x0011):
                for tag in [t for t in ds.keys() if t.group == group]:
                    del ds[tag]
            for item in ds.AnatomicRegionSequence:
                for tag in [t for t in item.keys() if t.group == 0x0009]:
                    del item[tag]
        paths.append(_write(ds, tmp_path / f"corner{n}.dcm", syntax, pixels, padding=n % 2 == 0))
    handled, declined = _compare(paths)
    print(f"corners: fast path handled {len(handled)}, declined {len(declined)} of {len(paths)} files")
    assert len(handled) >= len(paths) // 2


# --- damaged files: declined, so the outcome (record or refusal) is exactly the pydicom path's ---


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    ds = _corner_dataset("ISO_IR 100", True, False)
    path = _write(ds, tmp_path_factory.mktemp("valid") / "valid.dcm", ExplicitVRLittleEndian, "OW", True)
    data = path.read_bytes()
    assert read_common_case(path, len(data)) is not None
    return data


def _same_outcome(path: Path) -> None:
    assert _outcome(read_instance, path) == _outcome(lambda p: read_with_pydicom(p, p.stat().st_size), path)


def test_truncated_headers_read_as_before(valid_file: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cut.dcm"
    handled = []
    for cut in range(0, len(valid_file), 3):
        path.write_bytes(valid_file[:cut])
        if read_common_case(path, cut) is not None:
            handled.append(cut)
        _same_outcome(path)
    # Only a cut that falls exactly between two top-level elements leaves a valid (shorter) file.
    assert len(handled) <= 10, handled


def test_corrupted_headers_read_as_before(valid_file: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bad.dcm"
    end = valid_file.index(b"\xe0\x7f\x10\x00")  # the Pixel Data tag: everything before it is header
    for position in range(128, end, 2):
        for byte in (0x00, 0xFF, 0x41):
            data = bytearray(valid_file)
            data[position] = byte
            path.write_bytes(bytes(data))
            _same_outcome(path)


def test_unsafe_identifiers_are_refused_as_before(tmp_path: Path) -> None:
    ds = _corner_dataset(None, False, False)
    ds.SOPInstanceUID = "1.2.3/../4"
    path = _write(ds, tmp_path / "bad-uid.dcm", ExplicitVRLittleEndian, "none", False)
    assert read_common_case(path, path.stat().st_size) is None
    outcome = _outcome(read_instance, path)
    assert outcome[0] == "refused"
    assert outcome == _outcome(lambda p: read_with_pydicom(p, p.stat().st_size), path)
