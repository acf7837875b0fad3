"""Empty values in the DICOM JSON model (PS3.18 F.2.5), the same on every path that writes it.

An element's JSON is made by one of three paths: the byte-level header reader
(`aperture.dicom.header`), the pydicom path's fast conversion of raw values, and pydicom's own
conversion (other character sets, values pydicom has already converted). The table below gives each
case's one right answer; every path must give exactly that answer, so no path can drift.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from aperture.dicom.dicomjson import BulkRef, instance_json
from aperture.dicom.instance import read_common_case, read_with_pydicom
from tests.helpers import empty_strings, make_instance

B = b"\\"
# (tag, VR, value as stored (bytes; binary numbers as pydicom writes them), the element's DICOM JSON)
CASES: list[tuple[int, str, Any, dict[str, Any]]] = [
    # F.2.5: empty values of a multi-valued attribute are null array elements, wherever they are
    (0x00080008, "CS", B + b"ORIGINAL" + B, {"vr": "CS", "Value": [None, "ORIGINAL", None]}),
    (0x00080008, "CS", B, {"vr": "CS", "Value": [None, None]}),
    (0x00080008, "CS", b"ORIGINAL" + B + B + b"AXIAL ", {"vr": "CS", "Value": ["ORIGINAL", None, "AXIAL"]}),
    (0x00080054, "AE", b"A" + B + B + b"B ", {"vr": "AE", "Value": ["A", None, "B"]}),
    (0x0072005F, "AS", B + b"030Y", {"vr": "AS", "Value": [None, "030Y"]}),
    (0x00181200, "DA", B + b"20240105", {"vr": "DA", "Value": [None, "20240105"]}),
    (0x0040A13A, "DT", b"20240105" + B + b" ", {"vr": "DT", "Value": ["20240105", None]}),
    (0x00181201, "TM", b"101500" + B + b" ", {"vr": "TM", "Value": ["101500", None]}),
    (0x00081080, "LO", b"a" + B + B + b"b ", {"vr": "LO", "Value": ["a", None, "b"]}),
    (0x00080094, "SH", B + b"123 ", {"vr": "SH", "Value": [None, "123"]}),
    (0x00160008, "UC", b"x" + B, {"vr": "UC", "Value": ["x", None]}),
    (0x0004151A, "UI", b"1.2" + B + B + b"1.3\x00", {"vr": "UI", "Value": ["1.2", None, "1.3"]}),
    (0x0004151A, "UI", b"1.2.3\x00", {"vr": "UI", "Value": ["1.2.3"]}),  # trailing NUL padding is not part of it
    (0x00200032, "DS", b"1" + B + B + b"3 ", {"vr": "DS", "Value": [1, None, 3]}),
    (0x00200032, "DS", B + b"0.5" + B, {"vr": "DS", "Value": [None, 0.5, None]}),
    (0x00200032, "DS", b"NaN", {"vr": "DS", "Value": [None]}),  # a value, but JSON has no NaN: null
    (0x00200032, "DS", b"1.5e", {"vr": "DS", "Value": ["1.5e"]}),  # no number: the string (F.2.3 note)
    (0x00181149, "IS", b"2.5", {"vr": "IS", "Value": ["2.5"]}),
    (0x00181149, "IS", B + b"7 ", {"vr": "IS", "Value": [None, 7]}),
    (0x00181149, "IS", b"1" + B + B + b"3 ", {"vr": "IS", "Value": [1, None, 3]}),
    # PN (F.2.2): only non-empty component groups are written; an empty name is a null element
    (0x00081060, "PN", b"Doe^John" + B, {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}, None]}),
    (0x00081060, "PN", B + b"Doe^John ", {"vr": "PN", "Value": [None, {"Alphabetic": "Doe^John"}]}),
    (0x00081060, "PN", "=山田^太郎".encode(), {"vr": "PN", "Value": [{"Ideographic": "山田^太郎"}]}),
    (
        0x00081060,
        "PN",
        "Doe^John==やまだ^たろう".encode(),
        {"vr": "PN", "Value": [{"Alphabetic": "Doe^John", "Phonetic": "やまだ^たろう"}]},
    ),
    (0x00081060, "PN", b"Doe^John== ", {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}),
    (0x00081060, "PN", b"^^^^", {"vr": "PN", "Value": [{"Alphabetic": "^^^^"}]}),  # components kept as stored
    (0x00081060, "PN", b"Doe" + B + b"==", {"vr": "PN", "Value": [{"Alphabetic": "Doe"}, None]}),
    # F.2.5: a present attribute without a value has no "Value" (nor BulkDataURI, InlineBinary)
    (0x00081060, "PN", b"", {"vr": "PN"}),
    (0x00081060, "PN", b"==", {"vr": "PN"}),  # one value, every component group empty
    (0x00080008, "CS", b"  ", {"vr": "CS"}),  # one value of padding only
    (0x00181149, "IS", b"", {"vr": "IS"}),
    (0x00200032, "DS", b" ", {"vr": "DS"}),
    (0x0004151A, "UI", b"\x00\x00", {"vr": "UI"}),
    (0x00080081, "ST", b"", {"vr": "ST"}),
    (0x00080081, "ST", b"  ", {"vr": "ST"}),
    (0x00080081, "ST", b"a" + B + b"b", {"vr": "ST", "Value": ["a\\b"]}),  # one value: the backslash is text
    (0x00080108, "LT", b" line ", {"vr": "LT", "Value": [" line"]}),
    (0x0008030E, "UT", b"", {"vr": "UT"}),
    (0x0008010E, "UR", b"", {"vr": "UR"}),
    (0x00080304, "US", [], {"vr": "US"}),
    (0x00080304, "US", [1, 2], {"vr": "US", "Value": [1, 2]}),
    (0x00189442, "SS", [], {"vr": "SS"}),
    (0x00081161, "UL", [], {"vr": "UL"}),
    (0x0018605A, "FL", [], {"vr": "FL"}),
    (0x00186054, "FD", [], {"vr": "FD"}),
    (0x00209165, "AT", [], {"vr": "AT"}),
    (0x00209165, "AT", [0x00100010], {"vr": "AT", "Value": ["00100010"]}),
    (0x00420011, "OB", b"", {"vr": "OB"}),
    (0x00283006, "OW", b"", {"vr": "OW"}),
]


def _case_id(case: tuple[int, str, Any, dict[str, Any]]) -> str:
    tag, vr, value, _ = case
    return f"{vr}-{tag:08X}-{value!r}"


def _element(tag: int, vr: str, value: Any) -> DataElement | RawDataElement:
    """An element to write; raw bytes for values pydicom refuses to convert (they are written as they are)."""
    try:
        return DataElement(tag, vr, value)
    except ValueError:
        return RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _file(tmp_path: Path, elements: list[DataElement | RawDataElement], charset: bytes | None = None) -> Path:
    ds = pydicom.dcmread(io.BytesIO(make_instance()))
    if charset is not None:
        ds.add(DataElement(0x00080005, "CS", charset))
    for element in elements:
        ds[element.tag] = element
    path = tmp_path / "case.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _by_every_path(path: Path, key: str, *, byte_reader: bool = True) -> dict[str, Any]:
    """The element `key` as each path writes it; the paths must agree."""
    size = path.stat().st_size
    answers: dict[str, Any] = {"pydicom, raw values": read_with_pydicom(path, size).metadata[key]}
    if byte_reader:
        common = read_common_case(path, size)
        assert common is not None, "the byte-level reader declined the file"
        answers["byte-level reader"] = common.metadata[key]
    converted = pydicom.dcmread(path)
    _convert(converted)  # every value pydicom can convert is converted: pydicom's conversion writes them
    answers["pydicom conversion"] = instance_json(converted, "x", bulk=[])[key]
    # the same bulk data path under any prefix
    texts = {
        name: re.sub(r'"BulkDataURI": "[^"]*/', '"BulkDataURI": "/', json.dumps(answer))
        for name, answer in answers.items()
    }
    assert len(set(texts.values())) == 1, texts
    return next(iter(answers.values()))


def _convert(ds: Dataset) -> None:
    for tag in list(ds.keys()):
        try:
            element = ds[tag]
        except (ValueError, TypeError):
            continue  # a value pydicom refuses (e.g. IS "2.5"): the ingest meets it the same way
        if element.VR == "SQ":
            for item in element.value:
                _convert(item)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_path_writes_empty_values_as_f25_says(tmp_path: Path, case: tuple[int, str, Any, dict[str, Any]]) -> None:
    tag, vr, value, expected = case
    path = _file(tmp_path, [_element(tag, vr, value)], charset=b"ISO_IR 192")
    assert _by_every_path(path, f"{tag:08X}") == expected


@pytest.mark.parametrize("case", [c for c in CASES if not isinstance(c[2], bytes) or c[2].isascii()], ids=_case_id)
def test_other_character_sets_write_empty_values_the_same(
    tmp_path: Path, case: tuple[int, str, Any, dict[str, Any]]
) -> None:
    """A character set the fast conversion leaves to pydicom gives the same answer as the default one."""
    tag, vr, value, expected = case
    path = _file(tmp_path, [_element(tag, vr, value)], charset=B + b"ISO 2022 IR 149")
    assert _by_every_path(path, f"{tag:08X}", byte_reader=False) == expected


def test_specific_character_set_with_an_empty_first_value(tmp_path: Path) -> None:
    """The issue's example: `\\ISO 2022 IR 149` is [null, "ISO 2022 IR 149"], not ["", ...]."""
    path = _file(tmp_path, [], charset=B + b"ISO 2022 IR 149")
    assert _by_every_path(path, "00080005", byte_reader=False) == {"vr": "CS", "Value": [None, "ISO 2022 IR 149"]}


