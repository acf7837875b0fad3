"""PS3.4 C.2.2.2 attribute matching, evaluated on DICOM JSON values.

The index answers the common keys in SQL; this module answers the rest (any other attribute,
sequence matching) against the stored JSON, with the same rules: single value (case-insensitive
for PN, exact otherwise), UID list, `*`/`?` wildcards, and DA/TM/DT ranges. `fuzzy` widens PN
matching to a prefix match of any name component; it never narrows a match.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from aperture.dicom.query import Condition, Match


@lru_cache(maxsize=256)
def wildcard_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """A regex for a `*`/`?` pattern that never backtracks into a `*` (linear, not exponential).

    Translating each `*` to `.*` lets `*a*a*a*a*b` against "aaaa…" backtrack through every way of
    splitting the value (minutes for one query). A glob matches exactly when each piece between
    stars is found at its leftmost place after the previous one, the first at the start and the
    last at the end, so every middle piece is an atomic group: once found, never revisited.
    """
    pieces = ["".join("." if ch == "?" else re.escape(ch) for ch in piece) for piece in pattern.split("*")]
    if len(pieces) == 1:
        body = pieces[0] + r"\Z"
    else:
        middle = "".join(f"(?>.*?{piece})" for piece in pieces[1:-1] if piece)
        body = pieces[0] + middle + (f".*{pieces[-1]}\\Z" if pieces[-1] else "")
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _strings(element: dict[str, Any] | None) -> list[str]:
    if not element:
        return []
    values = element.get("Value") or []
    out = []
    for value in values:
        if isinstance(value, dict):  # PN
            out.append("=".join(value.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")).rstrip("="))
        elif value is not None:
            out.append(str(value))
    return out


def matches(condition: Condition, dataset: dict[str, Any], *, fuzzy: bool = False) -> bool:
    """Whether the DICOM JSON `dataset` matches `condition` (sequence paths included)."""
    if condition.match is Match.UNIVERSAL:
        return True
    if condition.sequence_path:
        return _match_in_sequence(condition, dataset, condition.sequence_path, fuzzy)
    return value_matches(condition, _strings(dataset.get(f"{condition.tag:08X}")), fuzzy=fuzzy)


def _match_in_sequence(condition: Condition, dataset: dict[str, Any], path: tuple[int, ...], fuzzy: bool) -> bool:
    element = dataset.get(f"{path[0]:08X}") or {}
    for item in element.get("Value") or []:
        if len(path) > 1:
            if _match_in_sequence(condition, item, path[1:], fuzzy):
                return True
        elif value_matches(condition, _strings(item.get(f"{condition.tag:08X}")), fuzzy=fuzzy):
            return True
    return False


def value_matches(condition: Condition, values: list[str], *, fuzzy: bool = False) -> bool:
    """Any of an attribute's values matching is a match (PS3.4 C.2.2.2 for multi-valued attributes)."""
    if condition.match is Match.UNIVERSAL:
        return True
    return any(_one(condition, value, fuzzy) for value in values)


def _one(condition: Condition, value: str, fuzzy: bool) -> bool:
    pn = condition.vr == "PN"
    if condition.match is Match.LIST:
        return value in condition.values
    if condition.match is Match.RANGE:
        return range_matches(value, condition.low, condition.high)
    if condition.match is Match.WILDCARD:
        if wildcard_regex(condition.value, pn).match(value):
            return True
        return pn and fuzzy and fuzzy_name_matches(condition.value, value)
    if pn:
        if value.upper() == condition.value.upper():
            return True
        return fuzzy and fuzzy_name_matches(condition.value, value)
    return value == condition.value


def range_matches(value: str, low: str, high: str) -> bool:
    """Inclusive range on DA/TM/DT text; comparing aligned prefixes keeps partial times correct."""
    value = value.replace(":", "")
    if low and value[: len(low)] < low.replace(":", ""):
        return False
    if high and value[: len(high)] > high.replace(":", ""):
        return False
    return True


def fuzzy_name_matches(query: str, name: str) -> bool:
    """Each word of the query is a prefix of some component of the name, case-insensitively."""
    words = [w for w in re.split(r"[\s^,=]+", query.replace("*", "").replace("?", "").upper()) if w]
    components = [c for c in re.split(r"[\s^=]+", name.upper()) if c]
    return bool(words) and all(any(c.startswith(w) for c in components) for w in words)
