"""The DICOM JSON model (PS3.18 Annex F), computed once when an instance is stored.

`instance_json` turns a parsed dataset into the JSON object that `/metadata` serves. Values are
converted straight from the raw bytes for the common VRs and character sets, because pydicom's
general conversion costs several milliseconds per instance and every stored instance pays it;
anything unusual (other character sets, private or ambiguous VRs, odd numbers) goes through pydicom
itself, so the fast path never decides a hard case.

Bulk data (binary values longer than `BULK_THRESHOLD`, and Pixel Data always) becomes a
`BulkDataURI`. The URI is written relative to a placeholder (`BASE_PLACEHOLDER`) that the HTTP layer
replaces with the public base URL when it answers, so stored JSON stays right behind any proxy.
Each bulk element's location in the file is recorded so `/bulkdata` can read it by seek.

This module does not read files from disk or know about HTTP: it works on a `Dataset`.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

BASE_PLACEHOLDER = "@@APERTURE-BASE@@"
BULK_THRESHOLD = 1024
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

_TEXT_SINGLE = frozenset({"LT", "ST", "UT", "UR"})
_TEXT_MULTI = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI", "PN"})
_BINARY_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_SIZES = {code: struct.calcsize(code) for code in _BINARY_NUMBERS.values()}
_ASCII_VRS = frozenset({"UI", "CS", "DA", "TM", "DT", "AS", "IS", "DS"})
_FAST_CHARSETS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


@dataclass(frozen=True)
class BulkRef:
    """Where one bulk value lives in the stored file (offset None: only reachable by parsing)."""

    path: str  # e.g. "7FE00010" or "00540016/0/00181072"
    vr: str
    offset: int | None
    length: int | None


class NeedsPydicom(Exception):
    """The fast conversion declines this element; pydicom converts it."""


def instance_json(
    ds: Dataset, bulk_prefix: str, *, bulk: list[BulkRef], offsets_are_file_positions: bool = True
) -> dict[str, Any]:
    """DICOM JSON of `ds` with BulkDataURIs `{bulk_prefix}/{path}`; appends to `bulk`."""
    return _dataset(ds, "", bulk_prefix, bulk, offsets_are_file_positions, _charset(ds, "ascii"))


def _charset(ds: Dataset, inherited: str | None) -> str | None:
    raw = ds.get_item(0x00080005)
    if raw is None:
        return inherited
    value = raw.value if isinstance(raw, RawDataElement) else raw.value
    if isinstance(value, bytes):
        text = value.decode("ascii", "replace").strip(" \x00")
    elif isinstance(value, str):
        text = value.strip()
    else:
        text = "\\".join(str(v) for v in value) if value else ""
    return _FAST_CHARSETS.get(text)


def _dataset(
    ds: Dataset, path: str, prefix: str, bulk: list[BulkRef], file_offsets: bool, encoding: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for base_tag in sorted(ds.keys()):
        tag = int(base_tag)
        if tag >> 16 == 0x0002 or tag & 0xFFFF == 0 or tag in (0xFFFCFFFC,):
            continue  # file meta, group lengths, padding are not part of the JSON model
        key = f"{tag:08X}"
        elem_path = f"{path}/{key}" if path else key
        raw = ds.get_item(tag)
        try:
            if encoding is None:
                raise NeedsPydicom
            out[key] = _fast(raw, tag, elem_path, prefix, bulk, file_offsets, encoding, ds)
        except NeedsPydicom:
            out[key] = _slow(ds, tag, elem_path, prefix, bulk, encoding, file_offsets)
    return out


def _fast(
    raw: RawDataElement | DataElement,
    tag: int,
    path: str,
    prefix: str,
    bulk: list[BulkRef],
    file_offsets: bool,
    encoding: str,
    ds: Dataset,
) -> dict[str, Any]:
    if not isinstance(raw, RawDataElement):
        if raw.VR == "SQ":  # offsets inside items are not reliable file positions: parse on demand
            return _sequence(raw.value, path, prefix, bulk, False, encoding)
        raise NeedsPydicom
    vr = raw.VR or dictionary_VR_or_none(tag)
    if vr is None or " or " in vr:
        raise NeedsPydicom
    offset = raw.value_tell if file_offsets else None
    return element_json(vr, raw.value, raw.length, offset, tag, path, prefix, bulk, raw.is_little_endian, encoding)


def element_json(
    vr: str,
    value: bytes | None,
    length: int,
    offset: int | None,
    tag: int,
    path: str,
    prefix: str,
    bulk: list[BulkRef],
    little_endian: bool,
    encoding: str,
) -> dict[str, Any]:
    """DICOM JSON of one element from its raw value (None: not read); raises NeedsPydicom.

    Shared by the pydicom path (`instance_json`) and the byte-level header reader
    (`aperture.dicom.header`), so both format every value the same way.
    """
    if vr in BULK_VRS:
        if not length:
            return {"vr": vr}  # F.2.5: present but empty, so no BulkDataURI nor InlineBinary either
        if value is None or length > BULK_THRESHOLD or tag in PIXEL_TAGS:
            bulk.append(BulkRef(path, vr, offset, length))
            return {"vr": vr, "BulkDataURI": f"{prefix}/{path}"}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
    if value is None:
        raise NeedsPydicom  # a long text value deferred by the reader
    if vr == "SQ":
        raise NeedsPydicom
    if not value:
        return {"vr": vr}
    code = _BINARY_NUMBERS.get(vr)
    if code is not None:
        size = _SIZES[code]
        if len(value) % size:
            raise NeedsPydicom
        endian = "<" if little_endian else ">"
        numbers = list(struct.unpack(f"{endian}{len(value) // size}{code}", value))
        if code in "fd" and any(math.isnan(n) or math.isinf(n) for n in numbers):
            raise NeedsPydicom
        return {"vr": vr, "Value": numbers}
    if vr == "AT":
        endian = "<" if little_endian else ">"
        count = len(value) // 4
        pairs = struct.unpack(f"{endian}{count * 2}H", value[: count * 4])
        return {"vr": vr, "Value": [f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2)]}
    try:
        text = value.decode("ascii" if vr in _ASCII_VRS else encoding)
    except UnicodeDecodeError:
        raise NeedsPydicom from None  # bytes outside the declared character set: pydicom's lenient decoding
    return text_json(vr, text)


def text_json(vr: str, text: str) -> dict[str, Any]:
    """DICOM JSON of a text VR's decoded value, as stored (values separated by backslashes).

    PS3.18 F.2.5: an attribute without a value has no "Value"; an empty value among several is a
    null array element. A single value that is only padding is no value. Raises NeedsPydicom for a
    VR that is not text.
    """
    if vr in _TEXT_SINGLE:
        text = text.rstrip(" \x00")
        return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    return _values_json(vr, text.split("\\"))


def _values_json(vr: str, parts: list[str]) -> dict[str, Any]:
    if vr == "PN":
        items: list[Any] = [_person_name(p) for p in parts]
    elif vr == "IS":
        items = [_number(p, int) for p in parts]
    elif vr == "DS":
        items = [_number(p, float) for p in parts]
    elif vr in _TEXT_MULTI:
        items = [p.strip(" \x00") or None for p in parts]
    else:
        raise NeedsPydicom
    if not items or (items == [None] and (vr not in ("IS", "DS") or not parts[0].strip(" \x00"))):
        return {"vr": vr}  # one empty value: padding only, or a name without component groups
    return {"vr": vr, "Value": items}


def dictionary_VR_or_none(tag: int) -> str | None:
    if tag >> 16 & 1:  # private group: the VR depends on the private creator
        return None
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _number(text: str, kind: Callable[[str], Any]) -> Any:
    """An IS or DS value as a JSON number; null when empty (F.2.5) or not finite (JSON has no NaN).

    A value that is no number at all stays the string stored: PS3.18 F.2.3 allows a string for IS
    and DS "to preserve the original format".
    """
    text = text.strip(" \x00")
    if not text:
        return None
    try:
        number = kind(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return text
        if kind is int and number.is_integer():
            return int(number)
        if math.isnan(number) or math.isinf(number):
            return None
        return text  # an IS with a fraction
    if isinstance(number, float) and (math.isnan(number) or math.isinf(number)):
        return None
    if isinstance(number, float) and number.is_integer() and "." not in text and "e" not in text.lower():
        return int(number)
    return number


def _person_name(text: str) -> dict[str, str] | None:
    """A PN value: its non-empty component groups (PS3.18 F.2.2); None (null) when it has none."""
    text = text.strip(" \x00")
    if not text:
        return None
    groups = text.split("=")
    names = ("Alphabetic", "Ideographic", "Phonetic")
    return {names[i]: g for i, g in enumerate(groups[:3]) if g} or None


def _sequence(
    seq: Sequence, path: str, prefix: str, bulk: list[BulkRef], file_offsets: bool, encoding: str | None
) -> dict[str, Any]:
    items = []
    for index, item in enumerate(seq):
        items.append(_dataset(item, f"{path}/{index}", prefix, bulk, file_offsets, _charset(item, encoding)))
    return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}


def _slow(
    ds: Dataset, tag: int, path: str, prefix: str, bulk: list[BulkRef], encoding: str | None, file_offsets: bool
) -> dict[str, Any]:
    """Convert through pydicom: exotic character sets, private tags, ambiguous VRs, odd values.

    pydicom decodes the values; text values are then written by `text_json`, as on the fast path,
    because pydicom's own `to_json_dict` writes empty values as "" and empty PN groups as "" (not
    PS3.18 F.2.5 and F.2.2) and fails on empty IS, DS and PN values among several.
    """
    raw = ds.get_item(tag)
    length = getattr(raw, "length", None)
    offset = getattr(raw, "value_tell", None) if file_offsets else None
    try:
        elem = ds[tag]
    except Exception:
        vr = (raw.VR if isinstance(raw, RawDataElement) else None) or "UN"
        if vr in ("IS", "DS") and isinstance(raw.value, bytes) and raw.value.isascii():
            return text_json(vr, raw.value.decode("ascii"))  # numbers pydicom refuses: see `_number`
        bulk.append(BulkRef(path, "UN", offset, length))
        return {"vr": "UN" if vr not in BULK_VRS else vr, "BulkDataURI": f"{prefix}/{path}"}
    if " or " in elem.VR:
        little = ds.is_little_endian if ds.is_little_endian is not None else True
        corrected = correct_ambiguous_vr_element(elem, ds, little)
        if isinstance(corrected, DataElement):
            elem = corrected
        if " or " in elem.VR:
            elem.VR = elem.VR.split(" or ")[0]
    if elem.VR == "SQ":
        return _sequence(elem.value, path, prefix, bulk, False, encoding)
    if elem.VR in BULK_VRS:
        value = elem.value
        if not value:
            return {"vr": elem.VR}  # F.2.5: present but empty
        if len(value) > BULK_THRESHOLD or tag in PIXEL_TAGS:
            bulk.append(BulkRef(path, elem.VR, offset, length))
            return {"vr": elem.VR, "BulkDataURI": f"{prefix}/{path}"}
    parts = _decoded_parts(elem)
    if parts is not None:  # the values pydicom split and decoded, written as the fast path writes them
        return text_json(elem.VR, "".join(parts)) if elem.VR in _TEXT_SINGLE else _values_json(elem.VR, parts)
    try:
        result = elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=1 << 62)
    except Exception:
        bulk.append(BulkRef(path, elem.VR, offset, length))
        return {"vr": elem.VR, "BulkDataURI": f"{prefix}/{path}"}
    return _clean(result)


def _decoded_parts(elem: DataElement) -> list[str] | None:
    """A text element's values as pydicom decoded them, as strings; None for other VRs and values."""
    if elem.VR not in _TEXT_SINGLE and elem.VR not in _TEXT_MULTI and elem.VR not in ("IS", "DS"):
        return None
    value = elem.value
    if value is None:
        return []
    values = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    if not all(v is None or isinstance(v, (str, PersonName, int, float, Decimal)) for v in values):
        return None  # e.g. bytes pydicom could not decode
    return ["" if v is None else str(v) for v in values]


def _clean(result: dict[str, Any]) -> dict[str, Any]:
    """JSON cannot carry NaN/Infinity; such values become null so the document stays valid."""
    values = result.get("Value")
    if values:
        result["Value"] = [None if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else v for v in values]
    return result
