"""The FHIR search `/fhir/AuditEvent` answers (ITI-81 style): parameters to a searchset Bundle.

Parameters (FHIR R4 search, AuditEvent): `patient` (a reference `Patient/123` or a bare id),
`date` with the prefixes `eq` (default), `ge`, `gt`, `le`, `lt`, repeatable (each narrows the
range; a date without time means the whole UTC day, FHIR R4 search §3.1.1.4.2), `outcome` (the
AuditEvent code `0` or `4`, or `permit`/`deny`), `client` (Aperture's parameter: the OAuth
client_id; FHIR's `agent` takes a reference, which a client_id is not) and `_count`. Anything else
is refused with a 400, so a typo never widens a search to every event. A full page carries a
`next` link with the same parameters and the cursor `_page_before` (keyset paging: a page stays
exact while new events arrive at the top).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aperture.audit.events import Outcome
from aperture.audit.store import AuditFilter, AuditStore
from aperture.errors import InvalidRequest

MAX_COUNT = 1000
_OUTCOMES = {"0": Outcome.PERMIT, "permit": Outcome.PERMIT, "4": Outcome.DENY, "deny": Outcome.DENY}
_PREFIX = re.compile(r"^(eq|ge|gt|le|lt)?(\d{4}-\d{2}-\d{2}(?:T.*)?)$")


def date_interval(text: str) -> tuple[datetime, datetime]:
    """The [start, end) a FHIR date or dateTime stands for: a day, or one instant's second."""
    try:
        if "T" not in text:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start, start + timedelta(days=1)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(
            f"'{text}' is not a FHIR date or dateTime (e.g. 2026-12-02 or 2026-12-02T05:00:00Z)."
        ) from exc
    if moment.tzinfo is None:
        raise InvalidRequest(f"The dateTime '{text}' needs a time zone (e.g. Z): FHIR requires one with a time.")
    if moment.microsecond:
        return moment, moment + timedelta(microseconds=1)
    return moment, moment + timedelta(seconds=1)


def narrowed(query: AuditFilter, parameter: str) -> AuditFilter:
    """`query` further restricted by one `date` parameter value such as `ge2026-12-01`."""
    match = _PREFIX.match(parameter)
    if match is None:
        raise InvalidRequest(f"date '{parameter}' must be [eq|ge|gt|le|lt]YYYY-MM-DD[Thh:mm:ssZ].")
    prefix, text = match.group(1) or "eq", match.group(2)
    start, end = date_interval(text)
    since, until = {"eq": (start, end), "ge": (start, None), "gt": (end, None), "le": (None, end), "lt": (None, start)}[
        prefix
    ]
    if since is not None and (query.since is None or since > query.since):
        query = replace(query, since=since)
    if until is not None and (query.until is None or until < query.until):
        query = replace(query, until=until)
    return query


def parse_search(params: Mapping[str, Sequence[str]]) -> AuditFilter:
    """An AuditFilter from FHIR search parameters (name -> values, repeated names kept)."""
    query = AuditFilter()
    for name, values in params.items():
        for value in values:
            if name == "date":
                query = narrowed(query, value)
            elif name == "patient":
                query = replace(query, patient=value if "/" in value else f"Patient/{value}")
            elif name == "client":
                query = replace(query, client=value)
            elif name == "outcome":
                if value not in _OUTCOMES:
                    raise InvalidRequest(f"outcome '{value}' must be 0 or 4 (or permit, deny).")
                query = replace(query, outcome=_OUTCOMES[value])
            elif name == "_page_before":
                if not value.isdigit() or len(value) > 18:
                    raise InvalidRequest("_page_before is the cursor of a next link; follow the link as given.")
                query = replace(query, before_pk=int(value))
            elif name == "_count":
                if not value.isdigit() or not 0 < int(value) <= MAX_COUNT:
                    raise InvalidRequest(f"_count must be an integer from 1 to {MAX_COUNT}.")
                query = replace(query, limit=int(value))
            else:
                raise InvalidRequest(
                    f"AuditEvent search does not support '{name}'; use patient, date, client, outcome or _count."
                )
    return query


def search_bundle(store: AuditStore, params: Mapping[str, Sequence[str]], base: str) -> dict[str, Any]:
    """A FHIR R4 searchset Bundle of the AuditEvents matching `params`; `base` is the FHIR base URL."""
    query = parse_search(params)
    found = store.find(replace(query, limit=query.limit + 1))  # one more says whether a next page exists
    events, more = found[: query.limit], len(found) > query.limit
    kept = [(name, value) for name, values in params.items() if name != "_page_before" for value in values]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if not more and query.before_pk is None:  # everything matching is on this one page
        bundle["total"] = len(events)
    links = [{"relation": "self", "url": _url(base, [*kept, *_cursor(query.before_pk)])}]
    if more:
        links.append({"relation": "next", "url": _url(base, [*kept, ("_page_before", str(events[-1].pk))])})
    bundle["link"] = links
    bundle["entry"] = [
        {"fullUrl": f"{base}/AuditEvent/{event.pk}", "resource": event.document, "search": {"mode": "match"}}
        for event in events
    ]
    return bundle


def _cursor(before_pk: int | None) -> list[tuple[str, str]]:
    return [] if before_pk is None else [("_page_before", str(before_pk))]


def _url(base: str, pairs: list[tuple[str, str]]) -> str:
    return f"{base}/AuditEvent" + (f"?{urlencode(pairs)}" if pairs else "")
