"""Reads of the index. Every function takes the request's `AccessScope` and filters in SQL.

QIDO-RS matching on the common keys (PS3.18 Table 10.6.1-5 and a few more) is translated to SQL on
indexed columns; any other key is evaluated on the stored JSON with `aperture.dicom.matching`, in
which case limit/offset are applied after that filter so pages stay exact. Results are ordered by
insertion (studies) or by number then insertion (series, instances): stable, so paging is too.
A study outside the scope is indistinguishable from a missing one (404, never 403), so the index
never tells a client that something it may not see exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Engine, Row, Select, and_, bindparam, false, func, or_, select, tuple_

from aperture.dicom import attributes as A
from aperture.dicom.attributes import Level, level_of
from aperture.dicom.dicomjson import BASE_PLACEHOLDER
from aperture.dicom.matching import matches
from aperture.dicom.query import Condition, Match, Query
from aperture.errors import InvalidQuery
from aperture.store.schema import frame_copies, instances, series, studies
from aperture.store.scope import AccessScope

# tag → (column, kind); kind: "text" (exact), "upper" (PN, case-insensitive), "int", "date", "time", "list"
_COLUMNS: dict[int, tuple[ColumnElement[Any], str]] = {
    0x0020000D: (studies.c.study_uid, "text"),
    0x00100020: (studies.c.patient_id, "text"),
    0x00100021: (studies.c.issuer, "text"),
    0x00100010: (studies.c.patient_name_upper, "upper"),
    0x00100030: (studies.c.patient_birth_date, "date"),
    0x00100040: (studies.c.patient_sex, "text"),
    0x00080020: (studies.c.study_date, "date"),
    0x00080030: (studies.c.study_time, "time"),
    0x00080050: (studies.c.accession_number, "text"),
    0x00200010: (studies.c.study_id, "text"),
    0x00081030: (studies.c.study_description, "text"),
    0x00080090: (studies.c.referring_physician_upper, "upper"),
    0x00080061: (studies.c.modalities, "list"),
    0x0020000E: (series.c.series_uid, "text"),
    0x00080060: (series.c.modality, "text"),
    0x00200011: (series.c.series_number, "int"),
    0x0008103E: (series.c.series_description, "text"),
    0x00400244: (series.c.pps_start_date, "date"),
    0x00400245: (series.c.pps_start_time, "time"),
    0x00080018: (instances.c.sop_uid, "text"),
    0x00080016: (instances.c.sop_class_uid, "text"),
    0x00200013: (instances.c.instance_number, "int"),
}
_SERIES_TAGS = {0x0020000E, 0x00080060, 0x00200011, 0x0008103E, 0x00400244, 0x00400245}
_INSTANCE_TAGS = {0x00080018, 0x00080016, 0x00200013}


@dataclass(frozen=True)
class InstanceRef:
    """Enough to serve an instance's bytes, frames and bulk data without touching its JSON."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    blob: str
    size: int
    num_frames: int
    frames: str | None
    bulk: str
    digest: str | None  # fingerprint of the stored file (None for rows stored before revision 0003)
    copy_blob: str | None = None  # the HTJ2K copy of the frames, once the background worker made it
    copy_frames: str | None = None  # FrameIndex JSON of copy_blob
    sha256: str | None = None  # hex SHA-256 of the stored file, once the background pass recorded it (0008)


# QIDO keys the index cannot answer are matched on stored JSON; at most this many candidate rows are
# read for one query, so no request turns into an unbounded scan.
MAX_SCAN = 50_000


@dataclass(frozen=True)
class SearchResult:
    documents: list[bytes]  # one JSON-encoded DICOM data set per match, BASE_PLACEHOLDER for URLs
    more: bool  # more matches exist past this page (PS3.18 §8.3.4.4: send a Warning)


