"""The single write path: parsed uploads → durable blobs → index rows, all or nothing per batch.

STOW-RS (and later C-STORE) hands over files that already sit in the store's `tmp/` folder together
with their `Upload` (what `prepare_upload` parsed, its index columns already encoded). For the
whole batch: blobs are fsync'ed and renamed into place, their directories fsync'ed, and only then
is one index transaction committed. A crash before the commit leaves no index row (so nothing
half-stored is ever visible); the caller acknowledges only after `ingest` returns. Aggregates
(counts, modalities) are recomputed from rows, never kept by hand.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash
from sqlalchemy import Connection, Engine, Insert, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from aperture.config import DuplicatePolicy
from aperture.dicom.identifiers import PatientKey
from aperture.dicom.instance import (
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    DUPLICATE_SOP_INSTANCE,
    InstanceRecord,
    InvalidInstance,
    read_instance,
)
from aperture.errors import Forbidden
from aperture.store.blobs import BlobStore
from aperture.store.engine import write_transaction
from aperture.store.index import DEFAULT_STUDY_QUERY, study_document
from aperture.store.schema import frame_copies, instances, patients, series, studies
from aperture.store.scope import AccessScope

log = logging.getLogger("aperture.store")

# One answer for every instance a restricted writer may not store: into a study or patient it does
# not reach, over an instance or series stored elsewhere. It never says which, so a STOW cannot
# probe for other patients' UIDs.
NOT_ALLOWED = "This authorization does not allow storing this instance (its patient or study is not one it reaches)."


@dataclass
class Outcome:
    """What happened to one uploaded part (reason None: stored, or already stored identically)."""

    sop_class_uid: str
    sop_uid: str
    study_uid: str = ""
    series_uid: str = ""
    reason: int | None = None
    message: str = ""

    @classmethod
    def of(cls, upload: Upload, reason: int | None = None, message: str = "") -> Outcome:
        return cls(upload.sop_class_uid, upload.sop_uid, upload.study_uid, upload.series_uid, reason, message)


@dataclass
class Upload:
    """One parsed upload as the index takes it: its identity, and its rows' columns already encoded.

    Built where the file is parsed (`prepare_upload`, in a parser process), so that what travels
    back to the request's process is a few byte strings rather than the DICOM JSON as nested dicts
    (unpickling those cost that process 4.5 ms per 50 CT instances), and the JSON encoding runs
    beside the rest of the upload instead of inside the write transaction.
    """

    sop_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    patient: PatientKey
    size: int
    instance_columns: dict[str, Any]  # the instance row, less the keys only the database knows
    study_columns: dict[str, Any]  # `study_values`: what the study row takes from this instance
    series_columns: dict[str, Any]  # `series_values`

    @classmethod
    def of(cls, record: InstanceRecord) -> Upload:
        return cls(
            sop_uid=record.sop_uid,
            study_uid=record.study_uid,
            series_uid=record.series_uid,
            sop_class_uid=record.sop_class_uid,
            patient=record.patient,
            size=record.size,
            instance_columns=instance_values(record),
            study_columns=study_values(record),
            series_columns=series_values(record),
        )


def prepare_upload(path: Path, digest: str | None = None) -> Upload | InvalidInstance:
    """Parse one uploaded file; runs in a parser process.

    STOW-RS hands each part here as soon as it is received, so parsing (CPU, on another core)
    overlaps with receiving the rest of the body; STOW fingerprints the bytes as they arrive and
    passes the `digest` in, so the parser does not read the file twice. Refusals are returned, not
    raised, so a bad part never cancels the good ones.
    """
    try:
        record = read_instance(path)
    except InvalidInstance as exc:
        return exc
    record.digest = digest or file_digest(path)
    return Upload.of(record)


def prepare_uploads(uploads: Sequence[tuple[Path, str | None]]) -> list[Upload | InvalidInstance]:
    """`prepare_upload` for several (path, digest) pairs: one trip to a parser process for all."""
    return [prepare_upload(path, digest) for path, digest in uploads]


def file_digest(path: Path) -> str:
    """The content fingerprint of a file: 128-bit XXH3, the validator behind strong ETags.

    Not a security hash (nothing trusts it against a forger: identical re-sends are compared
    byte by byte); XXH3 fingerprints at memory speed, where SHA-256 cost 15 % of a STOW's CPU.
    """
    digest = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def warm_up() -> bool:
    """Imported modules are the expensive part of a parser process's first job: do it at startup."""
    return True


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _first(element: dict[str, Any] | None) -> str:
    if not element or not element.get("Value"):
        return ""
    value = element["Value"][0]
    if isinstance(value, dict):
        return str(value.get("Alphabetic", ""))
    return "" if value is None else str(value)


