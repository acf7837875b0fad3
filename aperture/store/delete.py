"""Deletion of studies, series and instances: index rows first, then their blobs.

Rows go in one transaction; blobs are unlinked only after it commits, so a crash in between leaves
unreachable files, never an index row pointing at a missing file.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, delete, select

from aperture.errors import Forbidden
from aperture.store.blobs import BlobStore
from aperture.store.engine import write_transaction
from aperture.store.index import scope_clause
from aperture.store.ingest import derived_blobs, refresh_aggregates
from aperture.store.schema import frame_copies, instances, series, studies
from aperture.store.scope import AccessScope


def delete_instances(
    engine: Engine,
    blobs: BlobStore,
    scope: AccessScope,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> int:
    """Delete what the UIDs name within `scope`; returns how many instances went."""
    if not scope.may_delete:
        raise Forbidden("This authorization does not allow deleting.")
    stmt = (
        select(instances.c.pk, instances.c.blob, instances.c.series_pk, instances.c.study_pk)
        .select_from(
            instances.join(series, instances.c.series_pk == series.c.pk).join(
                studies, instances.c.study_pk == studies.c.pk
            )
        )
        .where(scope_clause(scope), studies.c.study_uid == study_uid)
    )
    if series_uid is not None:
        stmt = stmt.where(series.c.series_uid == series_uid)
    if sop_uid is not None:
        stmt = stmt.where(instances.c.sop_uid == sop_uid)
    with write_transaction(engine) as conn:
        rows = list(conn.execute(stmt))
        if not rows:
            return 0
        pks = [r.pk for r in rows]
        derived = derived_blobs(conn, pks)
        conn.execute(delete(frame_copies).where(frame_copies.c.instance_pk.in_(pks)))
        conn.execute(delete(instances).where(instances.c.pk.in_(pks)))
        refresh_aggregates(conn, {r.series_pk for r in rows}, {r.study_pk for r in rows}, int(time.time()))
    for row in rows:
        blobs.remove(row.blob)
    for relative in derived:
        blobs.remove(relative)
    return len(rows)