def test_empty_sequence_items_are_empty_objects(tmp_path: Path) -> None:
    """F.2.5: an empty item is {} in the sequence's Value; a sequence without items has no Value."""
    item = Dataset()
    item.CodeValue = "1"
    sequence = DataElement(0x00081110, "SQ", Sequence([Dataset(), item, Dataset()]))
    empty = DataElement(0x00081140, "SQ", Sequence([]))
    path = _file(tmp_path, [sequence, empty], charset=b"ISO_IR 192")
    assert _by_every_path(path, "00081110") == {
        "vr": "SQ",
        "Value": [{}, {"00080100": {"vr": "SH", "Value": ["1"]}}, {}],
    }
    assert _by_every_path(path, "00081140") == {"vr": "SQ"}


@pytest.mark.parametrize("name", ["chrI2.dcm", "chrH31.dcm", "chrJapMulti.dcm", "chrKoreanMulti.dcm"])
def test_iso_2022_files_from_pydicom_data_have_no_empty_strings(name: str) -> None:
    """Real files whose Specific Character Set starts with an empty value (ISO 2022 code extensions)."""
    from pydicom.data import get_charset_files

    path = Path(get_charset_files(name)[0])
    metadata = read_with_pydicom(path, path.stat().st_size).metadata
    assert metadata["00080005"]["Value"][0] is None, metadata["00080005"]
    assert not empty_strings(metadata), empty_strings(metadata)
    name_groups = metadata["00100010"]["Value"][0]
    assert set(name_groups) <= {"Alphabetic", "Ideographic", "Phonetic"} and all(name_groups.values())


def test_bulk_references_are_not_made_for_empty_values(tmp_path: Path) -> None:
    path = _file(tmp_path, [DataElement(0x00420011, "OB", b"")], charset=b"ISO_IR 192")
    bulk: list[BulkRef] = []
    instance_json(pydicom.dcmread(path), "x", bulk=bulk)
    assert all(ref.path != "00420011" for ref in bulk)
