"""The clinical record in the sandbox's SQLite file: resources as JSON, and a search index beside them.

The tables live in the same `ehr.sqlite3` as the rest of the sandbox but are its own schema,
created when the record is loaded. Each resource row carries the patient whose compartment holds
it and the StudyInstanceUID it would reveal, so access control is a WHERE clause and never a
filter after paging (totals and `next` links stay right). The index has one row per search
parameter value, built from the same definitions that parse searches (`params.py`).

The seed file is the source: on each start the record is brought in line with it. A resource whose
JSON is unchanged keeps its `meta.lastUpdated`, so `_lastUpdated` searches mean something across
restarts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    delete,
    exists,
    false,
    func,
    insert,
    not_,
    or_,
    select,
    true,
)

from aperture.ehr.fhir.dates import date_range, split_prefix
from aperture.ehr.fhir.params import index_entries
from aperture.ehr.fhir.query import Criterion, Search
from aperture.ehr.fhir.resources import Record

metadata = MetaData()

resources = Table(
    "fhir_resources",
    metadata,
    Column("type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("position", Integer, nullable=False),  # seed order: search results come in it
    Column("patient", String(64)),  # the compartment's patient id; NULL for Practitioner
    Column("study_uid", String(64)),  # the study the resource reveals, for study-level restrictions
    Column("last_updated", String(32), nullable=False),
    Column("content", Text, nullable=False),  # the resource JSON without meta.lastUpdated
    PrimaryKeyConstraint("type", "id"),
)

search_index = Table(
    "fhir_search_index",
    metadata,
    Column("type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", Text),
    Column("value", Text),
    Column("low", String(19)),
    Column("high", String(19)),
    Index("fhir_search_lookup", "type", "param", "value"),
)

# What the imaging server published (PUT ImagingStudy?identifier=...): kept apart from the seed so a
# restart, which rewrites the record from the seed, puts them back (`load_record`).
submitted_studies = Table(
    "fhir_submitted_studies",
    metadata,
    Column("study_uid", String(64), primary_key=True),
    Column("id", String(64), nullable=False),  # the ImagingStudy id (a seeded study's, or the UID itself)
    Column("patient", String(64), nullable=False),  # the Patient the subject identifier matched
    Column("client_id", String(128), nullable=False),  # the backend client that sent it
    Column("received", Integer, nullable=False),  # epoch seconds of the first submission: search order
    Column("last_updated", String(32), nullable=False),
    Column("content", Text, nullable=False),  # the resource as stored (without meta.lastUpdated)
)

# Studies whose subject identifier matches no Patient: listed for a person to reconcile
# (`aperture ehr reconcile list`), never attached to a patient by guess.
unmatched_studies = Table(
    "fhir_unmatched_studies",
    metadata,
    Column("study_uid", String(64), primary_key=True),
    Column("identifier_system", Text, nullable=False),
    Column("identifier_value", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("client_id", String(128), nullable=False),
    Column("first_received", String(32), nullable=False),
    Column("last_received", String(32), nullable=False),
    Column("times", Integer, nullable=False),  # submissions so far
    Column("content", Text, nullable=False),  # the resource as sent
)


@dataclass(frozen=True)
class Stored:
    resource: dict[str, Any]
    patient: str | None
    study_uid: str | None


@dataclass(frozen=True)
class Confinement:
    """What one token may see of a type: `patients` None means every patient; hidden studies never;
    of the `by_study` patients only the resources tied to a study."""

    patients: Collection[str] | None
    hidden_studies: Collection[str] = ()
    by_study: Collection[str] = ()


def instant_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _with_meta(content: str, last_updated: str) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads(content)
    resource["meta"] = {**resource.get("meta", {}), "lastUpdated": last_updated}
    return resource


def load_record(engine: Engine, records: Iterable[Record]) -> None:
    """Make the stored record equal to `records` (the seed), keeping lastUpdated of unchanged resources."""
    metadata.create_all(engine)
    now = instant_now()
    with engine.begin() as conn:
        before = {
            (row.type, row.id): (row.content, row.last_updated)
            for row in conn.execute(
                select(resources.c.type, resources.c.id, resources.c.content, resources.c.last_updated)
            )  # fmt: skip
        }
        conn.execute(delete(search_index))
        conn.execute(delete(resources))
        for position, record in enumerate(records):
            content = canonical(record.resource)
            previous = before.get((record.type, record.id))
            last_updated = previous[1] if previous and previous[0] == content else now
            put_resource(conn, record, position, content, last_updated)
        # Studies the imaging server published (aperture.ehr.fhir.submissions) outlive the seed's rewrite.
        for row in conn.execute(select(submitted_studies).order_by(submitted_studies.c.received)).all():
            put_submitted(conn, row.id, row.patient, row.study_uid, row.content, row.last_updated)


def canonical(resource: dict[str, Any]) -> str:
    """The stored form of a resource: compact JSON with sorted keys, so equal resources compare equal."""
    return json.dumps(resource, sort_keys=True, separators=(",", ":"))


def put_resource(conn: Connection, record: Record, position: int, content: str, last_updated: str) -> None:
    """Insert one resource row and its search index entries (the caller has removed any older version)."""
    conn.execute(
        insert(resources).values(
            type=record.type,
            id=record.id,
            position=position,
            patient=record.patient,
            study_uid=record.study_uid,
            last_updated=last_updated,
            content=content,
        )  # fmt: skip
    )
    entries = index_entries(_with_meta(content, last_updated))
    if entries:
        conn.execute(
            insert(search_index),
            [
                {
                    "type": record.type,
                    "id": record.id,
                    "param": e.param,
                    "system": e.system,
                    "value": e.value,
                    "low": e.low,
                    "high": e.high,
                }
                for e in entries
            ],  # fmt: skip
        )


def put_submitted(conn: Connection, resource_id: str, patient: str, study_uid: str, content: str,
                  last_updated: str) -> None:  # fmt: skip
    """Store a published ImagingStudy in place of any resource of the same study (keeping its search order)."""
    kind = "ImagingStudy"
    same = (resources.c.type == kind) & ((resources.c.study_uid == study_uid) | (resources.c.id == resource_id))
    position = conn.execute(select(resources.c.position).where(same)).scalar()
    if position is None:
        position = int(conn.execute(select(func.coalesce(func.max(resources.c.position), -1))).scalar_one()) + 1
    for old in conn.execute(select(resources.c.id).where(same)).scalars().all():
        conn.execute(delete(search_index).where(search_index.c.type == kind, search_index.c.id == old))
    conn.execute(delete(resources).where(same))
    record = Record(json.loads(content), patient, study_uid)
    put_resource(conn, record, position, content, last_updated)


def study_uids_of(engine: Engine, patient: str) -> set[str]:
    """Every StudyInstanceUID the record holds resources of for `patient` (seeded and published)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(resources.c.study_uid).where(resources.c.patient == patient, resources.c.study_uid.is_not(None))
        ).scalars()
        return {uid for uid in rows if uid}


