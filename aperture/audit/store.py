"""Audit events in the index database (table `audit_events`, migration 0006), SQLite or PostgreSQL.

Each row keeps the AuditEvent JSON as `audit_event` wrote it, plus the columns a search filters
on (time, patient, client, outcome). The event's FHIR id is the row's key, added when it is read
back. An aggregated read is one row whose count and period grow (`update`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from aperture.audit.events import AccessRecord, Outcome, audit_event

_metadata = sa.MetaData()
audit_events = sa.Table(
    "audit_events",
    _metadata,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recorded", sa.DateTime, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("client_id", sa.Text),
    sa.Column("user_ref", sa.Text),
    sa.Column("patient", sa.Text),
    sa.Column("studies", sa.Text, nullable=False),
    sa.Column("source_address", sa.Text),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("document", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class AuditFilter:
    """What an audit search keeps: every given field must match; `since` inclusive, `until` exclusive."""

    patient: str | None = None  # a FHIR reference, Patient/123
    client: str | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    before_pk: int | None = None  # the paging cursor: only events older (in the list's order) than this one


@dataclass(frozen=True)
class StoredEvent:
    pk: int
    document: dict[str, Any]


def _naive_utc(moment: datetime) -> datetime:
    """The column's form: UTC without a zone (SQLite keeps no zone; both engines compare the same)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


class AuditStore:
    """Writes and finds audit events; `server` is the base URI the events name as the server agent."""

    def __init__(self, engine: Engine, server: str) -> None:
        self.engine = engine
        self.server = server

    def _row(self, record: AccessRecord) -> dict[str, Any]:
        document = audit_event(record, self.server)
        return {
            "recorded": _naive_utc(record.time),
            "action": record.action.value,
            "outcome": record.outcome.value,
            "status": record.status,
            "client_id": record.client_id,
            "user_ref": record.user,
            "patient": record.patient,
            "studies": " ".join(record.studies),
            "source_address": record.source_address,
            "count": record.count,
            "document": json.dumps(document, separators=(",", ":"), ensure_ascii=False),
        }

    def insert(self, records: Sequence[AccessRecord]) -> list[int]:
        """Write `records` in one transaction; their row keys, in order."""
        keys = []
        with self.engine.begin() as conn:
            for record in records:
                result = conn.execute(audit_events.insert().values(**self._row(record)))
                assert result.inserted_primary_key is not None
                keys.append(int(result.inserted_primary_key[0]))
        return keys

    def write(
        self,
        plain: Sequence[AccessRecord],
        keyed: Sequence[AccessRecord],
        changes: Sequence[tuple[int, AccessRecord]],
    ) -> list[int]:
        """One batch in one transaction (one commit, one sync): `plain` events as one executemany,
        `keyed` ones row by row (their keys are returned, in order: they will be rewritten), and
        `changes` rewritten (an aggregated record's count and period have grown)."""
        keys = []
        with self.engine.begin() as conn:
            if plain:
                conn.execute(audit_events.insert(), [self._row(record) for record in plain])
            for record in keyed:
                result = conn.execute(audit_events.insert().values(**self._row(record)))
                assert result.inserted_primary_key is not None
                keys.append(int(result.inserted_primary_key[0]))
            for pk, record in changes:
                conn.execute(audit_events.update().where(audit_events.c.pk == pk).values(**self._row(record)))
        return keys

    def update(self, changes: Sequence[tuple[int, AccessRecord]]) -> None:
        """Rewrite rows in one transaction: an aggregated record's count and period have grown."""
        if not changes:
            return
        with self.engine.begin() as conn:
            for pk, record in changes:
                conn.execute(audit_events.update().where(audit_events.c.pk == pk).values(**self._row(record)))

    def find(self, query: AuditFilter) -> list[StoredEvent]:
        """The events `query` keeps, newest first, at most `query.limit`."""
        table = audit_events.c
        statement = sa.select(table.pk, table.document).order_by(table.recorded.desc(), table.pk.desc())
        if query.patient is not None:
            statement = statement.where(table.patient == query.patient)
        if query.client is not None:
            statement = statement.where(table.client_id == query.client)
        if query.outcome is not None:
            statement = statement.where(table.outcome == query.outcome.value)
        if query.since is not None:
            statement = statement.where(table.recorded >= _naive_utc(query.since))
        if query.until is not None:
            statement = statement.where(table.recorded < _naive_utc(query.until))
        if query.before_pk is not None:  # keyset paging in the list's order (recorded, pk), newest first
            cursor = sa.select(table.recorded).where(table.pk == query.before_pk).scalar_subquery()
            statement = statement.where(
                sa.or_(table.recorded < cursor, sa.and_(table.recorded == cursor, table.pk < query.before_pk))
            )
        with self.engine.connect() as conn:
            rows = conn.execute(statement.limit(query.limit)).fetchall()
        return [StoredEvent(row.pk, _with_id(row.pk, row.document)) for row in rows]


def _with_id(pk: int, text: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(text)
    return {"resourceType": document.pop("resourceType"), "id": str(pk), **document}
