"""SHA-256 of each stored file, for `Repr-Digest` (RFC 9530) without hashing on every download.

Recorded by the background pass after upload (`aperture.store.copies`), never by STOW-RS; NULL
until then, and for rows stored before this revision (their digest is computed on the request, as
before).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("sha256")