def scope_clause(scope: AccessScope) -> ColumnElement[bool]:
    """The WHERE clause that confines a query joined to `studies` to what `scope` permits.

    One value is compared with `=` rather than `IN`: SQLAlchemy expands an IN list on every
    execution, and a patient's own token (one patient key) is the common case on the hot path.
    """
    clauses: list[ColumnElement[bool]] = []
    if scope.patient_keys is not None:
        reached: list[ColumnElement[bool]] = []
        if scope.patient_keys:
            reached.append(_member(studies.c.patient_key, scope.patient_keys))
        if len(scope.study_grants) == 1:
            ((key, uid),) = scope.study_grants
            reached.append(and_(studies.c.patient_key == key, studies.c.study_uid == uid))
        elif scope.study_grants:
            reached.append(tuple_(studies.c.patient_key, studies.c.study_uid).in_(sorted(scope.study_grants)))
        clauses.append(or_(*reached) if reached else false())
    if len(scope.withheld_study_uids) == 1:
        clauses.append(studies.c.study_uid != next(iter(scope.withheld_study_uids)))
    elif scope.withheld_study_uids:
        clauses.append(studies.c.study_uid.not_in(sorted(scope.withheld_study_uids)))
    return and_(*clauses) if clauses else and_(True)


def _member(column: ColumnElement[str], values: frozenset[str]) -> ColumnElement[bool]:
    return column == next(iter(values)) if len(values) == 1 else column.in_(sorted(values))


_ScopeShape = tuple[bool, int, int, int]  # restricted; how many patient keys, grants, withheld: 0, 1 or 2 (more)


def _scope_shape(scope: AccessScope) -> _ScopeShape:
    restricted = scope.patient_keys is not None
    return (
        restricted,
        min(len(scope.patient_keys or ()), 2) if restricted else 0,
        min(len(scope.study_grants), 2) if restricted else 0,
        min(len(scope.withheld_study_uids), 2),
    )


def _scope_params(scope: AccessScope) -> dict[str, Any]:
    if scope.unrestricted:
        return {}
    patients = sorted(scope.patient_keys or ())
    grants = sorted(scope.study_grants)
    withheld = sorted(scope.withheld_study_uids)
    params: dict[str, Any] = {"scope_patients": patients, "scope_grants": grants, "scope_withheld": withheld}
    if len(patients) == 1:
        params["scope_patient"] = patients[0]
    if len(grants) == 1:
        params["scope_grant_patient"], params["scope_grant_study"] = grants[0]
    if len(withheld) == 1:
        params["scope_withheld_one"] = withheld[0]
    return params


def _bound_scope_clause(shape: _ScopeShape) -> list[ColumnElement[bool]]:
    """`scope_clause` with bound parameters, for statements built once and reused."""
    restricted, patients, grants, withheld = shape
    clauses: list[ColumnElement[bool]] = []
    if restricted:
        reached: list[ColumnElement[bool]] = []
        if patients == 1:
            reached.append(studies.c.patient_key == bindparam("scope_patient"))
        elif patients:
            reached.append(studies.c.patient_key.in_(bindparam("scope_patients", expanding=True)))
        if grants == 1:
            reached.append(
                and_(
                    studies.c.patient_key == bindparam("scope_grant_patient"),
                    studies.c.study_uid == bindparam("scope_grant_study"),
                )
            )
        elif grants:
            pair = tuple_(studies.c.patient_key, studies.c.study_uid)
            reached.append(pair.in_(bindparam("scope_grants", expanding=True)))
        clauses.append(or_(*reached) if reached else false())
    if withheld == 1:
        clauses.append(studies.c.study_uid != bindparam("scope_withheld_one"))
    elif withheld:
        clauses.append(studies.c.study_uid.not_in(bindparam("scope_withheld", expanding=True)))
    return clauses


_INSTANCE_COLUMNS = {
    "refs": (
        studies.c.study_uid,
        series.c.series_uid,
        instances.c.sop_uid,
        instances.c.sop_class_uid,
        instances.c.transfer_syntax,
        instances.c.blob,
        instances.c.size,
        instances.c.num_frames,
        instances.c.frames,
        instances.c.bulk,
        instances.c.digest,
        frame_copies.c.blob,
        frame_copies.c.frames,
        instances.c.sha256,
    ),
    "metadata": (instances.c.metadata, instances.c.digest, instances.c.blob),
}


