"""The common case of ingest, read straight from the bytes: a Part-10 header without pydicom.

Reading an instance through pydicom costs a few thousand Python calls (a Dataset, a Tag and a
RawDataElement per element), which makes it the largest cost of STOW-RS on a small machine. Most
uploads are plain: Explicit or Implicit VR Little Endian (or an encapsulated syntax, whose data set is
Explicit VR Little Endian), well-formed, in the default character set, ISO_IR 100 or ISO_IR 192. This
module reads those with `struct.unpack_from` over one buffered read and converts values with the same
function the pydicom path uses (`aperture.dicom.dicomjson.element_json`).

It never decides a hard case. Anything it does not handle with certainty makes `read_header` or
`Header.to_json` return None and `aperture.dicom.instance.read_instance` parses the file with pydicom
instead: big endian, deflate, unknown or private transfer syntaxes, command set elements, a switch
between implicit and explicit VR, unknown VRs, ambiguous VRs (US or SS, OB or OW, ...), private tags in
implicit VR, UN values pydicom would re-interpret, other character sets, elements out of order or
repeated, truncated or overlapping lengths, undefined-length values that are not sequences, stray
delimiters, long text values pydicom defers, and a Specific Character Set inside a sequence item.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any, BinaryIO

import pydicom.uid

from aperture.dicom.dicomjson import (
    BULK_THRESHOLD,
    BULK_VRS,
    PIXEL_TAGS,
    BulkRef,
    NeedsPydicom,
    dictionary_VR_or_none,
    element_json,
)
from aperture.dicom.frames import native_frame_length

__all__ = ["Header", "is_trailing_padding", "read_header"]

_FIRST_READ = 16384
_PREAMBLE = 128
_IMPLICIT_LE = "1.2.840.10008.1.2"
_NOT_READ = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})  # big endian, deflated
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_CHARSET = 0x00080005
_EXTENDED_OFFSET_TABLE = 0x7FE00001
# Specific Character Set values read here, exactly as stored, and the codec their text is decoded with.
_CHARSETS = {b"ISO_IR 100": "latin-1", b"ISO_IR 192": "utf-8"}
# Explicit VRs with a 4-byte length (pydicom's EXPLICIT_VR_LENGTH_32), and every VR read here.
_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_SHORT = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST", "TM"}
    | {"UI", "UL", "US"}
)
_VRS = {vr.encode("ascii"): vr for vr in _LONG | _SHORT}
_explicit_header = struct.Struct("<HH2sH").unpack_from
_implicit_header = struct.Struct("<HHL").unpack_from
_long_length: Callable[[bytes, int], tuple[int]] = struct.Struct("<L").unpack_from
_us = struct.Struct("<H").unpack_from

# One element: (tag, VR or None, value offset, value length, sequence items or None). An item is a
# list of elements; VR None only for a tag whose implicit VR the dictionary does not give.
Element = tuple[int, str | None, int, int, list[list[Any]] | None]

_META, _TOP, _ITEM_BODY = 0, 1, 2


class _Decline(Exception):
    """Not the common case: the pydicom path reads this file."""


class _More(Exception):
    """The buffer ends before `needed`: read more of the file and start again."""

    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


class Header:
    """The data set of one Part-10 file, up to its Pixel Data, as element positions in `buffer`."""

    def __init__(
        self, buffer: bytes, transfer_syntax: str, implicit: bool, elements: list[Element], pixel_start: int
    ) -> None:
        self.buffer = buffer
        self.transfer_syntax = transfer_syntax
        self.implicit = implicit
        self.elements = elements
        self.pixel_start = pixel_start  # the Pixel Data tag's offset; the file size when there is none
        self._by_tag = {element[0]: element for element in elements}

    def text(self, tag: int) -> str:
        """A top-level value as text, as the pydicom path reads UIDs ("" when absent or too long to trust)."""
        element = self._by_tag.get(tag)
        if element is None or element[3] > BULK_THRESHOLD or element[4] is not None:
            return ""
        _, _, offset, length, _ = element
        return self.buffer[offset : offset + length].decode("ascii", "replace").strip(" \x00")

    def to_json(self, bulk_prefix: str, bulk: list[BulkRef]) -> dict[str, Any] | None:
        """DICOM JSON of the data set, equal to `instance_json` of pydicom's parse; None to decline."""
        charset = self._by_tag.get(_CHARSET)
        if charset is None:
            encoding = "ascii"
        else:
            _, vr, offset, length, _ = charset
            known = _CHARSETS.get(self.buffer[offset : offset + length]) if vr == "CS" else None
            if known is None:
                return None
            encoding = known
        try:
            return _dataset(self.buffer, self.elements, "", bulk_prefix, bulk, encoding, True)
        except (_Decline, NeedsPydicom, RecursionError):
            return None

    def frames_value(self) -> int | None:
        """Number of Frames as pydicom gives it to `int()`: None when absent or empty."""
        element = self._by_tag.get(0x00280008)
        if element is None or not element[3]:
            return None
        digits = self._value(element, "IS").strip(b" ")
        if not digits.isdigit():
            raise _Decline  # signs, decimals, several values: pydicom's IS rules decide
        return int(digits)

    # FrameAttributes (aperture.dicom.frames), for locating frames in the pixel data.

    def bits_allocated(self) -> int:  # only asked for big endian files, which are never read here
        return self._us(0x00280100) or 0

    def number_of_frames(self) -> int | None:
        frames = self.frames_value()
        if frames is None:
            return 1
        return frames if frames >= 1 else None

    def frame_length(self, n_frames: int) -> int | None:
        rows = self._us(0x00280010)
        columns = self._us(0x00280011)
        bits = self._us(0x00280100)
        samples = self._us(0x00280002, absent=1)
        if rows is None or columns is None or bits is None or samples is None:
            return None
        return native_frame_length(rows, columns, bits, samples or 1, self._ybr_422(), n_frames)

    def extended_offsets(self, fp: BinaryIO) -> list[int] | None:
        return None  # files that have the table are declined by `read_header`

    def _value(self, element: Element, vr: str) -> bytes:
        _, element_vr, offset, length, _ = element
        if element_vr != vr or length > BULK_THRESHOLD:
            raise _Decline
        return self.buffer[offset : offset + length]

    def _us(self, tag: int, absent: int | None = None) -> int | None:
        """A single US value as pydicom converts it for `int()`; None where that raises."""
        element = self._by_tag.get(tag)
        if element is None:
            return absent
        value = self._value(element, "US")
        if not value:
            return absent  # pydicom: None, so `int()` raises, except SamplesPerPixel's `or 1`
        return _us(value)[0] if len(value) == 2 else None

    def _ybr_422(self) -> bool:
        element = self._by_tag.get(0x00280004)
        if element is None:
            return False
        value = self._value(element, "CS")
        if value != b"YBR_FULL_422" and b"YBR_FULL_422" in value:
            raise _Decline  # padded in some other way: let pydicom compare its own value
        return value == b"YBR_FULL_422"