def _date(element: dict[str, Any] | None) -> str:
    """A DA value as the index matches it: YYYYMMDD, from the ACR-NEMA form YYYY.MM.DD too.

    Anything longer is not a date: indexed as empty (the stored JSON keeps the value as sent).
    """
    text = _first(element).strip().replace(".", "")
    return text if len(text) <= 8 else ""


def _int_or_none(element: dict[str, Any] | None) -> int | None:
    text = _first(element)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


class Ingest:
    def __init__(self, engine: Engine, blobs: BlobStore, policy: DuplicatePolicy) -> None:
        self.engine = engine
        self.blobs = blobs
        self.policy = policy
        self._lock = threading.Lock()  # one writer per process; SQLite serialises across processes

    def ingest(self, batch: list[tuple[Path, Upload]], scope: AccessScope) -> list[Outcome]:
        """Store every (temp file, record) pair; returns one Outcome per pair, in order.

        Blobs are made durable first; then one write transaction, serialised across processes
        (`write_transaction`), decides everything that depends on what is already stored: the
        duplicate policy, new or existing study and series. Nothing is checked before that lock and
        acted on after it, so concurrent uploads of the same study end with one copy of each row.
        """
        if not scope.may_write:
            raise Forbidden("This authorization does not allow storing instances.")
        outcomes = [Outcome.of(record) for _, record in batch]
        with self._lock:
            placed = self._place(batch, outcomes)
            drop: list[str] = []
            for attempt in range(3):
                try:
                    with write_transaction(self.engine) as conn:
                        drop = self._index(conn, batch, placed, outcomes, scope)
                    break
                except (IntegrityError, OperationalError) as exc:
                    for index, _ in placed:
                        outcomes[index].reason, outcomes[index].message = None, ""
                    if attempt == 2:
                        for _, relative in placed:
                            self.blobs.remove(relative)
                        raise
                    log.warning("index write failed, retrying: %s", exc)
                except BaseException:
                    for _, relative in placed:
                        self.blobs.remove(relative)
                    raise
        for relative in drop:
            self.blobs.remove(relative)
        return outcomes

    def _place(self, batch: list[tuple[Path, Upload]], outcomes: list[Outcome]) -> list[tuple[int, str]]:
        """Make the uploads durable under their final names; returns (batch index, blob) pairs."""
        seen: set[str] = set()
        accepted: list[tuple[int, Path, Upload]] = []
        for index, (temp, record) in enumerate(batch):
            if record.sop_uid in seen:
                outcomes[index].reason = DUPLICATE_SOP_INSTANCE
                outcomes[index].message = f"Sent twice in this request: SOP Instance {record.sop_uid}."
                continue
            seen.add(record.sop_uid)
            accepted.append((index, temp, record))
        self.blobs.make_durable([temp for _, temp, _ in accepted])
        placed = [(index, self.blobs.place(temp, record.study_uid, record.sop_uid)) for index, temp, record in accepted]
        self.blobs.sync_dirs([relative for _, relative in placed])
        return placed

    def _same_bytes(self, relative_a: str, relative_b: str) -> bool:
        with open(self.blobs.path(relative_a), "rb") as a, open(self.blobs.path(relative_b), "rb") as b:
            while True:
                chunk_a, chunk_b = a.read(1 << 20), b.read(1 << 20)
                if chunk_a != chunk_b:
                    return False
                if not chunk_a:
                    return True

    def _index(
        self,
        conn: Connection,
        batch: list[tuple[Path, Upload]],
        placed: list[tuple[int, str]],
        outcomes: list[Outcome],
        scope: AccessScope,
    ) -> list[str]:
        """Write the index rows of the placed blobs, in the caller's write transaction.

        Returns the blobs to delete once it commits: uploads that duplicate what is stored, and
        files replaced under the overwrite policy.
        """
        now = int(time.time())
        records = [batch[index][1] for index, _ in placed]
        study_rows = {
            row.study_uid: row
            for row in conn.execute(
                select(studies.c.pk, studies.c.study_uid, studies.c.patient_key).where(
                    studies.c.study_uid.in_({r.study_uid for r in records})
                )
            )
        }
        series_rows = {
            row.series_uid: row
            for row in conn.execute(
                select(series.c.pk, series.c.series_uid, series.c.study_pk).where(
                    series.c.series_uid.in_({r.series_uid for r in records})
                )
            )
        }
        existing = {
            row.sop_uid: row
            for row in conn.execute(
                select(
                    instances.c.pk,
                    instances.c.sop_uid,
                    instances.c.blob,
                    instances.c.size,
                    instances.c.series_pk,
                    instances.c.study_pk,
                    studies.c.study_uid,
                    studies.c.patient_key,
                )
                .select_from(instances.join(studies, instances.c.study_pk == studies.c.pk))
                .where(instances.c.sop_uid.in_([r.sop_uid for r in records]))
            )
        }
        touched_series: set[int] = set()
        touched_studies: set[int] = set()
        kept: list[tuple[int, str]] = []
        drop: list[str] = []  # blobs no committed row will reference
        replaced_pks: list[int] = []
        for index, relative in placed:
            record = batch[index][1]
            old = existing.get(record.sop_uid)
            if old is None:
                kept.append((index, relative))
                continue
            if not scope.unrestricted and not scope.permits_study(old.study_uid, old.patient_key):
                # stored in a study this writer does not reach: neither replaced nor confirmed to exist
                outcomes[index].reason = DATASET_DOES_NOT_MATCH_SOP_CLASS
                outcomes[index].message = NOT_ALLOWED
                drop.append(relative)
                continue
            if old.size == record.size and self._same_bytes(relative, old.blob):
                drop.append(relative)  # a retry, or the same upload from another client: nothing changes
                continue
            if self.policy == "reject":
                outcomes[index].reason = DUPLICATE_SOP_INSTANCE
                outcomes[index].message = (
                    "Already stored with different content: delete it first, or set "
                    f'store.duplicate_policy = "overwrite" (SOP Instance {record.sop_uid}).'
                )
                drop.append(relative)
                continue
            replaced_pks.append(old.pk)
            drop.append(old.blob)
            touched_series.add(old.series_pk)
            touched_studies.add(old.study_pk)
            kept.append((index, relative))
        if replaced_pks:  # overwrite policy: the new rows replace these
            drop.extend(derived_blobs(conn, replaced_pks))
            conn.execute(delete(frame_copies).where(frame_copies.c.instance_pk.in_(replaced_pks)))
            conn.execute(delete(instances).where(instances.c.pk.in_(replaced_pks)))
        placed = kept
        new_rows: list[dict[str, Any]] = []
        preexisting_studies = {row.pk for row in study_rows.values()}
        preexisting_series = {row.pk for row in series_rows.values()}
        latest_study: dict[int, Upload] = {}
        latest_series: dict[int, Upload] = {}
        for index, relative in placed:
            record = batch[index][1]
            study_pk, problem = self._study_pk(conn, record, study_rows, scope, now)
            series_pk = None
            if problem is None:
                assert study_pk is not None
                series_pk, problem = self._series_pk(conn, record, study_pk, series_rows, now)
                if problem is not None and not scope.unrestricted:
                    problem = NOT_ALLOWED  # the series is in another study, which this writer may not know of
            if problem is not None:
                outcomes[index].reason = DATASET_DOES_NOT_MATCH_SOP_CLASS
                outcomes[index].message = problem
                drop.append(relative)
                continue
            keys = {"blob": relative, "series_pk": series_pk, "study_pk": study_pk, "created": now}
            new_rows.append({**record.instance_columns, **keys})
            touched_series.add(series_pk)  # type: ignore[arg-type]
            touched_studies.add(study_pk)  # type: ignore[arg-type]
            if study_pk in preexisting_studies:
                latest_study[study_pk] = record  # type: ignore[index]
            if series_pk in preexisting_series:
                latest_series[series_pk] = record  # type: ignore[index]
        if new_rows:
            conn.execute(insert(instances), new_rows)
        # study and series attributes follow the newest instance stored (a correction overwrites)
        if latest_study:
            conn.execute(
                update(studies).where(studies.c.pk == bindparam("b_pk")),
                [{"b_pk": pk, **record.study_columns} for pk, record in latest_study.items()],
            )
        if latest_series:
            conn.execute(
                update(series).where(series.c.pk == bindparam("b_pk")),
                [{"b_pk": pk, **record.series_columns} for pk, record in latest_series.items()],
            )
        refresh_aggregates(conn, touched_series, touched_studies, now)
        return drop

    def _study_pk(
        self, conn: Connection, record: Upload, known: dict[str, Any], scope: AccessScope, now: int
    ) -> tuple[int | None, str | None]:
        patient_key = record.patient.text
        # Before anything about the stored study: adding to an existing study needs the same grant as
        # creating it (else a write token could add to another patient's or a withheld study), and the
        # refusal is the same whether the study exists or not (it must not tell which UIDs are in use).
        if not scope.unrestricted and not scope.permits_study(record.study_uid, patient_key):
            return None, NOT_ALLOWED
        row = known.get(record.study_uid)
        if row is not None:
            if not scope.unrestricted and not scope.permits_study(record.study_uid, row.patient_key):
                return None, NOT_ALLOWED  # stored for someone this writer does not reach: it must not learn so
            if row.patient_key != patient_key:
                return None, (
                    "Study stored for another patient: its PatientID or IssuerOfPatientID differ. Reconcile "
                    f"the patient before storing more in study {record.study_uid}."
                )
            return int(row.pk), None
        pk = _new_pk(
            conn,
            insert(studies).values(
                study_uid=record.study_uid,
                patient_pk=self._patient_pk(conn, record),
                patient_key=patient_key,
                modalities="",
                sop_classes="",
                num_series=0,
                num_instances=0,
                updated=now,
                **record.study_columns,
            ),
        )
        known[record.study_uid] = _Known(pk=pk, patient_key=patient_key, study_pk=None)
        return int(pk), None

    def _series_pk(
        self, conn: Connection, record: Upload, study_pk: int, known: dict[str, Any], now: int
    ) -> tuple[int | None, str | None]:
        row = known.get(record.series_uid)
        if row is not None:
            if row.study_pk != study_pk:
                return None, f"Series belongs to another study: {record.series_uid}."
            return int(row.pk), None
        pk = _new_pk(
            conn,
            insert(series).values(
                series_uid=record.series_uid, study_pk=study_pk, num_instances=0, updated=now, **record.series_columns
            ),
        )
        known[record.series_uid] = _Known(pk=pk, patient_key="", study_pk=study_pk)
        return int(pk), None

    def _patient_pk(self, conn: Connection, record: Upload) -> int:
        key = record.patient.text
        row = conn.execute(select(patients.c.pk).where(patients.c.patient_key == key)).first()
        if row is not None:
            return int(row.pk)
        return _new_pk(
            conn,
            insert(patients).values(
                patient_key=key,
                patient_id=record.patient.patient_id,
                issuer=record.patient.issuer,
                qualifiers=record.patient.qualifiers,
            ),
        )


