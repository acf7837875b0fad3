"""The Native DICOM Model (PS3.19 Annex A): DICOM XML, written from the DICOM JSON of an instance.

`/metadata` and QIDO-RS answer DICOM XML when asked (PS3.18 Table 10.4.4-1 lists
`multipart/related; type="application/dicom+xml"` as required for metadata, and search results come in
the same media types), so the XML is made from the same JSON documents (PS3.18 Annex F) the index
stores: one conversion, no file opened. What JSON lacks is derived:
- `keyword` (PS3.19 Table A.1.5-2: required unless the element is unknown) from pydicom's data
  dictionary, for public attributes (private ones have none there);
- `privateCreator` for a private data element (gggg,xxee) from the value of its creator element
  (gggg,00xx) in the same data set (PS3.5 §7.8.1); its `tag` is then gggg00ee, the block not being
  sent (Table A.1.5-2). One whose creator element is missing keeps its whole tag and has none;
- person names split into FamilyName, GivenName, MiddleName, NamePrefix, NameSuffix (the five `^`
  components, PS3.5 §6.2) under Alphabetic / Ideographic / Phonetic (the `=` groups).
Element and attribute names and nesting follow the normative schema (PS3.19 §A.1.6): elements are in
its namespace `http://dicom.nema.org/PS3.19/models/NativeDICOM`, and the root carries
`xml:space="preserve"` (Table A.1.5-1). A zero-length attribute is a DicomAttribute with no child; an
empty value among several (JSON `null`) is a Value (or PersonName) with its number and no text, so
values keep their positions. Binary values are `<InlineBinary>` (base64) or `<BulkData uri=…>`, as
in the JSON. The document is UTF-8; the values are the same Unicode text the JSON holds, and
Specific Character Set (0008,0005) keeps the value the file has, as it does in the JSON.

XML 1.0 cannot carry most control characters, even as references: one in a value becomes U+FFFD.
Carriage returns are written as `&#13;` so that parsers, which would fold CR LF to LF, keep them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydicom.datadict import keyword_for_tag

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_HEAD = f'<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xmlns="{NAMESPACE}" xml:space="preserve">\n'
_TAIL = "</NativeDicomModel>\n"
_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_NOT_XML: dict[str | int, str] = {c: "\ufffd" for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)}
_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;", **_NOT_XML})
_ATTRIBUTE = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;", **_NOT_XML}
)
_ODD = frozenset("13579BDFbdf")
# Outside XML 1.0's Char production (§2.2) beyond the C0 controls: lone surrogates, U+FFFE, U+FFFF.
_NOT_XML_WIDE = re.compile("[\ud800-\udfff\ufffe\uffff]")


def native_xml(dataset: Mapping[str, Any]) -> bytes:
    """The Native DICOM Model document of one parsed DICOM JSON object (an instance or a match), UTF-8."""
    out = [_HEAD]
    _dataset(dataset, out)
    out.append(_TAIL)
    return "".join(out).encode("utf-8")


def _dataset(dataset: Mapping[str, Any], out: list[str]) -> None:
    creators: dict[str, str | None] | None = None
    for key in sorted(dataset):
        element = dataset[key]
        vr = element.get("vr", "UN")
        if key[3] in _ODD:  # private: creators (gggg,0010-00FF) are plain LO, data elements name their creator
            if creators is None:
                creators = _creators(dataset)
            creator = creators.get(f"{key[:4]}00{key[4:6]}".upper()) if int(key[4:], 16) >= 0x1000 else None
            out.append(_private_opening(key, vr, creator))
        else:
            out.append(_opening(key, vr))
        if "Value" in element:
            values = element["Value"]
            if vr == "SQ":
                for n, item in enumerate(values, 1):
                    out.append(f'\n<Item number="{n}">\n')
                    _dataset(item or {}, out)
                    out.append("</Item>")
            elif vr == "PN":
                for n, name in enumerate(values, 1):
                    out.append(_person_name(n, name))
            else:
                for n, value in enumerate(values, 1):
                    out.append(_value(n, value))
            out.append("\n")
        elif "BulkDataURI" in element:
            out.append(f'\n<BulkData uri="{_attribute(element["BulkDataURI"])}"/>\n')
        elif "InlineBinary" in element:
            out.append(f"\n<InlineBinary>{element['InlineBinary']}</InlineBinary>\n")
        out.append("</DicomAttribute>\n")


@lru_cache(maxsize=8192)
def _opening(key: str, vr: str) -> str:
    """The start tag of a public attribute, with the PS3.6 keyword ("" if the dictionary has none)."""
    tag = key.upper()
    keyword = keyword_for_tag(int(tag, 16))
    named = f' keyword="{keyword}"' if keyword else ""
    return f'<DicomAttribute tag="{tag}" vr="{_vr(vr)}"{named}>'


@lru_cache(maxsize=8192)
def _private_opening(key: str, vr: str, creator: str | None) -> str:
    """The start tag of a private attribute: gggg00ee with its creator (PS3.19 Table A.1.5-2), else as it is."""
    tag = key.upper()
    if creator is None:
        return f'<DicomAttribute tag="{tag}" vr="{_vr(vr)}">'
    return f'<DicomAttribute tag="{tag[:4]}00{tag[6:]}" vr="{_vr(vr)}" privateCreator="{_attribute(creator)}">'


def _vr(vr: str) -> str:
    return vr if len(vr) == 2 and vr.isalpha() and vr.isupper() else "UN"


def _creators(dataset: Mapping[str, Any]) -> dict[str, str | None]:
    """Private creator values by their tag (gggg,0010-00FF) in one data set."""
    found: dict[str, str | None] = {}
    for key, element in dataset.items():
        if key[3] in _ODD and key[4:6] == "00" and "10" <= key[6:].upper() <= "FF":
            values = element.get("Value") if isinstance(element, Mapping) else None
            found[key.upper()] = values[0] if values and isinstance(values[0], str) else None
    return found


def _value(number: int, value: Any) -> str:
    if value is None:
        return f'\n<Value number="{number}"/>'
    text = _text(value) if isinstance(value, str) else str(value)  # numbers: their shortest exact spelling
    return f'\n<Value number="{number}">{text}</Value>'


def _person_name(number: int, name: Any) -> str:
    if not isinstance(name, Mapping):
        return f'\n<PersonName number="{number}"/>'
    groups = []
    for group in _GROUPS:
        text = name.get(group)
        if not text:
            continue
        components = text.split("^")
        if len(components) > len(_COMPONENTS):  # more than five is malformed: keep the rest in the last
            components = [*components[:4], "^".join(components[4:])]
        inner = "".join(
            f"\n<{label}>{_text(part)}</{label}>" for label, part in zip(_COMPONENTS, components, strict=False) if part
        )
        if inner:
            groups.append(f"\n<{group}>{inner}\n</{group}>")
    if not groups:
        return f'\n<PersonName number="{number}"/>'
    return f'\n<PersonName number="{number}">{"".join(groups)}\n</PersonName>'


def _text(value: str) -> str:
    if value.isascii() and value.isprintable() and "&" not in value and "<" not in value and ">" not in value:
        return value  # most values: nothing to escape
    value = value.translate(_TEXT)
    return value if value.isascii() else _NOT_XML_WIDE.sub("\ufffd", value)


def _attribute(value: str) -> str:
    value = value.translate(_ATTRIBUTE)
    return value if value.isascii() else _NOT_XML_WIDE.sub("\ufffd", value)
