"""PS3.4 C.2.2.2 wildcard matching on JSON values: the same answers as a plain glob, in linear time."""

from __future__ import annotations

import fnmatch
import random

from aperture.dicom.matching import wildcard_regex


def _glob(pattern: str, value: str) -> bool:
    """A reference: fnmatch without its [] sets (DICOM has only * and ?)."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def test_wildcards_match_exactly_what_a_glob_does() -> None:
    chooser = random.Random(12)
    for _ in range(20_000):
        pattern = "".join(chooser.choice("ab*?[.") for _ in range(chooser.randint(0, 7)))
        value = "".join(chooser.choice("ab[.\n") for _ in range(chooser.randint(0, 8)))
        assert bool(wildcard_regex(pattern, False).match(value)) == _glob(pattern, value), (pattern, value)


def test_case_is_ignored_only_when_asked() -> None:
    assert wildcard_regex("do*", True).match("DOE^JANE")
    assert not wildcard_regex("do*", False).match("DOE^JANE")


def test_many_stars_do_not_backtrack() -> None:
    """`*a*a*…*b` against "aaaa…" took minutes with one `.*` per star; a bounded loop shows it ends."""
    assert wildcard_regex("*a" * 60 + "*b", False).match("a" * 10_000) is None
    assert wildcard_regex("*a" * 60 + "*", False).match("a" * 10_000) is not None
