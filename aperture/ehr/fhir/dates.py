"""FHIR dates as half-open ranges, so that searches compare them by precision as FHIR R4 §3.1.1.4.2 says.

`2026-02` is the whole of February: `date=2026-02` matches a report of 2026-02-03, and
`date=ge2026-02-03` matches it too. Every value becomes `[low, high)` in one sortable text form
(`YYYY-MM-DDTHH:MM:SS` in UTC); values without a time zone are taken as UTC.

Digits are ASCII only (`\\d` would take any Unicode digit, such as a fullwidth ２０２６). Both ends of
the range must be datetimes in UTC between years 0001 and 9999, so the latest whole day that can be
compared is 9999-12-30 (the end of 9999-12-31 would be in year 10000), and a time zone offset may not
push a moment out of those years (`0001-01-01T00:00:00+14:00` is in year 0). Anything outside is an
InvalidRequest that says so, never an OverflowError.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aperture.ehr.errors import InvalidRequest

_FORMAT = "%Y-%m-%dT%H:%M:%S"
_DATE = re.compile(
    r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"
)
SUPPORTED_RANGE = "0001-01-01 to 9999-12-30, in UTC"
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


def date_range(value: str) -> tuple[str, str]:
    """The range `[low, high)` a FHIR date, dateTime or instant covers, as sortable text."""
    match = _DATE.fullmatch(value)
    if match is None:
        raise InvalidRequest(f"{shown(value)} is not a FHIR date such as 2026-02-03 or 2026-02-03T10:00:00Z.")
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        if month is None:
            low = datetime(int(year), 1, 1, tzinfo=UTC)
            high = low.replace(year=low.year + 1)
        elif day is None:
            low = datetime(int(year), int(month), 1, tzinfo=UTC)
            high = low.replace(year=low.year + 1, month=1) if low.month == 12 else low.replace(month=low.month + 1)
        elif hour is None:
            low = datetime(int(year), int(month), int(day), tzinfo=UTC)
            high = low + timedelta(days=1)
        else:
            moment = datetime.fromisoformat(f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{zone or '+00:00'}")
            low = moment.astimezone(UTC)
            high = low + (timedelta(seconds=1) if second else timedelta(minutes=1))
    except OverflowError:
        raise InvalidRequest(f"{shown(value)} is outside the dates this server compares ({SUPPORTED_RANGE}).") from None
    except ValueError as exc:
        if "out of range" in str(exc) and "year" in str(exc):
            raise InvalidRequest(
                f"{shown(value)} is outside the dates this server compares ({SUPPORTED_RANGE})."
            ) from None
        raise InvalidRequest(f"{shown(value)} is not a valid date: {exc}.") from None
    return low.strftime(_FORMAT), high.strftime(_FORMAT)


def shown(value: str, limit: int = 40) -> str:
    """`value` quoted for a message, cut to `limit` characters (a caller may send thousands)."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."


def split_prefix(value: str) -> tuple[str, str]:
    """`ge2026-01-01` -> ('ge', '2026-01-01'); no prefix means eq."""
    if value[:2] in PREFIXES:
        return value[:2], value[2:]
    return "eq", value
