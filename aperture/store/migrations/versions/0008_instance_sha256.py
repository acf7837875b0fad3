"""SHA-256 of each stored file, for `Repr-Digest` (RFC 9530) without hashing on every download.

Recorded by the background pass after upload (`aperture.store.copies`), never by STOW-RS; NULL
until then. Rows stored by 0.1 already hold their file's SHA-256 as `digest` (64 hex digits; later
rows hold a 32-digit XXH3-128 fingerprint there), so the upgrade copies it; other rows stored before
this revision stay NULL and their digest is computed on the request, as before.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.add_column("instances", sa.Column("sha256", sa.String(64), nullable=True))  # SQLite adds a column in place
    rows = sa.table("instances", sa.column("digest", sa.String(64)), sa.column("sha256", sa.String(64)))
    op.execute(rows.update().where(sa.func.length(rows.c.digest) == 64).values(sha256=rows.c.digest))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("sha256")