@lru_cache(maxsize=64)
def _instance_statement(what: str, shape: _ScopeShape, by_series: bool, by_instance: bool) -> Select[Any]:
    """WADO-RS lookups are the hot path: each shape of statement is built once, then only bound."""
    stmt = (
        select(*_INSTANCE_COLUMNS[what])
        .select_from(
            instances.join(series, instances.c.series_pk == series.c.pk)
            .join(studies, instances.c.study_pk == studies.c.pk)
            .outerjoin(
                frame_copies, and_(frame_copies.c.instance_pk == instances.c.pk, frame_copies.c.status == "ready")
            )
        )
        .where(studies.c.study_uid == bindparam("study"), *_bound_scope_clause(shape))
    )
    if by_series:
        stmt = stmt.where(series.c.series_uid == bindparam("series"))
    if by_instance:
        stmt = stmt.where(instances.c.sop_uid == bindparam("sop"))
    return stmt.order_by(*Index._order(Level.INSTANCE))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _condition_sql(cond: Condition, fuzzy: bool) -> ColumnElement[bool] | None:
    column, kind = _COLUMNS[cond.tag]
    if cond.match is Match.UNIVERSAL:
        return None
    if kind == "list":  # ModalitiesInStudy: any listed modality is in the study
        wanted = cond.values or tuple(v for v in cond.value.replace(",", "\\").split("\\") if v)
        if cond.match is Match.WILDCARD:
            pattern = _like_escape(cond.value).replace("*", "%").replace("?", "_")
            return column.like(f"%\\\\{pattern}\\\\%", escape="\\")
        return or_(*(column.like(f"%\\\\{_like_escape(m)}\\\\%", escape="\\") for m in wanted))
    if cond.match is Match.LIST:
        return column.in_(cond.values)
    if cond.match is Match.RANGE:
        parts = []
        if cond.low:
            low = cond.low.replace(":", "")
            parts.append(func.substr(column, 1, len(low)) >= low if kind == "time" else column >= low)
        if cond.high:
            high = cond.high.replace(":", "")
            parts.append(func.substr(column, 1, len(high)) <= high if kind == "time" else column <= high)
        return and_(column != "", *parts)
    if kind == "int":
        return column == int(cond.value)
    value = cond.value.upper() if kind == "upper" else cond.value
    clause: ColumnElement[bool]
    if cond.match is Match.WILDCARD:
        pattern = _like_escape(value).replace("*", "%").replace("?", "_")
        clause = column.like(pattern, escape="\\")
    else:
        clause = column == value
    if kind == "upper" and fuzzy:
        words = [w for w in value.replace("*", " ").replace("?", " ").replace("^", " ").split() if w]
        if words:
            clause = or_(
                clause,
                and_(*(or_(column.like(f"{_like_escape(w)}%", escape="\\"),
                           column.like(f"%^{_like_escape(w)}%", escape="\\"),
                           column.like(f"% {_like_escape(w)}%", escape="\\")) for w in words)),
            )  # fmt: skip
    return clause


