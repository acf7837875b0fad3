"""`_lastUpdated` values as epoch-second bounds on the index's `updated` column.

FHIR R4 §3.1.1.4.2 (search, date parameters): a value covers the whole range its precision implies
(`2026-02` is all of February) and the prefixes compare ranges: `gt` = after the end, `ge` = from
the start, `lt` = before the start, `le` = before the end, `eq` (none) = within. A value without a
time zone is taken as UTC (R4 leaves it to the server when the value has no time).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aperture.errors import InvalidRequest

_VALUE = re.compile(
    r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)
PREFIXES = ("gt", "ge", "lt", "le", "eq")


def _range(value: str) -> tuple[int, int]:
    """`[low, high)` in epoch seconds that `value` (a FHIR date, dateTime or instant) covers."""
    match = _VALUE.fullmatch(value)
    if match is None:
        raise InvalidRequest(
            f"_lastUpdated {value[:40]!r} is not a FHIR date such as 2026-02-03 or 2026-02-03T10:00:00Z "
            "(prefix gt, ge, lt, le or eq)."
        )
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        if month is None:
            low = datetime(int(year), 1, 1, tzinfo=UTC)
            high = datetime(int(year) + 1, 1, 1, tzinfo=UTC)
        elif day is None:
            low = datetime(int(year), int(month), 1, tzinfo=UTC)
            high = (low + timedelta(days=32)).replace(day=1)
        elif hour is None:
            low = datetime(int(year), int(month), int(day), tzinfo=UTC)
            high = low + timedelta(days=1)
        else:
            text = f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{zone or '+00:00'}".replace("Z", "+00:00")
            low = datetime.fromisoformat(text).astimezone(UTC)
            # the index keeps whole seconds: a fractional instant falls inside its second
            high = low + (timedelta(seconds=1) if second else timedelta(minutes=1))
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(f"_lastUpdated {value[:40]!r} is not a valid date: {exc}.") from None
    return int(low.timestamp()), int(high.timestamp())


def updated_bounds(values: list[str]) -> tuple[int | None, int | None]:
    """The `[from, before)` epoch-second window all `_lastUpdated` values together allow."""
    start: int | None = None
    end: int | None = None
    for raw in values:
        prefix, value = (raw[:2], raw[2:]) if raw[:2] in PREFIXES else ("eq", raw)
        low, high = _range(value)
        lower = {"gt": high, "ge": low, "eq": low}.get(prefix)
        upper = {"lt": low, "le": high, "eq": high}.get(prefix)
        if lower is not None:
            start = lower if start is None else max(start, lower)
        if upper is not None:
            end = upper if end is None else min(end, upper)
    return start, end