def _new_pk(conn: Connection, statement: Insert) -> int:
    """Run a one-row INSERT and return the primary key the database gave the row."""
    key = conn.execute(statement).inserted_primary_key
    if key is None:  # only a multi-row or executemany insert has none
        raise RuntimeError("The database returned no primary key for a one-row insert.")
    return int(key[0])


def study_values(record: InstanceRecord) -> dict[str, Any]:
    """The study row's columns that come from an instance's study-level attributes."""
    attrs = record.study_attrs
    return {
        "patient_id": record.patient.patient_id,
        "issuer": record.patient.issuer,
        "patient_name_upper": _first(attrs.get("00100010")).upper(),
        "patient_birth_date": _date(attrs.get("00100030")),
        "patient_sex": _first(attrs.get("00100040")),
        "study_date": _date(attrs.get("00080020")),
        "study_time": _first(attrs.get("00080030")).replace(":", ""),
        "accession_number": _first(attrs.get("00080050")),
        "study_id": _first(attrs.get("00200010")),
        "study_description": _first(attrs.get("00081030")),
        "referring_physician_upper": _first(attrs.get("00080090")).upper(),
        "attrs": _dumps(attrs),
    }


def series_values(record: InstanceRecord) -> dict[str, Any]:
    """The series row's columns that come from an instance's series-level attributes."""
    attrs = record.series_attrs
    return {
        "modality": _first(attrs.get("00080060")),
        "series_number": _int_or_none(attrs.get("00200011")),
        "series_description": _first(attrs.get("0008103E")),
        "pps_start_date": _date(attrs.get("00400244")),
        "pps_start_time": _first(attrs.get("00400245")).replace(":", ""),
        "attrs": _dumps(attrs),
    }