def _build_search_statement(
    query: Query, scope: AccessScope, study_uid: str | None, series_uid: str | None
) -> tuple[Select[Any], tuple[Condition, ...]]:
    """The SELECT for a QIDO-RS query and the conditions left for JSON matching.

    Built statements are kept for repeated identical queries (viewers poll the same study list):
    building one costs more than running it against SQLite. See `_search_statement`.
    """
    level = query.level
    if level is Level.STUDY:
        stmt: Select[Any] = select(studies).select_from(studies)
    elif level is Level.SERIES:
        stmt = select(series, studies.c.study_uid, studies.c.attrs.label("study_attrs"))
        stmt = stmt.select_from(series.join(studies, series.c.study_pk == studies.c.pk))
    else:
        stmt = select(
            instances.c.pk,
            instances.c.sop_uid,
            instances.c.attrs,
            instances.c.num_frames,
            series.c.series_uid,
            series.c.attrs.label("series_attrs"),
            series.c.num_instances.label("series_count"),
            studies.c.study_uid,
            studies.c.attrs.label("study_attrs"),
        ).select_from(
            instances.join(series, instances.c.series_pk == series.c.pk).join(
                studies, instances.c.study_pk == studies.c.pk
            )
        )
    stmt = stmt.where(scope_clause(scope))
    if study_uid is not None:
        stmt = stmt.where(studies.c.study_uid == study_uid)
    if series_uid is not None:
        stmt = stmt.where(series.c.series_uid == series_uid)
    leftovers: list[Condition] = []
    series_clauses: list[ColumnElement[bool]] = []
    instance_clauses: list[ColumnElement[bool]] = []
    for cond in query.conditions:
        if cond.tag not in _COLUMNS or cond.sequence_path:
            if cond.match is not Match.UNIVERSAL:
                leftovers.append(cond)
            continue
        clause = _condition_sql(cond, query.fuzzy)
        if clause is None:
            continue
        if level is Level.STUDY and cond.tag in _SERIES_TAGS:
            series_clauses.append(clause)
        elif level is not Level.INSTANCE and cond.tag in _INSTANCE_TAGS:
            instance_clauses.append(clause)
        else:
            stmt = stmt.where(clause)
    # a study (series) matches when one of its series (instances) does; EXISTS keeps one row each
    if series_clauses:
        stmt = stmt.where(select(series.c.pk).where(series.c.study_pk == studies.c.pk, *series_clauses).exists())
    if instance_clauses:
        link = instances.c.study_pk == studies.c.pk if level is Level.STUDY else instances.c.series_pk == series.c.pk
        stmt = stmt.where(select(instances.c.pk).where(link, *instance_clauses).exists())
    stmt = stmt.order_by(*Index._order(level))
    if not leftovers:  # SQL answers everything: page in SQL too (one row more tells if there are more)
        if query.limit is not None:
            stmt = stmt.limit(query.limit + 1)
        if query.offset:
            stmt = stmt.offset(query.offset)
    return stmt, tuple(leftovers)


# Only short queries are remembered (`search(remember=...)`): a kept statement holds its query's
# values, and 256 long ones would hold hundreds of megabytes.
_search_statement = lru_cache(maxsize=256)(_build_search_statement)


# Keys that name one patient or one study: a study query with an exact value for one of them, and
# nothing the index cannot answer, reads a few indexed rows and their precomputed answers.
_POINT_KEYS = frozenset({0x00100020, 0x0020000D, 0x00080050})  # PatientID, StudyInstanceUID, AccessionNumber


def is_point_lookup(query: Query, study_uid: str | None = None) -> bool:
    """Whether `query` is a study lookup by patient, study or accession number that the index answers alone.

    Such a query costs less than the hop to a worker thread (about 0.06 ms), so the caller may run
    it on the event loop; every other query, whose cost grows with the data, must not.
    """
    if query.level is not Level.STUDY or study_uid is not None or not _answers_with_defaults(query):
        return False
    if query.limit is None or query.limit > 1000:  # the page bounds the work: the default page at most
        return False
    if any(c.tag not in _COLUMNS or c.sequence_path for c in query.conditions if c.match is not Match.UNIVERSAL):
        return False
    return any(c.tag in _POINT_KEYS and c.match is Match.SINGLE for c in query.conditions)


