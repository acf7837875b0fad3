"""QIDO-RS query parameters parsed into a typed `Query` (PS3.18 §8.3.4, PS3.4 C.2.2.2).

Parsing is strict where a mistake would silently change the answer: an unknown key, a malformed
date range, a non-numeric limit are errors that name the key, never ignored. The store turns a
`Query` into SQL; `aperture.dicom.matching` evaluates what SQL cannot.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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
# Bounds on what one query may ask for, so that no single request sets unbounded work or memory
# (each is a 400 naming the bound; docs/dicomweb.md lists them). The HTTP server bounds the whole
# URL, and so every value, at 65,534 bytes (414 past it).
MAX_OFFSET = 1_000_000_000  # more than any archive holds rows; larger values overflow SQL integers
MAX_KEYS = 64  # matching keys in one query (a viewer or worklist sends a handful)
MAX_INCLUDE_FIELDS = 256  # attributes named by includefield, all includefield parameters together
MAX_LIST_VALUES = 1000  # UIDs in one list match (each becomes a SQL parameter)
MAX_WILDCARD_CHARS = 128  # a value with * or ?: matching costs its length times the value's
MAX_MODALITIES = 64  # modalities in one ModalitiesInStudy match (each becomes a SQL LIKE)
MAX_FUZZY_WORDS = 16  # words of a person name matched fuzzily (each becomes three SQL LIKEs)
MAX_SEQUENCE_DEPTH = 16  # sequences in a 'Seq.Seq.Attr' key
_NAME_WORDS = re.compile(r"[\s^,=*?]+")
# The integer VRs and the range of values each can hold (PS3.5 Table 6.2-1).
INTEGER_RANGES = {
    "IS": (-(2**31), 2**31 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "US": (0, 2**16 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UL": (0, 2**32 - 1),
    "SV": (-(2**63), 2**63 - 1),
    "UV": (0, 2**64 - 1),
}
_DECIMAL_VRS = {"DS", "FL", "FD"}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")
_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_DT = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")


def parse_attribute(name: str) -> tuple[int, str]:
    """A QIDO attribute id (keyword or 8 hex digits) as (tag, keyword); QueryError if unknown."""
    name = name.strip()
    if not name:
        raise QueryError("A query key is empty (as in '?=value'): name a DICOM keyword or tag before '='.")
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        tag = int(name, 16)
        return tag, keyword_for_tag(tag) or name.upper()
    found = tag_for_keyword(name)
    if found is None:
        raise QueryError(f"Unknown query key '{name}': use a DICOM keyword (e.g. PatientName) or a tag (00100010).")
    return int(found), name


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
                if len(include) >= MAX_INCLUDE_FIELDS:
                    raise QueryError(f"includefield names over {MAX_INCLUDE_FIELDS} attributes; use includefield=all.")
                if item.lower() == "all":
                    include_all = True
                else:
                    include.add(parse_attribute(item)[0])
            continue
        if lowered == "limit":
            limit = _non_negative(key, value, max_limit, "; page with offset")
            if limit == 0:
                raise QueryError("limit must be at least 1; leave it out for the server's default page size.")
            continue
        if lowered == "offset":
            offset = _non_negative(key, value, MAX_OFFSET)
            continue
        if lowered == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise QueryError(f"fuzzymatching must be true or false, not '{value}'.")
            fuzzy = value.lower() == "true"
            continue
        if lowered == "charset":
            continue
        if len(conditions) >= MAX_KEYS:
            raise QueryError(f"The query has more than {MAX_KEYS} matching keys; at most {MAX_KEYS} are accepted.")
        if "\x00" in value:  # no DICOM value holds one, and PostgreSQL refuses it in any string
            raise QueryError(f"{key[:64]} holds a NUL character (%00), which no DICOM value contains; remove it.")
        conditions.append(_condition(key, value, level))
    if fuzzy:
        for cond in conditions:
            if cond.vr == "PN" and len(_NAME_WORDS.split(cond.value.strip(" ^,=*?"))) > MAX_FUZZY_WORDS:
                raise QueryError(
                    f"{cond.keyword} has more than {MAX_FUZZY_WORDS} words to match with fuzzymatching=true."
                )
    return Query(level, tuple(conditions), include_all, frozenset(include), limit, offset, fuzzy)


def _non_negative(key: str, value: str, maximum: int, hint: str = "") -> int:
    # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
    if not value.isascii() or not value.isdigit():
        raise QueryError(f"{key} must be a non-negative integer, not '{value[:40]}'.")
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(maximum)) or int(digits) > maximum:  # never int() of thousands of digits
        raise QueryError(f"{key}={digits[:40]} is above this server's maximum of {maximum}{hint}.")
    return int(digits)


def _condition(key: str, value: str, level: Level) -> Condition:
    parts = key.split(".")
    if len(parts) > MAX_SEQUENCE_DEPTH + 1:
        raise QueryError(f"Query key {key[:80]}... nests more than {MAX_SEQUENCE_DEPTH} sequences.")
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
    if tag == MODALITIES_IN_STUDY and value.count("\\") + value.count(",") >= MAX_MODALITIES:
        raise QueryError(f"{key} lists more than {MAX_MODALITIES} modalities; at most {MAX_MODALITIES} are accepted.")
    common: dict[str, Any] = {"tag": tag, "keyword": keyword, "vr": vr, "sequence_path": tuple(path)}
    if value == "" or value == "*":
        return Condition(match=Match.UNIVERSAL, **common)
    if vr == "SQ":
        raise QueryError(f"'{keyword}' is a sequence: match on one of its attributes, e.g. {keyword}.CodeValue=…")
    if vr == "UI" and ("\\" in value or "," in value):
        values = tuple(v for v in re.split(r"[\\,]", value) if v)
        if len(values) > MAX_LIST_VALUES:
            raise QueryError(f"{key} lists {len(values)} UIDs; at most {MAX_LIST_VALUES} are accepted in one query.")
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
        if len(value) > MAX_WILDCARD_CHARS:
            raise QueryError(
                f"{key} is a wildcard match of {len(value)} characters; at most {MAX_WILDCARD_CHARS} are accepted."
            )
        return Condition(match=Match.WILDCARD, value=value, **common)
    if vr in INTEGER_RANGES:
        return Condition(match=Match.SINGLE, value=_integer(key, value, vr), **common)
    if vr in _DECIMAL_VRS:
        _decimal(key, value, vr)
    return Condition(match=Match.SINGLE, value=value, **common)


def _integer(key: str, value: str, vr: str) -> str:
    """An integer key's value in canonical form ("+007" is "7"), or QueryError outside its VR's range."""
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        raise QueryError(f"{key} must be an integer, not '{value[:40]}'.")
    low, high = INTEGER_RANGES[vr]
    too_long = len(text.lstrip("+-").lstrip("0")) > 20  # past every range: never int() of thousands of digits
    if too_long or not low <= (number := int(text)) <= high:
        raise QueryError(f"{key} is {vr}: an integer from {low} to {high}, not {text}.")
    return str(number)


def _decimal(key: str, value: str, vr: str) -> None:
    text = value.strip()
    if not _DECIMAL.fullmatch(text) or (vr == "DS" and len(text) > 16) or not math.isfinite(float(text)):
        limit = " of at most 16 characters" if vr == "DS" else ""
        raise QueryError(f"{key} is {vr}: a finite decimal number{limit}, not '{value[:40]}'.")


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
