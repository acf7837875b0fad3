"""The FHIR search `/fhir/AuditEvent` answers: patient, date (ge/le/gt/lt/eq), client, outcome, _count, paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine

from aperture.audit.events import AccessRecord, Action, Outcome
from aperture.audit.search import search_bundle
from aperture.audit.store import AuditStore
from aperture.errors import InvalidRequest
from tests.audit.conftest import SERVER

BASE = "https://imaging.example.org/fhir"
DAY1 = datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)
DAY2 = datetime(2026, 12, 2, 0, 0, 0, tzinfo=UTC)


@pytest.fixture
def store(engine: Engine) -> AuditStore:
    store = AuditStore(engine, SERVER)
    store.insert(
        [
            AccessRecord(Action.READ, Outcome.PERMIT, 200, DAY1, "viewer", None, "Patient/ann", ("1.2.1",)),
            AccessRecord(Action.READ, Outcome.DENY, 403, DAY2, "viewer", None, "Patient/bob", ("1.2.2",)),
            AccessRecord(Action.SEARCH, Outcome.PERMIT, 200, DAY2 + timedelta(hours=5), "portal", None, "Patient/ann"),
            AccessRecord(Action.DELETE, Outcome.DENY, 401, DAY2 + timedelta(days=1), None, None, None, ("1.2.3",)),
        ]
    )
    return store


def _found(store: AuditStore, **params: str | list[str]) -> list[str]:
    """Each match as `<patient or -> <outcome code> <recorded>`, newest first."""
    bundle = search_bundle(store, {k: v if isinstance(v, list) else [v] for k, v in params.items()}, BASE)
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    found = []
    for entry in bundle["entry"]:
        event = entry["resource"]
        assert entry["fullUrl"] == f"{BASE}/AuditEvent/{event['id']}" and entry["search"] == {"mode": "match"}
        patient = next((e["what"]["reference"] for e in event["entity"] if e["role"]["code"] == "1"), "-")
        found.append(f"{patient} {event['outcome']} {event['recorded'][:19]}")
    return found


def test_search_by_patient_client_outcome(store: AuditStore) -> None:
    assert _found(store, patient="ann") == ["Patient/ann 0 2026-12-02T05:00:00", "Patient/ann 0 2026-12-01T23:59:59"]
    assert _found(store, patient="Patient/bob") == ["Patient/bob 4 2026-12-02T00:00:00"]
    assert _found(store, client="portal") == ["Patient/ann 0 2026-12-02T05:00:00"]
    assert _found(store, outcome="4") == ["- 4 2026-12-03T00:00:00", "Patient/bob 4 2026-12-02T00:00:00"]
    assert _found(store, outcome="deny", client="viewer") == ["Patient/bob 4 2026-12-02T00:00:00"]
    assert _found(store, patient="nobody") == []


def test_search_by_date_prefixes(store: AuditStore) -> None:
    assert _found(store, date="2026-12-02") == [
        "Patient/ann 0 2026-12-02T05:00:00",
        "Patient/bob 4 2026-12-02T00:00:00",
    ]
    assert _found(store, date=["ge2026-12-02", "le2026-12-02"]) == _found(store, date="2026-12-02")
    assert _found(store, date="lt2026-12-02") == ["Patient/ann 0 2026-12-01T23:59:59"]
    assert _found(store, date="gt2026-12-02") == ["- 4 2026-12-03T00:00:00"]
    assert _found(store, date="ge2026-12-02T05:00:00Z", patient="ann") == ["Patient/ann 0 2026-12-02T05:00:00"]
    # 01:00 at +01:00 is midnight UTC: le keeps the event at that second, lt does not
    at_midnight = ["Patient/bob 4 2026-12-02T00:00:00", "Patient/ann 0 2026-12-01T23:59:59"]
    assert _found(store, date="le2026-12-02T01:00:00+01:00") == at_midnight
    assert _found(store, date="lt2026-12-02T01:00:00+01:00") == at_midnight[1:]


def test_count_limits_and_total_only_when_complete(store: AuditStore) -> None:
    bundle = search_bundle(store, {"_count": ["2"]}, BASE)
    assert len(bundle["entry"]) == 2 and "total" not in bundle
    assert search_bundle(store, {"outcome": ["0"]}, BASE)["total"] == 2


def test_next_links_page_through_every_event_once_newest_first(store: AuditStore) -> None:
    """Keyset paging: `next` carries the filters and a cursor; the pages together are the whole list."""
    everything = _found(store)
    seen: list[str] = []
    params: dict[str, list[str]] = {"_count": ["1"]}
    for _ in range(10):  # bounded: four events, one per page
        bundle = search_bundle(store, params, BASE)
        seen += [f"{e['resource']['id']}" for e in bundle["entry"]]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert links["self"].startswith(f"{BASE}/AuditEvent?")
        if "next" not in links:
            break
        query = parse_qs(urlsplit(links["next"]).query)
        assert query["_count"] == ["1"]
        params = query
    assert len(seen) == len(everything) == 4 and len(set(seen)) == 4
    # the filters travel with the cursor
    (first,) = search_bundle(store, {"_count": ["1"], "patient": ["ann"]}, BASE)["link"][1:]
    assert "patient=ann" in first["url"] and "_page_before=" in first["url"]
    later = search_bundle(store, parse_qs(urlsplit(first["url"]).query), BASE)
    assert [e["resource"]["id"] for e in later["entry"]] and all(
        e["resource"]["entity"][0]["what"]["reference"] == "Patient/ann" for e in later["entry"]
    )


@pytest.mark.parametrize(
    "params",
    [{"agent": ["x"]}, {"outcome": ["8x"]}, {"date": ["2026-13-01"]}, {"date": ["ne2026-12-01"]},
     {"date": ["2026-12-01T05:00:00"]}, {"_count": ["0"]}, {"_count": ["abc"]}],
)  # fmt: skip
def test_an_unknown_or_malformed_parameter_is_a_400_never_a_wider_search(
    store: AuditStore, params: dict[str, list[str]]
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        search_bundle(store, params, BASE)
    assert raised.value.status == 400