class Index:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # An embedded database (SQLite) answers a point lookup in tens of microseconds, in this
        # process: callers may run such lookups on the event loop. A database server (PostgreSQL)
        # costs a network round trip, which must never block the loop.
        self.answers_inline = engine.dialect.name == "sqlite"

    # -- QIDO-RS ---------------------------------------------------------------------------------

    def search(
        self,
        query: Query,
        scope: AccessScope,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        remember: bool = True,
    ) -> SearchResult:
        """The page of matches; `remember=False` for a long query, whose statement is not worth keeping."""
        level = query.level
        build = _search_statement if remember else _build_search_statement
        stmt, leftovers = build(query, scope, study_uid, series_uid)
        limit = query.limit
        with self.engine.connect() as conn:
            if not leftovers:
                rows = list(conn.execute(stmt))
                more = limit is not None and len(rows) > limit
                rows = rows[:limit] if limit is not None else rows
            else:
                rows = []
                end = None if limit is None else query.offset + limit
                for scanned, row in enumerate(conn.execute(stmt.limit(MAX_SCAN + 1))):
                    if scanned == MAX_SCAN:
                        names = ", ".join(sorted({c.keyword for c in leftovers}))
                        raise InvalidQuery(
                            f"This query matches {names} against more than {MAX_SCAN:,} candidates outside "
                            "the index. Narrow it with a key the index answers (PatientID, StudyDate, "
                            "AccessionNumber, StudyInstanceUID, Modality, …); see docs/dicomweb.md."
                        )
                    if self._post_match(conn, row, level, leftovers, query.fuzzy):
                        rows.append(row)
                        if end is not None and len(rows) > end:
                            break  # one more than the page tells the client there is more
                more = end is not None and len(rows) > end
                rows = rows[query.offset : end]
        if level is Level.STUDY and _answers_with_defaults(query):
            return SearchResult([r.qido if r.qido is not None else _dumps(study_document(r._mapping, query))
                                 for r in rows], more)  # fmt: skip
        parsed = _JsonCache()
        return SearchResult(
            [_dumps(self._dataset(r, query, study_uid is None, series_uid is None, parsed)) for r in rows], more
        )

    @staticmethod
    def _order(level: Level) -> list[Any]:
        if level is Level.STUDY:
            return [studies.c.pk]
        if level is Level.SERIES:
            return [series.c.series_number.is_(None), series.c.series_number, series.c.pk]
        return [
            series.c.series_number.is_(None),
            series.c.series_number,
            series.c.pk,
            instances.c.instance_number.is_(None),
            instances.c.instance_number,
            instances.c.pk,
        ]

    @staticmethod
    def _post_match(conn: Any, row: Row[Any], level: Level, leftovers: Sequence[Condition], fuzzy: bool) -> bool:
        """Match keys SQL did not answer against stored JSON; a lower-level key matches if any child does."""
        cache: dict[Level, list[dict[str, Any]]] = {}

        def documents(which: Level) -> list[dict[str, Any]]:
            if which not in cache:
                if which is level and level is Level.INSTANCE:
                    stmt = select(instances.c.metadata).where(instances.c.pk == row.pk)
                    cache[which] = [json.loads(conn.execute(stmt).scalar_one())]
                elif which is level:
                    cache[which] = [json.loads(row.attrs)]
                elif which is Level.STUDY:
                    cache[which] = [json.loads(row.study_attrs)]
                elif which is Level.SERIES and level is Level.INSTANCE:
                    cache[which] = [json.loads(row.series_attrs)]
                elif which is Level.SERIES:  # a study's series
                    stmt = select(series.c.attrs).where(series.c.study_pk == row.pk)
                    cache[which] = [json.loads(r[0]) for r in conn.execute(stmt)]
                else:  # a study's or series' instances
                    link = instances.c.study_pk if level is Level.STUDY else instances.c.series_pk
                    stmt = select(instances.c.metadata).where(link == row.pk)
                    cache[which] = [json.loads(r[0]) for r in conn.execute(stmt)]
            return cache[which]

        for cond in leftovers:
            which = level_of(cond.sequence_path[0] if cond.sequence_path else cond.tag)
            if not any(matches(cond, doc, fuzzy=fuzzy) for doc in documents(which)):
                return False
        return True

    def _dataset(
        self, row: Row[Any], query: Query, with_study: bool, with_series: bool, parsed: _JsonCache
    ) -> dict[str, Any]:
        level = query.level
        out: dict[str, Any] = {}
        if level is Level.STUDY:
            return study_document(row._mapping, query)
        study_attrs = parsed(row.study_attrs)
        if level is Level.SERIES:
            attrs = json.loads(row.attrs)
            computed = {
                "00201209": {"vr": "IS", "Value": [row.num_instances]},
                "00080056": {"vr": "CS", "Value": ["ONLINE"]},
                "0020000D": {"vr": "UI", "Value": [row.study_uid]},
                "00081190": {
                    "vr": "UR",
                    "Value": [f"{BASE_PLACEHOLDER}/studies/{row.study_uid}/series/{row.series_uid}"],
                },
            }
            _select(out, attrs, computed, A.SERIES_RETURN, query)
            if with_study:
                _select(out, study_attrs, {}, A.STUDY_RETURN, query, expand_all=False)
            return dict(sorted(out.items()))
        attrs = json.loads(row.attrs)
        computed = {
            "00080056": {"vr": "CS", "Value": ["ONLINE"]},
            "0020000D": {"vr": "UI", "Value": [row.study_uid]},
            "0020000E": {"vr": "UI", "Value": [row.series_uid]},
            "00081190": {
                "vr": "UR",
                "Value": [
                    f"{BASE_PLACEHOLDER}/studies/{row.study_uid}/series/{row.series_uid}/instances/{row.sop_uid}"
                ],
            },
        }
        if query.include_all or any(level_of(t) is Level.INSTANCE and f"{t:08X}" not in attrs for t in query.include):
            full = json.loads(self._instance_metadata(row.pk))
            attrs = {k: v for k, v in full.items() if "BulkDataURI" not in v and "InlineBinary" not in v}
        _select(out, attrs, computed, A.INSTANCE_RETURN, query)
        if with_series:
            _select(out, parsed(row.series_attrs), {}, A.SERIES_RETURN, query, expand_all=False)
        if with_study:
            _select(out, study_attrs, {}, A.STUDY_RETURN, query, expand_all=False)
        return dict(sorted(out.items()))

    def _instance_metadata(self, pk: int) -> bytes:
        with self.engine.connect() as conn:
            return bytes(conn.execute(select(instances.c.metadata).where(instances.c.pk == pk)).scalar_one())

    # -- WADO-RS ---------------------------------------------------------------------------------

    def instance_refs(
        self, scope: AccessScope, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRef]:
        stmt = _instance_statement("refs", _scope_shape(scope), series_uid is not None, sop_uid is not None)
        params = _scope_params(scope) | {"study": study_uid, "series": series_uid, "sop": sop_uid}
        with self.engine.connect() as conn:
            return [InstanceRef(*row) for row in conn.execute(stmt, params)]

    def metadata(
        self, scope: AccessScope, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[tuple[bytes, str]]:
        """(DICOM JSON document with the base placeholder, content validator) in series/instance order.

        The validator is the file's content fingerprint, or for rows stored before it was recorded the blob's
        name, which changes whenever the stored bytes do.
        """
        stmt = _instance_statement("metadata", _scope_shape(scope), series_uid is not None, sop_uid is not None)
        params = _scope_params(scope) | {"study": study_uid, "series": series_uid, "sop": sop_uid}
        with self.engine.connect() as conn:
            return [(row[0], row[1] or row[2]) for row in conn.execute(stmt, params)]

    def has_study(self, scope: AccessScope, study_uid: str) -> bool:
        """Whether a study this scope may see is stored."""
        stmt = select(studies.c.pk).where(scope_clause(scope), studies.c.study_uid == study_uid)
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def has_series(self, scope: AccessScope, study_uid: str, series_uid: str) -> bool:
        stmt = (
            select(series.c.pk)
            .select_from(series.join(studies, series.c.study_pk == studies.c.pk))
            .where(scope_clause(scope), studies.c.study_uid == study_uid, series.c.series_uid == series_uid)
        )
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    # -- FHIR ImagingStudy (aperture.fhir) ------------------------------------------------------

    def study_summaries(
        self,
        scope: AccessScope,
        *,
        patient_id: str | None,
        issuer: str | None,
        study_uid: str | None = None,
        updated_from: int | None = None,
        updated_before: int | None = None,
        after_pk: int | None = None,
        limit: int = 50,
    ) -> tuple[list[StudySummary], int]:
        """One page of a patient's studies in insertion order, and how many match in all.

        The patient is issuer-qualified (PatientID and IssuerOfPatientID both match; the same
        PatientID of another issuer is another person); both None leave the patient to `scope` (a
        scope narrowed to one patient, under --auth smart). `updated_from`/`updated_before` bound the
        study's last change (epoch seconds, `[from, before)`); `after_pk` is the keyset cursor of the
        previous page, so a page stays exact while studies arrive.
        """
        where = [scope_clause(scope)]
        if patient_id is not None or issuer is not None:
            where += [studies.c.patient_id == (patient_id or ""), studies.c.issuer == (issuer or "")]
        if study_uid is not None:
            where.append(studies.c.study_uid == study_uid)
        if updated_from is not None:
            where.append(studies.c.updated >= updated_from)
        if updated_before is not None:
            where.append(studies.c.updated < updated_before)
        page = select(*_SUMMARY_COLUMNS).where(*where)
        if after_pk is not None:
            page = page.where(studies.c.pk > after_pk)
        with self.engine.connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(studies).where(*where)).scalar_one())
            rows = conn.execute(page.order_by(studies.c.pk).limit(limit)).all()
        return [_summary(row) for row in rows], total

    def study_summary(self, scope: AccessScope, study_uid: str) -> StudySummary | None:
        """One study by UID, or None when it is missing or outside the scope (the same answer)."""
        stmt = select(*_SUMMARY_COLUMNS).where(scope_clause(scope), studies.c.study_uid == study_uid)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else _summary(row)

    def series_summaries(self, scope: AccessScope, study_pks: Sequence[int]) -> dict[int, list[SeriesSummary]]:
        """The series of these studies with their instances (UID, number, SOP class), in number order.

        Two statements for a whole page of studies, both confined to the scope in SQL.
        """
        if not study_pks:
            return {}
        joined = series.join(studies, series.c.study_pk == studies.c.pk)
        series_stmt = (
            select(
                series.c.pk,
                series.c.study_pk,
                series.c.series_uid,
                series.c.modality,
                series.c.series_number,
                series.c.series_description,
                series.c.num_instances,
            )  # fmt: skip
            .select_from(joined)
            .where(scope_clause(scope), series.c.study_pk.in_(study_pks))
            .order_by(series.c.study_pk, series.c.series_number, series.c.pk)
        )
        instance_stmt = (
            select(instances.c.series_pk, instances.c.sop_uid, instances.c.sop_class_uid, instances.c.instance_number)
            .select_from(instances.join(studies, instances.c.study_pk == studies.c.pk))
            .where(scope_clause(scope), instances.c.study_pk.in_(study_pks))
            .order_by(instances.c.series_pk, instances.c.instance_number, instances.c.pk)
        )
        by_series: dict[int, list[InstanceSummary]] = {}
        with self.engine.connect() as conn:
            series_rows = conn.execute(series_stmt).all()
            for item in conn.execute(instance_stmt):
                by_series.setdefault(item.series_pk, []).append(
                    InstanceSummary(item.sop_uid, item.sop_class_uid, item.instance_number)
                )
        out: dict[int, list[SeriesSummary]] = {}
        for row in series_rows:
            out.setdefault(row.study_pk, []).append(
                SeriesSummary(
                    row.series_uid,
                    row.modality,
                    row.series_number,
                    row.series_description,
                    tuple(by_series.get(row.pk, ())),
                )  # fmt: skip
            )
        return out