def read_header(fp: BinaryIO, size: int) -> Header | None:
    """Parse the Part-10 file open at `fp` (`size` bytes) up to its Pixel Data; None to decline."""
    fp.seek(0)
    buffer = fp.read(min(size, _FIRST_READ))
    while True:
        try:
            header = _parse(buffer, size)
        except _More as more:
            if more.needed > size or len(buffer) >= size:
                return None
            fp.seek(0)
            buffer = fp.read(min(size, max(more.needed, 2 * len(buffer))))
            continue
        except (_Decline, struct.error, UnicodeDecodeError, RecursionError):
            return None
        return header


def is_trailing_padding(fp: BinaryIO, start: int, size: int, implicit: bool) -> bool:
    """Whether the bytes from `start` to the end are one Data Set Trailing Padding (FFFC,FFFC) element.

    Such an element is all that commonly follows Pixel Data; it is not part of the JSON model. Longer
    padding than `BULK_THRESHOLD` is left to the pydicom path, which defers and then re-reads it.
    """
    fp.seek(start)
    data = fp.read(size - start) if size - start <= BULK_THRESHOLD + 12 else b""
    if len(data) < 8 or data[:4] != b"\xfc\xff\xfc\xff":
        return False
    if implicit:
        if all(0x40 < b < 0x5B for b in data[4:6]):
            return False  # looks explicit: pydicom would switch
        (length,) = _long_length(data, 4)
        return 8 + length == len(data)
    if len(data) < 12 or data[4:8] != b"OB\x00\x00":
        return False
    (length,) = _long_length(data, 8)
    return 12 + length == len(data)


