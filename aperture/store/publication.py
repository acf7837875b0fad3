"""What the EHR has of each study: the bookkeeping of the ImagingStudy publisher (aperture.fhir.publish).

`studies.published_updated` (migration 0007) is the study's `updated` value when it was last
published, or settled without publishing (the EHR found no patient, or the study cannot be sent as
it is); `published_note` says how. A study is due when it has been unchanged for the publisher's
delay and `published_updated` is not its `updated`: never sent, or changed since.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Engine, or_, select, update

from aperture.store.engine import write_transaction
from aperture.store.index import scope_clause
from aperture.store.schema import studies
from aperture.store.scope import AccessScope


@dataclass(frozen=True)
class Due:
    study_uid: str
    updated: int  # the version to publish


def due_studies(
    engine: Engine, scope: AccessScope, *, changed_before: int, limit: int, skip: Collection[str] = ()
) -> list[Due]:
    """Studies unchanged since before `changed_before` (epoch seconds) that the EHR lacks as they are, oldest first.

    One query over the studies table (no index serves "published_updated differs from updated"):
    the publisher runs it every few seconds, off any request.
    """
    stmt = (
        select(studies.c.study_uid, studies.c.updated)
        .where(
            scope_clause(scope),
            studies.c.updated <= changed_before,
            or_(studies.c.published_updated.is_(None), studies.c.published_updated != studies.c.updated),
        )
        .order_by(studies.c.updated, studies.c.pk)
        .limit(limit + len(skip))
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [Due(row.study_uid, row.updated) for row in rows if row.study_uid not in skip][:limit]


def mark_published(engine: Engine, study_uid: str, updated: int, note: str) -> bool:
    """Record that the EHR has (or settled) version `updated`; False when the study changed meanwhile."""
    with write_transaction(engine) as conn:
        result = conn.execute(
            update(studies)
            .where(studies.c.study_uid == study_uid, studies.c.updated == updated)
            .values(published_updated=updated, published_note=note)
        )
        return bool(result.rowcount)