@dataclass(frozen=True)
class StudySummary:
    """What a FHIR ImagingStudy says about a study, from its `studies` row alone."""

    pk: int
    study_uid: str
    patient_id: str
    issuer: str
    study_date: str
    study_time: str
    accession_number: str
    description: str
    modalities: tuple[str, ...]
    num_series: int
    num_instances: int
    updated: int  # epoch seconds of the study's last change (any store or delete in it)


@dataclass(frozen=True)
class InstanceSummary:
    sop_uid: str
    sop_class_uid: str
    number: int | None


@dataclass(frozen=True)
class SeriesSummary:
    series_uid: str
    modality: str
    number: int | None
    description: str
    instances: tuple[InstanceSummary, ...]


_SUMMARY_COLUMNS = (
    studies.c.pk,
    studies.c.study_uid,
    studies.c.patient_id,
    studies.c.issuer,
    studies.c.study_date,
    studies.c.study_time,
    studies.c.accession_number,
    studies.c.study_description,
    studies.c.modalities,
    studies.c.num_series,
    studies.c.num_instances,
    studies.c.updated,
)


def _summary(row: Any) -> StudySummary:
    modalities = tuple(m for m in row.modalities.split("\\") if m)
    return StudySummary(
        row.pk, row.study_uid, row.patient_id, row.issuer, row.study_date, row.study_time, row.accession_number,
        row.study_description, modalities, row.num_series, row.num_instances, row.updated,
    )  # fmt: skip