def read(engine: Engine, resource_type: str, resource_id: str) -> Stored | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(resources).where(resources.c.type == resource_type, resources.c.id == resource_id)
        ).first()
    if row is None:
        return None
    return Stored(_with_meta(row.content, row.last_updated), row.patient, row.study_uid)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _value_matches(criterion: Criterion, value: str) -> ColumnElement[bool]:
    c = search_index.c
    kind = criterion.param.type
    if kind == "token":
        if "|" not in value:
            return c.value == value
        system, code = value.split("|", 1)
        on_system = c.system.is_(None) if system == "" else c.system == system
        return on_system if code == "" else and_(on_system, c.value == code)
    if kind == "string":
        if criterion.modifier == "exact":
            return c.value == value
        pattern = f"%{_like(value.lower())}%" if criterion.modifier == "contains" else f"{_like(value.lower())}%"
        return func.lower(c.value).like(pattern, escape="\\")
    if kind == "date":
        prefix, rest = split_prefix(value)
        low, high = date_range(rest)
        return {
            "eq": and_(c.low >= low, c.high <= high),
            "ne": not_(and_(c.low >= low, c.high <= high)),
            "gt": c.high > high,
            "lt": c.low < low,
            "ge": c.high > low,
            "le": c.low < high,
            "sa": c.low >= high,
            "eb": c.high <= low,
        }[prefix]
    return c.value == value  # reference (normalized to Type/id) and uri


def _criterion(search: Search, criterion: Criterion) -> ColumnElement[bool]:
    c = search_index.c
    return exists().where(
        c.type == resources.c.type,
        c.id == resources.c.id,
        c.param == criterion.param.name,
        or_(*(_value_matches(criterion, v) for v in criterion.values)),
    )


def _where(search: Search, confinement: Confinement) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = [resources.c.type == search.resource_type]
    clauses += [resources.c.id.in_(ids) for ids in search.ids]
    clauses += [_criterion(search, criterion) for criterion in search.criteria]
    if confinement.patients is not None:
        clauses.append(resources.c.patient.in_(list(confinement.patients)) if confinement.patients else false())
    if confinement.hidden_studies:
        hidden = list(confinement.hidden_studies)
        clauses.append(or_(resources.c.study_uid.is_(None), resources.c.study_uid.not_in(hidden)))
    if confinement.by_study:
        untied = and_(resources.c.patient.in_(list(confinement.by_study)), resources.c.study_uid.is_(None))
        clauses.append(not_(untied))
    return clauses or [true()]


def search(engine: Engine, query: Search, confinement: Confinement) -> tuple[int, list[dict[str, Any]]]:
    """(total, the page of resources) matching `query` within `confinement`, in seed order."""
    where = _where(query, confinement)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(resources).where(*where)).scalar_one()
        rows = conn.execute(
            select(resources.c.content, resources.c.last_updated)
            .where(*where)
            .order_by(resources.c.position)
            .limit(query.count)
            .offset(query.offset)
        ).all()
    return total, [_with_meta(row.content, row.last_updated) for row in rows]