@dataclass
class _Known:
    pk: int
    patient_key: str
    study_pk: int | None


def instance_values(record: InstanceRecord) -> dict[str, Any]:
    """The instance row's columns, all but its blob, keys (series, study) and creation time."""
    frame_index = record.frame_index
    return {
        "sop_uid": record.sop_uid,
        "sop_class_uid": record.sop_class_uid,
        "instance_number": _int_or_none(record.metadata.get("00200013")),
        "transfer_syntax": record.transfer_syntax,
        "size": record.size,
        "num_frames": record.num_frames,
        "metadata": _dumps(record.metadata),
        "attrs": _dumps(record.instance_attrs),
        "frames": frame_index.to_json() if frame_index is not None else None,
        "bulk": json.dumps(
            {
                b.path: [b.vr, b.offset, b.length, record.document_media_type if b.path == "00420011" else None]
                for b in record.bulk
            }
        ),
        "digest": record.digest or None,
    }


def refresh_aggregates(conn: Connection, series_pks: set[int], study_pks: set[int], now: int) -> None:
    """Recount touched series and studies from their rows, drop empty ones, and precompute each
    study's default QIDO-RS answer. A fixed handful of statements per batch, whatever its size."""
    if series_pks:
        count = select(func.count()).where(instances.c.series_pk == series.c.pk).scalar_subquery()
        conn.execute(update(series).where(series.c.pk.in_(series_pks)).values(num_instances=count, updated=now))
        conn.execute(delete(series).where(series.c.pk.in_(series_pks), series.c.num_instances == 0))
    if not study_pks:
        return
    n_instances = select(func.count()).where(instances.c.study_pk == studies.c.pk).scalar_subquery()
    n_series = select(func.count()).where(series.c.study_pk == studies.c.pk).scalar_subquery()
    conn.execute(
        update(studies)
        .where(studies.c.pk.in_(study_pks))
        .values(num_instances=n_instances, num_series=n_series, updated=now)
    )
    conn.execute(delete(series).where(series.c.study_pk.in_(study_pks), ~series.c.study_pk.in_(
        select(instances.c.study_pk).where(instances.c.study_pk.in_(study_pks))
    )))  # fmt: skip
    conn.execute(delete(studies).where(studies.c.pk.in_(study_pks), studies.c.num_instances == 0))
    modalities: dict[int, set[str]] = {pk: set() for pk in study_pks}
    for pk, modality in conn.execute(
        select(series.c.study_pk, series.c.modality).where(series.c.study_pk.in_(study_pks)).distinct()
    ):
        if modality:
            modalities[pk].add(modality)
    sop_classes: dict[int, set[str]] = {pk: set() for pk in study_pks}
    for pk, sop_class in conn.execute(
        select(instances.c.study_pk, instances.c.sop_class_uid).where(instances.c.study_pk.in_(study_pks)).distinct()
    ):
        sop_classes[pk].add(sop_class)
    rows = list(conn.execute(select(studies).where(studies.c.pk.in_(study_pks))))
    updates = []
    for row in rows:
        mods = "\\" + "\\".join(sorted(modalities[row.pk])) + "\\" if modalities[row.pk] else ""
        classes = "\\".join(sorted(sop_classes[row.pk]))
        document = study_document(
            dict(row._mapping) | {"modalities": mods, "sop_classes": classes}, DEFAULT_STUDY_QUERY
        )
        updates.append({"b_pk": row.pk, "modalities": mods, "sop_classes": classes, "qido": _dumps(document)})
    if updates:
        conn.execute(
            update(studies).where(studies.c.pk == bindparam("b_pk")),
            updates,
        )


def derived_blobs(conn: Connection, instance_pks: list[int]) -> list[str]:
    """Files computed from these instances (HTJ2K copies), to delete along with them."""
    stmt = select(frame_copies.c.blob).where(
        frame_copies.c.instance_pk.in_(instance_pks), frame_copies.c.blob.isnot(None)
    )
    return [row[0] for row in conn.execute(stmt)]