DEFAULT_STUDY_QUERY = Query(Level.STUDY)
_STUDY_RETURN = frozenset(A.STUDY_RETURN)


def _answers_with_defaults(query: Query) -> bool:
    """Whether the precomputed default answer is exactly what this study query returns."""
    return (
        not query.include_all
        and query.include <= _STUDY_RETURN
        and all(not c.sequence_path and c.tag in _STUDY_RETURN for c in query.conditions)
    )


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def study_document(row: Any, query: Query) -> dict[str, Any]:
    """A study's QIDO-RS answer: stored study attributes plus the computed ones (PS3.18 Table 10.6.3-3)."""
    computed = {
        "00080061": _multi("CS", [m for m in row["modalities"].split("\\") if m]),
        "00080062": _multi("UI", [c for c in row["sop_classes"].split("\\") if c]),
        "00201206": {"vr": "IS", "Value": [row["num_series"]]},
        "00201208": {"vr": "IS", "Value": [row["num_instances"]]},
        "00080056": {"vr": "CS", "Value": ["ONLINE"]},
        "00081190": {"vr": "UR", "Value": [f"{BASE_PLACEHOLDER}/studies/{row['study_uid']}"]},
    }
    out: dict[str, Any] = {}
    _select(out, json.loads(row["attrs"]), computed, A.STUDY_RETURN, query)
    return dict(sorted(out.items()))


