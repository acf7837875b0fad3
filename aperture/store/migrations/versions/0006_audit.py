"""Audit events (aperture.audit): one row per FHIR AuditEvent, with the columns it is searched by.

The AuditEvent JSON is kept as written (`document`); `recorded`, `patient`, `client_id`,
`outcome` and `action` repeat what search filters on, indexed so an audit search never reads
every document.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recorded", sa.DateTime, nullable=False),  # UTC, naive
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("client_id", sa.Text),
        sa.Column("user_ref", sa.Text),
        sa.Column("patient", sa.Text),
        sa.Column("studies", sa.Text, nullable=False),  # space-separated Study Instance UIDs
        sa.Column("source_address", sa.Text),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_events_recorded", "audit_events", ["recorded"])
    op.create_index("ix_audit_events_patient", "audit_events", ["patient", "recorded"])
    op.create_index("ix_audit_events_client", "audit_events", ["client_id", "recorded"])


def downgrade() -> None:
    op.drop_table("audit_events")
