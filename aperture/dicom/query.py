"""QIDO-RS query parameters parsed into a typed `Query` (PS3.18 §8.3.4, PS3.4 C.2.2.2).

Parsing is strict where a mistake would silently change the answer: an unknown key, a malformed
date range, a non-numeric limit are errors that name the key, never ignored. The store turns a
`Query` into SQL; `aperture.dicom.matching` evaluates what SQL cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from aperture.dicom.attributes import MODALITIES_IN_STUDY, Level


class QueryError(ValueError):
    """The query cannot be answered as written; the message names the key."""


class Match(StrEnum):
    UNIVERSAL = "universal"  # empty value: return the attribute, match everything
    SINGLE = "single"
    LIST = "list"  # UID list matching, '\\' or ',' separated
    WILDCARD = "wildcard"
    RANGE = "range"


@dataclass(frozen=True)
class Condition:
    tag: int
    keyword: str
    vr: str
    match: Match
    value: str = ""
    values: tuple[str, ...] = ()
    low: str = ""
    high: str = ""
    sequence_path: tuple[int, ...] = ()  # outer sequence tags for "Seq.Attr" keys


@dataclass(frozen=True)
class Query:
    level: Level
    conditions: tuple[Condition, ...] = ()
    include_all: bool = False
    include: frozenset[int] = frozenset()
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False


_RESERVED = {"includefield", "limit", "offset", "fuzzymatching", "charset"}
_IGNORED = {"accept", "callback"}  # PS3.18 §8.3.3.1 query parameters that are not matching keys
_RANGE_VRS = {"DA", "TM", "DT"}
_WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT", "AS"}
_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_DT = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")


def parse_attribute(name: str) -> tuple[int, str]:
    """A QIDO attribute id (keyword or 8 hex digits) as (tag, keyword); QueryError if unknown."""
    name = name.strip()
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        tag = int(name, 16)
        return tag, keyword_for_tag(tag) or name.upper()
    tag = tag_for_keyword(name)
    if tag is None:
        raise QueryError(f"Unknown query key '{name}': use a DICOM keyword (e.g. PatientName) or a tag (00100010).")
    return int(tag), name


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def parse_query(params: list[tuple[str, str]], level: Level, *, default_limit: int, max_limit: int) -> Query:
    """Turn (key, value) pairs from the URL into a Query for `level`."""
    conditions: list[Condition] = []
    include: set[int] = set()
    include_all = False
    limit: int | None = default_limit
    offset = 0
    fuzzy = False
    for key, value in params:
        lowered = key.lower()
        if lowered in _IGNORED:
            continue
        if lowered == "includefield":
            for item in filter(None, (v.strip() for v in value.split(","))):
                if item.lower() == "all":
                    include_all = True
                else:
                    include.add(parse_attribute(item)[0])
            continue
        if lowered == "limit":
            limit = _non_negative(key, value)
            if limit == 0:
                raise QueryError("limit must be at least 1; leave it out for the server's default page size.")
            if limit > max_limit:
                raise QueryError(f"limit={limit} is above this server's maximum of {max_limit}; page with offset.")
            continue
        if lowered == "offset":
            offset = _non_negative(key, value)
            continue
        if lowered == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise QueryError(f"fuzzymatching must be true or false, not '{value}'.")
            fuzzy = value.lower() == "true"
            continue
        if lowered == "charset":
            continue
        conditions.append(_condition(key, value, level))
    return Query(level, tuple(conditions), include_all, frozenset(include), limit, offset, fuzzy)


def _non_negative(key: str, value: str) -> int:
    if not value.isdigit():
        raise QueryError(f"{key} must be a non-negative integer, not '{value}'.")
    return int(value)


def _condition(key: str, value: str, level: Level) -> Condition:
    parts = key.split(".")
    path: list[int] = []
    for outer in parts[:-1]:
        tag, keyword = parse_attribute(outer)
        if _vr(tag) != "SQ":
            raise QueryError(f"'{keyword}' in query key '{key}' is not a sequence.")
        path.append(tag)
    tag, keyword = parse_attribute(parts[-1])
    if tag == 0x00080060 and level is Level.STUDY:  # Modality at study level means ModalitiesInStudy
        tag, keyword = MODALITIES_IN_STUDY, "ModalitiesInStudy"
    vr = _vr(tag)
    common = {"tag": tag, "keyword": keyword, "vr": vr, "sequence_path": tuple(path)}
    if value == "" or value == "*":
        return Condition(match=Match.UNIVERSAL, **common)
    if vr == "SQ":
        raise QueryError(f"'{keyword}' is a sequence: match on one of its attributes, e.g. {keyword}.CodeValue=…")
    if vr == "UI" and ("\\" in value or "," in value):
        values = tuple(v for v in re.split(r"[\\,]", value) if v)
        return Condition(match=Match.LIST, values=values, **common)
    if vr in _RANGE_VRS and _is_range(value, vr):
        low, _, high = value.partition("-")
        _check_temporal(key, low, vr, value)
        _check_temporal(key, high, vr, value)
        if not low and not high:
            raise QueryError(f"{key}='{value}' is an empty range.")
        return Condition(match=Match.RANGE, low=low, high=high, **common)
    if vr in _RANGE_VRS:
        _check_temporal(key, value, vr, value)
        return Condition(match=Match.SINGLE, value=value, **common)
    if ("*" in value or "?" in value) and vr in _WILDCARD_VRS:
        return Condition(match=Match.WILDCARD, value=value, **common)
    if vr in ("IS", "US", "SS", "UL", "SL") and not re.fullmatch(r"[+-]?\d+", value.strip()):
        raise QueryError(f"{key} must be an integer, not '{value}'.")
    return Condition(match=Match.SINGLE, value=value, **common)


def _is_range(value: str, vr: str) -> bool:
    """A '-' makes a range, except inside a DT's UTC offset ("20240101120000-0500" is one value)."""
    if "-" not in value:
        return False
    return vr != "DT" or not _DT.fullmatch(value)


_TEMPORAL_FORMS = {
    "DA": "YYYYMMDD or a range YYYYMMDD-YYYYMMDD (e.g. 20240131 or 20240101-20240131)",
    "TM": "HHMMSS (or HHMM, HH) or a range HHMMSS-HHMMSS (e.g. 1530 or 080000-120000)",
    "DT": "YYYYMMDDHHMMSS (or a shorter prefix) or a range of two (e.g. 20240131153000)",
}


def _check_temporal(key: str, text: str, vr: str, sent: str) -> None:
    """Refuse `text` (a value, or one end of the range `sent`) quoting what was sent, whole."""
    if not text:
        return
    pattern = {"DA": _DA, "TM": _TM, "DT": _DT}[vr]
    if not pattern.match(text.replace(":", "") if vr == "TM" else text):
        raise QueryError(f"{key}='{sent}' is not a valid {vr} value; write {_TEMPORAL_FORMS[vr]}.")
