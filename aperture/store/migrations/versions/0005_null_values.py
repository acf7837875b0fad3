"""Empty values in the stored DICOM JSON become null elements (PS3.18 F.2.5), as new instances get.

Until this revision, elements converted through pydicom kept empty values as "" (`\\ISO 2022 IR 149` was
["", "ISO 2022 IR 149"]) and empty PN component groups as "" ({"Alphabetic": "", ...}). F.2.5 says
an empty value among several is a null array element; F.2.2 writes only a name's non-empty
component groups. The JSON is computed at ingest and served as stored, so this revision rewrites the
stored documents once instead of every answer fixing them on the way out.

Only rows whose JSON holds `""` are read (a byte search in SQL), in batches of `_BATCH` rows by
primary key, so memory stays bounded on any index size. The rewrite is exactly the new conversion's
for those values: "" becomes null, "" groups are dropped, a name without groups becomes null, and an
element whose only value was empty loses its "Value" (F.2.5: present without a value). Everything
else in a document keeps its value. Downgrading leaves the nulls: older versions
read them (their own conversion wrote null for empty values on the fast path).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

_BATCH = 500
# (table, JSON columns): every stored document that holds DICOM JSON
_DOCUMENTS = (
    ("instances", ("metadata", "attrs")),
    ("series", ("attrs",)),
    ("studies", ("attrs", "qido")),
)


def upgrade() -> None:
    connection = op.get_bind()
    for table, columns in _DOCUMENTS:
        _rewrite_table(connection, table, columns)


def downgrade() -> None:
    pass  # null elements are valid DICOM JSON for every version


def _holds_empty_string(dialect: str, column: str) -> str:
    """SQL that is true when the JSON bytes of `column` contain `""` (byte 0x22 twice)."""
    if dialect == "postgresql":
        return f"position('\\x2222'::bytea in {column}) > 0"
    return f"instr({column}, X'2222') > 0"


def _rewrite_table(connection: sa.Connection, table: str, columns: tuple[str, ...]) -> None:
    dialect = connection.dialect.name
    where = " OR ".join(f"({column} IS NOT NULL AND {_holds_empty_string(dialect, column)})" for column in columns)
    select = sa.text(
        f"SELECT pk, {', '.join(columns)} FROM {table} WHERE pk > :last AND ({where}) ORDER BY pk LIMIT :n"
    )
    last = 0
    while True:
        rows = connection.execute(select, {"last": last, "n": _BATCH}).fetchall()
        if not rows:
            return
        for row in rows:
            changes = {}
            for column, raw in zip(columns, row[1:], strict=True):
                if raw is None or b'""' not in bytes(raw):
                    continue
                rewritten = _rewrite(bytes(raw))
                if rewritten != bytes(raw):
                    changes[column] = rewritten
            if changes:
                assignments = ", ".join(f"{column} = :{column}" for column in changes)
                connection.execute(
                    sa.text(f"UPDATE {table} SET {assignments} WHERE pk = :pk"), {**changes, "pk": row[0]}
                )
        last = rows[-1][0]


def _rewrite(raw: bytes) -> bytes:
    """The document `raw` with F.2.5 nulls; unchanged bytes when it holds no empty value."""
    document = json.loads(raw)
    if not _dataset(document):
        return raw
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _dataset(dataset: Any) -> bool:
    """Rewrite one DICOM JSON data set in place; whether anything changed."""
    if not isinstance(dataset, dict):
        return False
    changed = False
    for element in dataset.values():
        if isinstance(element, dict):
            changed |= _element(element)
    return changed


def _element(element: dict[str, Any]) -> bool:
    values = element.get("Value")
    if not isinstance(values, list):
        return False
    if element.get("vr") == "SQ":
        changed = False
        for item in values:
            changed |= _dataset(item)
        return changed
    new = [_value(value) for value in values]
    if new == values:
        return False
    if len(values) == 1 and new == [None]:
        del element["Value"]  # the only value was empty: present without a value (F.2.5)
    else:
        element["Value"] = new
    return True


def _value(value: Any) -> Any:
    if value == "":
        return None
    if isinstance(value, dict) and _has_empty_group(value):  # PN: only the non-empty component groups (F.2.2)
        groups = {name: text for name, text in value.items() if text != ""}
        return groups or None
    return value


def _has_empty_group(value: dict[str, Any]) -> bool:
    """Whether `value` is a PN value holding an empty component group."""
    return any(name in ("Alphabetic", "Ideographic", "Phonetic") and text == "" for name, text in value.items())