def _parse(buffer: bytes, size: int) -> Header | None:
    if len(buffer) < _PREAMBLE + 4 or buffer[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
        return None
    meta, start = _scan(buffer, _PREAMBLE + 4, size, False, _META)
    syntax = next((e for e in meta if e[0] == 0x00020010), None)
    if syntax is None or syntax[1] != "UI":
        return None
    raw = buffer[syntax[2] : syntax[2] + syntax[3]]
    if raw[-1:] in (b"\x00", b" "):
        raw = raw[:-1]
    transfer_syntax = raw.decode("ascii")
    if not transfer_syntax or transfer_syntax.strip("0123456789.") or transfer_syntax in _NOT_READ:
        return None
    if transfer_syntax in _private_syntaxes():
        return None
    implicit = transfer_syntax == _IMPLICIT_LE
    if start + 8 > size:
        return None
    if start + 8 > len(buffer):
        raise _More(start + 8)
    if implicit and all(0x40 < b < 0x5B for b in buffer[start + 4 : start + 6]):
        return None  # looks explicit: pydicom would switch
    elements, pixel_start = _scan(buffer, start, size, implicit, _TOP)
    header = Header(buffer, transfer_syntax, implicit, elements, pixel_start)
    if not elements or _EXTENDED_OFFSET_TABLE in header._by_tag:
        return None
    header.frames_value()  # declines here, not later, what the frame attributes cannot answer for certain
    header.frame_length(1)
    return header


def _private_syntaxes() -> list[str]:
    """Syntaxes registered with pydicom, which reads them with their own encoding."""
    return pydicom.uid.PrivateTransferSyntaxes


def _scan(buffer: bytes, pos: int, end: int | None, implicit: bool, kind: int) -> tuple[list[Element], int]:
    """The elements from `pos` to `end` (None: to the item delimiter) and the offset after them.

    _META stops at the first tag outside group 0002, _TOP at Pixel Data (or the end of the file).
    """
    elements: list[Element] = []
    available = len(buffer)
    last = -1
    while True:
        if end is not None and pos >= end:
            if pos > end or kind == _META:
                raise _Decline
            return elements, pos
        if pos + 8 > available:
            if end is not None and pos + 8 > end:
                raise _Decline  # truncated, or a few stray bytes pydicom would ignore
            raise _More(pos + 12)
        if implicit:
            group, number, length = _implicit_header(buffer, pos)
            vr = None
            value = pos + 8
        else:
            group, number, vr_bytes, length = _explicit_header(buffer, pos)
            if kind == _META and group != 2:
                return elements, pos
            vr = _VRS.get(vr_bytes)
            if vr is None:
                if group == 0xFFFE and number == 0xE00D and kind == _ITEM_BODY and end is None:
                    if length or vr_bytes != b"\x00\x00":
                        raise _Decline
                    return elements, pos + 8  # the item delimiter, read as pydicom does
                raise _Decline
            if vr in _LONG:
                if pos + 12 > available:
                    raise _More(pos + 12)
                (length,) = _long_length(buffer, pos + 8)
                value = pos + 12
            else:
                value = pos + 8
        tag = group << 16 | number
        if kind == _TOP and tag in PIXEL_TAGS:
            return elements, pos
        if group == 0xFFFE:
            if implicit and kind == _ITEM_BODY and end is None and tag == _ITEM_END and not length:
                return elements, pos + 8
            raise _Decline
        if tag <= last or group == 0:
            raise _Decline
        last = tag
        if implicit:
            vr = _implicit_vr(tag)
        if length == _UNDEFINED:
            if vr != "SQ":
                raise _Decline
            items, pos = _items(buffer, value, None, implicit)
            elements.append((tag, vr, value, length, items))
            continue
        pos = value + length
        if end is not None and pos > end:
            raise _Decline
        if vr == "SQ":
            if pos > available:
                raise _More(pos)
            elements.append((tag, vr, value, length, _items(buffer, value, pos, implicit)[0]))
            continue
        if pos > available and (kind != _TOP or length <= BULK_THRESHOLD or tag == _CHARSET):
            raise _More(pos)  # a value pydicom reads (top-level values over the threshold it defers)
        elements.append((tag, vr, value, length, None))


@lru_cache(maxsize=4096)
def _implicit_vr(tag: int) -> str | None:
    return dictionary_VR_or_none(tag)


def _items(buffer: bytes, pos: int, end: int | None, implicit: bool) -> tuple[list[list[Element]], int]:
    """The items of a sequence value from `pos` to `end` (None: to the sequence delimiter)."""
    items: list[list[Element]] = []
    while True:
        if end is not None and pos == end:
            return items, pos
        if pos + 8 > len(buffer) or (end is not None and pos + 8 > end):
            if end is None:
                raise _More(pos + 8)
            raise _Decline
        group, number, length = _implicit_header(buffer, pos)
        tag = group << 16 | number
        if tag == _SEQUENCE_END and end is None and not length:
            return items, pos + 8
        if tag != _ITEM:
            raise _Decline
        if length == _UNDEFINED:
            elements, pos = _scan(buffer, pos + 8, None, implicit, _ITEM_BODY)
        else:
            item_end = pos + 8 + length
            if end is not None and item_end > end:
                raise _Decline
            if item_end > len(buffer):
                raise _More(item_end)
            elements, pos = _scan(buffer, pos + 8, item_end, implicit, _ITEM_BODY)
        items.append(elements)


def _dataset(
    buffer: bytes, elements: list[Element], path: str, prefix: str, bulk: list[BulkRef], encoding: str, top: bool
) -> dict[str, Any]:
    """`aperture.dicom.dicomjson._dataset` for elements read here (raises to decline)."""
    out: dict[str, Any] = {}
    for tag, vr, offset, length, items in elements:
        if tag >> 16 == 0x0002 or not tag & 0xFFFF or tag == 0xFFFCFFFC:
            continue  # file meta, group lengths, padding are not part of the JSON model
        if vr is None or " or " in vr or (tag == _CHARSET and not top):
            raise _Decline
        key = f"{tag:08X}"
        elem_path = path + key
        if items is not None:
            out[key] = (
                {
                    "vr": "SQ",
                    "Value": [
                        _dataset(buffer, item, f"{elem_path}/{index}/", prefix, bulk, encoding, False)
                        for index, item in enumerate(items)
                    ],
                }
                if items
                else {"vr": "SQ"}
            )
        elif not length:
            if vr == "UN":
                raise _Decline  # pydicom replaces an empty UN with the dictionary VR
            out[key] = {"vr": vr}  # PS3.18 F.2.5: present but empty, no Value, BulkDataURI or InlineBinary
        elif top and length > BULK_THRESHOLD and tag != _CHARSET:
            # deferred by pydicom, then read and converted whole: a bulk reference with no position
            if vr not in BULK_VRS or vr == "UN":
                raise _Decline
            bulk.append(BulkRef(elem_path, vr, None, None))
            out[key] = {"vr": vr, "BulkDataURI": f"{prefix}/{elem_path}"}
        else:
            value = buffer[offset : offset + length]
            out[key] = element_json(
                vr, value, length, offset if top else None, tag, elem_path, prefix, bulk, True, encoding
            )
    return out