class _JsonCache:
    """Rows of one answer share their series' and study's attributes: parse each document once."""

    def __init__(self) -> None:
        self._seen: dict[bytes, dict[str, Any]] = {}

    def __call__(self, raw: bytes) -> dict[str, Any]:
        document = self._seen.get(raw)
        if document is None:
            document = self._seen[raw] = json.loads(raw)
        return document


def _multi(vr: str, values: list[str]) -> dict[str, Any]:
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _select(
    out: dict[str, Any],
    attrs: dict[str, Any],
    computed: dict[str, Any],
    defaults: tuple[int, ...],
    query: Query,
    *,
    expand_all: bool = True,
) -> None:
    """Copy into `out` the default return keys, named includefields and matched keys found in `attrs`.

    `expand_all` is off for a parent level's attributes (a series answer's study attributes):
    `includefield=all` widens the level searched, not its parents.
    """
    wanted = {f"{t:08X}" for t in defaults}
    wanted |= {f"{t:08X}" for t in query.include}
    wanted |= {f"{c.tag:08X}" for c in query.conditions if not c.sequence_path}
    wanted |= {f"{c.sequence_path[0]:08X}" for c in query.conditions if c.sequence_path}
    if query.include_all and expand_all:
        wanted |= set(attrs) | set(computed)
    for key in wanted:
        if key in computed:
            out[key] = computed[key]
        elif key in attrs:
            out[key] = attrs[key]
