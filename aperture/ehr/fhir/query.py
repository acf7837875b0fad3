"""A search request's parameters, parsed and checked before anything is looked up.

Repeated parameters are ANDed, comma-separated values ORed (FHIR R4 §3.1.1.4). A parameter the
type does not support, an unknown modifier or `_include` is a 400 OperationOutcome rather than
silently ignored: a filter quietly dropped would hand an app more than it asked for. Parameters
with empty values are ignored, as FHIR says.

Every refusal names the parameter (`_count: ...`) and says what it takes. Bounds keep a search a
size SQLite can run (its expression tree is at most 1000 deep, a LIKE pattern at most 50000 bytes):
at most MAX_PARAMETERS parameters, MAX_VALUES comma-separated values in one, MAX_VALUE_LENGTH
characters in a value. `_count` and `_offset` are ASCII digits, at most nine of them (`'²'.isdigit()`
is True, yet `int('²')` fails); `_count` above MAX_COUNT is served as MAX_COUNT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aperture.ehr.errors import InvalidRequest
from aperture.ehr.fhir.dates import date_range, shown, split_prefix
from aperture.ehr.fhir.params import INCLUDES, SearchParam, params_for

DEFAULT_COUNT = 50
MAX_COUNT = 500
MAX_PARAMETERS = 50  # non-empty parameters in one search
MAX_VALUES = 100  # comma-separated values in one parameter
MAX_VALUE_LENGTH = 1024  # characters in one value
MAX_SEARCH_BODY = 64 * 1024  # bytes of a POST _search form
_MODIFIERS = {"string": ("", "exact", "contains"), "token": ("",), "date": ("",), "reference": ("",), "uri": ("",)}
_JSON_FORMATS = ("json", "application/json", "application/fhir+json")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Criterion:
    param: SearchParam
    modifier: str
    values: tuple[str, ...]  # any of them matches


@dataclass(frozen=True)
class Search:
    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    ids: tuple[tuple[str, ...], ...] = ()  # each _id parameter: any of its ids
    count: int = DEFAULT_COUNT
    offset: int = 0
    includes: tuple[str, ...] = field(default=())

    def patients_named(self, fhir_base: str) -> set[str]:
        """Patient ids the search names in `patient`/`subject` (access control compares them to the token)."""
        return {
            patient_id(value, fhir_base)
            for c in self.criteria
            if c.param.name in ("patient", "subject")
            for value in c.values
        }


def patient_id(reference: str, fhir_base: str) -> str:
    """`123`, `Patient/123` or `{fhir_base}/Patient/123` -> `123`."""
    value = reference.removeprefix(f"{fhir_base}/").removeprefix("Patient/")
    if not _ID.fullmatch(value):
        raise InvalidRequest(f"{reference!r} is not a patient reference such as 123 or Patient/123.")
    return value


def normalize_reference(param: SearchParam, value: str, fhir_base: str) -> str:
    """A reference search value as the index holds it: `Type/id`."""
    if param.name in ("patient", "subject"):
        return f"Patient/{patient_id(value, fhir_base)}"
    return value.removeprefix(f"{fhir_base}/")


def _integer(name: str, value: str, maximum: int) -> int:
    if not _WHOLE_NUMBER.fullmatch(value):
        raise InvalidRequest(f"{name}: takes a whole number from 0 to 999999999 in digits 0-9, not {shown(value)}.")
    return min(int(value), maximum)


def _values(name: str, raw_value: str) -> tuple[str, ...]:
    values = tuple(v for v in raw_value.split(",") if v)
    if len(values) > MAX_VALUES:
        raise InvalidRequest(f"{name}: at most {MAX_VALUES} comma-separated values, not {len(values)}.")
    for value in values:
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidRequest(f"{name}: a value is at most {MAX_VALUE_LENGTH} characters, not {len(value)}.")
    return values


def _check_value(param: SearchParam, value: str) -> None:
    if param.type == "date":
        prefix, rest = split_prefix(value)
        date_range(rest)  # raises InvalidRequest for a malformed date


def parse_search(resource_type: str, pairs: list[tuple[str, str]], fhir_base: str) -> Search:
    """Parse the query `pairs` of a search on `resource_type`."""
    known = params_for(resource_type)
    criteria: list[Criterion] = []
    ids: list[tuple[str, ...]] = []
    count, offset, includes = DEFAULT_COUNT, 0, []
    given = [(name, value) for name, value in pairs if value != ""]
    if len(given) > MAX_PARAMETERS:
        raise InvalidRequest(f"A search takes at most {MAX_PARAMETERS} parameters, not {len(given)}.")
    for raw_name, raw_value in given:
        name, _, modifier = raw_name.partition(":")
        if name == "_count":
            count = _integer("_count", raw_value, MAX_COUNT)
        elif name == "_offset":
            offset = _integer("_offset", raw_value, 10**9)
        elif name == "_format":
            if raw_value not in _JSON_FORMATS:
                raise InvalidRequest(f"_format: this server answers JSON only; {shown(raw_value)} is not supported.")
        elif name == "_include":
            if raw_value not in INCLUDES.get(resource_type, ()):
                raise InvalidRequest(f"_include: {shown(raw_value)} is not supported on {resource_type}.")
            includes.append(raw_value)
        elif name == "_id":
            ids.append(_values(name, raw_value))
        elif name in known:
            param = known[name]
            if modifier not in _MODIFIERS[param.type]:
                raise InvalidRequest(f"{shown(raw_name)}: the modifier :{shown(modifier)} is not supported.")
            values = _values(name, raw_value)
            try:
                for value in values:
                    _check_value(param, value)
                if param.type == "reference":
                    values = tuple(normalize_reference(param, v, fhir_base) for v in values)
            except InvalidRequest as exc:
                raise InvalidRequest(f"{name}: {exc.message}") from None
            criteria.append(Criterion(param, modifier, values))
        else:
            supported = ", ".join(["_id", *known, "_count"])
            raise InvalidRequest(f"{resource_type} cannot be searched by {shown(raw_name)}; supported: {supported}.")
    return Search(resource_type, tuple(criteria), tuple(ids), count, offset, tuple(includes))
