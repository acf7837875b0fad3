"""What the EHR has of each study: the ImagingStudy publisher's mark (aperture.fhir.publish).

`published_updated` is the study's `updated` value when it was last published (or settled without
publishing: no patient matched at the EHR, or it cannot be published as it is); a study whose
`updated` differs has changed since and is published again once stable. `published_note` says how
that attempt ended, for the operator. Both NULL: never published.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("published_updated", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("published_note", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("published_note")
        batch.drop_column("published_updated")
