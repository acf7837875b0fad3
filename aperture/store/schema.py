"""The SQL index: patients, studies, series, instances, with what QIDO and /metadata need precomputed.

Plain SQLAlchemy Core tables (no ORM objects on the hot path). Matching keys that QIDO answers in
SQL are columns; names are also kept upper-cased so case-insensitive PN matching can use an index on
SQLite and PostgreSQL alike. Each instance row carries its complete DICOM JSON, frame index and bulk
data locations, so no request after ingest has to parse a DICOM file unless it transcodes or renders.
The Alembic revisions in `migrations/` create exactly these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

patients = Table(
    "patients",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("patient_key", Text, nullable=False, unique=True),  # PatientKey.text: issuer-qualified
    Column("patient_id", Text, nullable=False),
    Column("issuer", Text, nullable=False),
    Column("qualifiers", Text, nullable=False),
)

studies = Table(
    "studies",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("study_uid", String(64), nullable=False, unique=True),
    Column("patient_pk", Integer, ForeignKey("patients.pk"), nullable=False, index=True),
    Column("patient_key", Text, nullable=False),
    Column("patient_id", Text, nullable=False, index=True),
    Column("issuer", Text, nullable=False),
    Column("patient_name_upper", Text, nullable=False, index=True),
    Column("patient_birth_date", String(8), nullable=False),
    Column("patient_sex", Text, nullable=False),
    Column("study_date", String(8), nullable=False, index=True),
    Column("study_time", Text, nullable=False),
    Column("accession_number", Text, nullable=False, index=True),
    Column("study_id", Text, nullable=False),
    Column("study_description", Text, nullable=False),
    Column("referring_physician_upper", Text, nullable=False),
    Column("modalities", Text, nullable=False),  # "\CT\SR\": delimited so LIKE '%\CT\%' is exact
    Column("sop_classes", Text, nullable=False),
    Column("num_series", Integer, nullable=False),
    Column("num_instances", Integer, nullable=False),
    Column("attrs", LargeBinary, nullable=False),  # JSON of the study-level attributes
    Column("updated", BigInteger, nullable=False),
    Column("qido", LargeBinary),  # the default QIDO-RS answer, kept current by every write (0002)
    # the ImagingStudy publisher's mark (0007): `updated` as last published to the EHR, and how that went
    Column("published_updated", BigInteger),
    Column("published_note", Text),
)

series = Table(
    "series",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("series_uid", String(64), nullable=False, unique=True),
    Column("study_pk", Integer, ForeignKey("studies.pk"), nullable=False, index=True),
    Column("modality", Text, nullable=False),
    Column("series_number", Integer),
    Column("series_description", Text, nullable=False),
    Column("pps_start_date", String(8), nullable=False),
    Column("pps_start_time", Text, nullable=False),
    Column("num_instances", Integer, nullable=False),
    Column("attrs", LargeBinary, nullable=False),  # JSON of the series-level attributes
    Column("updated", BigInteger, nullable=False),
)

instances = Table(
    "instances",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("sop_uid", String(64), nullable=False, unique=True),
    Column("series_pk", Integer, ForeignKey("series.pk"), nullable=False),
    Column("study_pk", Integer, ForeignKey("studies.pk"), nullable=False, index=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("instance_number", Integer),
    Column("transfer_syntax", String(64), nullable=False),
    Column("blob", Text, nullable=False),  # path relative to the blob root, derived from hashes
    Column("size", BigInteger, nullable=False),
    Column("num_frames", Integer, nullable=False),
    Column("metadata", LargeBinary, nullable=False),  # DICOM JSON, BulkDataURIs relative to BASE_PLACEHOLDER
    Column("attrs", LargeBinary, nullable=False),  # JSON of the instance-level QIDO attributes
    Column("frames", Text),  # FrameIndex.to_json(), NULL when frames cannot be located by offset
    Column("bulk", Text, nullable=False),  # JSON {path: [vr, offset, length]}
    Column("created", BigInteger, nullable=False),
    # content fingerprint of the stored file, the basis of strong ETags (0003): XXH3-128, or SHA-256
    # for rows stored by 0.1
    Column("digest", String(64)),
    # hex SHA-256 of the stored file (0008), recorded by the background pass after upload (not on the
    # STOW path) for `Repr-Digest`; NULL until then, and for instances that pass never reads
    Column("sha256", String(64)),
)

Index("ix_instances_series_number", instances.c.series_pk, instances.c.instance_number)

frame_copies = Table(
    "frame_copies",
    metadata,
    Column("instance_pk", Integer, ForeignKey("instances.pk", ondelete="CASCADE"), primary_key=True),
    Column("status", String(16), nullable=False, index=True),  # working | ready | none
    Column("transfer_syntax", String(64), nullable=False),
    Column("blob", Text),  # the codestreams back to back, under blobs/
    Column("frames", Text),  # FrameIndex JSON of `blob`
    Column("note", Text, nullable=False),  # why there is no copy, for status "none"
    Column("updated", BigInteger, nullable=False),
)
