"""Small helpers shared by tests: multipart bodies and synthetic instances with chosen UIDs."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def multipart_body(parts: Iterable[bytes], *, content_type: str = "application/dicom") -> tuple[bytes, str]:
    """(body, Content-Type header) for a STOW-RS request."""
    boundary = secrets.token_hex(8)
    chunks = []
    for data in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def make_instance(
    *,
    study: str | None = None,
    series: str | None = None,
    sop: str | None = None,
    patient_id: str = "PAT-1",
    issuer: str | None = "urn:oid:2.16.840.1.113883.3.1",
    patient_name: str = "Doe^Jane",
    study_date: str = "20240105",
    modality: str = "OT",
    accession: str = "ACC-1",
    instance_number: int = 1,
    series_number: int = 1,
    frames: int = 1,
    rows: int = 16,
    columns: int = 16,
    extra: dict[str, object] | None = None,
) -> bytes:
    """A small, valid Secondary Capture Part-10 file (16-bit MONOCHROME2)."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop or generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.PatientID = patient_id
    if issuer is not None:
        ds.IssuerOfPatientID = issuer
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "F"
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession
    ds.StudyID = "1"
    ds.StudyDescription = "Test study"
    ds.ReferringPhysicianName = "Smith^John"
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Test series"
    ds.InstanceNumber = instance_number
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    pixels = (np.arange(frames * rows * columns, dtype=np.uint16) % 4096).reshape(frames, rows, columns)
    ds.PixelData = pixels.tobytes()
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def stow(client, parts: Iterable[bytes], path: str = "/studies"):  # type: ignore[no-untyped-def]
    body, ctype = multipart_body(parts)
    return client.post(path, content=body, headers={"Content-Type": ctype, "Accept": "application/dicom+json"})


def sequence_items(answer: dict, tag: str) -> list[dict]:  # type: ignore[type-arg]
    return (answer.get(tag) or {}).get("Value", [])


def sample_with_new_uids(name: str) -> bytes:
    """A pydicom-data file as Part-10 bytes under fresh study, series and instance UIDs."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file(name))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def store_sample(client, name: str) -> tuple[bytes, str]:  # type: ignore[no-untyped-def]
    """Store a pydicom-data file under fresh UIDs; returns (its bytes, its RetrieveURL)."""
    data = sample_with_new_uids(name)
    answer = stow(client, [data]).json()
    return data, str(answer["00081199"]["Value"][0]["00081190"]["Value"][0])


def partial_uploads(data: Path) -> list[Path]:
    """What uploads left in the data folder's `tmp/`: every file there but the empty spares."""
    spare = data / "tmp" / "spare"
    return [
        path
        for path in (data / "tmp").rglob("*")
        if path != spare and not (path.parent == spare and path.is_file() and path.stat().st_size == 0)
    ]


def empty_strings(document: object, path: str = "") -> list[str]:
    """Where a DICOM JSON `document` holds "" (a value or a PN component group), as paths: PS3.18 F.2.5
    writes empty values as null, so a conformant answer has none."""
    if isinstance(document, dict):
        return [p for key, value in document.items() for p in empty_strings(value, f"{path}/{key}")]
    if isinstance(document, list):
        return [p for index, value in enumerate(document) for p in empty_strings(value, f"{path}/{index}")]
    return [path] if document == "" else []
