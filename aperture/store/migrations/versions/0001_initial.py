"""Initial index: patients, studies, series, instances.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("patient_key", sa.Text, nullable=False, unique=True),
        sa.Column("patient_id", sa.Text, nullable=False),
        sa.Column("issuer", sa.Text, nullable=False),
        sa.Column("qualifiers", sa.Text, nullable=False),
    )
    op.create_table(
        "studies",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("patient_pk", sa.Integer, sa.ForeignKey("patients.pk"), nullable=False),
        sa.Column("patient_key", sa.Text, nullable=False),
        sa.Column("patient_id", sa.Text, nullable=False),
        sa.Column("issuer", sa.Text, nullable=False),
        sa.Column("patient_name_upper", sa.Text, nullable=False),
        sa.Column("patient_birth_date", sa.String(8), nullable=False),
        sa.Column("patient_sex", sa.Text, nullable=False),
        sa.Column("study_date", sa.String(8), nullable=False),
        sa.Column("study_time", sa.Text, nullable=False),
        sa.Column("accession_number", sa.Text, nullable=False),
        sa.Column("study_id", sa.Text, nullable=False),
        sa.Column("study_description", sa.Text, nullable=False),
        sa.Column("referring_physician_upper", sa.Text, nullable=False),
        sa.Column("modalities", sa.Text, nullable=False),
        sa.Column("sop_classes", sa.Text, nullable=False),
        sa.Column("num_series", sa.Integer, nullable=False),
        sa.Column("num_instances", sa.Integer, nullable=False),
        sa.Column("attrs", sa.LargeBinary, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )
    for column in ("patient_pk", "patient_id", "patient_name_upper", "study_date", "accession_number"):
        op.create_index(f"ix_studies_{column}", "studies", [column])
    op.create_table(
        "series",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("series_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("study_pk", sa.Integer, sa.ForeignKey("studies.pk"), nullable=False),
        sa.Column("modality", sa.Text, nullable=False),
        sa.Column("series_number", sa.Integer),
        sa.Column("series_description", sa.Text, nullable=False),
        sa.Column("pps_start_date", sa.String(8), nullable=False),
        sa.Column("pps_start_time", sa.Text, nullable=False),
        sa.Column("num_instances", sa.Integer, nullable=False),
        sa.Column("attrs", sa.LargeBinary, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_series_study_pk", "series", ["study_pk"])
    op.create_table(
        "instances",
        sa.Column("pk", sa.Integer, primary_key=True),
        sa.Column("sop_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("series_pk", sa.Integer, sa.ForeignKey("series.pk"), nullable=False),
        sa.Column("study_pk", sa.Integer, sa.ForeignKey("studies.pk"), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("instance_number", sa.Integer),
        sa.Column("transfer_syntax", sa.String(64), nullable=False),
        sa.Column("blob", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("num_frames", sa.Integer, nullable=False),
        sa.Column("metadata", sa.LargeBinary, nullable=False),
        sa.Column("attrs", sa.LargeBinary, nullable=False),
        sa.Column("frames", sa.Text),
        sa.Column("bulk", sa.Text, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_instances_study_pk", "instances", ["study_pk"])
    op.create_index("ix_instances_series_number", "instances", ["series_pk", "instance_number"])


def downgrade() -> None:
    for table in ("instances", "series", "studies", "patients"):
        op.drop_table(table)
