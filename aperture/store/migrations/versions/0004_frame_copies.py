"""HTJ2K copies of stored frames, computed in the background after ingest.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "frame_copies",
        sa.Column("instance_pk", sa.Integer, sa.ForeignKey("instances.pk", ondelete="CASCADE"), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("transfer_syntax", sa.String(64), nullable=False),
        sa.Column("blob", sa.Text),
        sa.Column("frames", sa.Text),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_frame_copies_status", "frame_copies", ["status"])


def downgrade() -> None:
    op.drop_table("frame_copies")
