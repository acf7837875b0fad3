"""Synthetic but realistic DICOM Part-10 files for benchmarks, demos and tests.

Everything here is a pure function of its arguments: the same arguments always give the same
bytes (UIDs included), nothing touches the network or the file system, and only the standard
library, pydicom and numpy are used.

* :func:`ct_study` yields the slices of one axial CT series (CT Image Storage, Explicit VR Little
  Endian, 16-bit signed, rescale/window attributes, advancing ImagePositionPatient). The pixels are a
  cheap phantom -- a body ellipse with a few spheres and noise -- so 300 slices of 512x512 are
  generated in a few seconds (about 512 KiB per slice).
* :func:`small_study` returns a one-instance study (Secondary Capture Image Storage, MONOCHROME2,
  8 or 16 bits) whose patient, date, accession number and modality vary with ``index``; used to fill
  a server with thousands of studies for QIDO-RS queries.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Iterator
from io import BytesIO

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

__all__ = ["IMPLEMENTATION_CLASS_UID", "ct_study", "small_study", "synthetic_uid"]

#: Implementation Class UID written in the File Meta Information of every generated file.
IMPLEMENTATION_CLASS_UID = UID("2.25.207861917451218370153462513349226342733")
IMPLEMENTATION_VERSION_NAME = "APERTURE_SYNTH"

_GIVEN = (
    "Alice", "Bruno", "Chen", "Dana", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Kofi", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tamar",
)  # fmt: skip
_FAMILY = (
    "Smith", "Garcia", "Nguyen", "Muller", "Rossi", "Kowalski", "Okafor", "Tanaka", "Dubois",
    "Larsen", "Haddad", "Ivanova", "Silva", "OBrien", "Yilmaz", "Kim", "Novak", "Patel", "Berg",
    "Moreau", "Jensen", "Costa", "Fischer",
)  # fmt: skip
_MODALITIES = ("CT", "MR", "CR", "US", "DX")
_DESCRIPTIONS = {
    "CT": ("CT CHEST W/O CONTRAST", "CHEST", "AXIAL 5MM"),
    "MR": ("MR BRAIN W/WO CONTRAST", "BRAIN", "T2 FLAIR AX"),
    "CR": ("XR CHEST 2 VIEWS", "CHEST", "PA"),
    "US": ("US ABDOMEN COMPLETE", "ABDOMEN", "LIVER LONG"),
    "DX": ("XR KNEE 3 VIEWS", "KNEE", "AP"),
}
_UID_NAMESPACE = uuid.UUID("5e0c7a53-7a0e-4c59-9d0f-8b3f4f2a6a11")
_FIRST_DAY = _dt.date(2015, 1, 1)
_N_DAYS = (_dt.date(2024, 12, 31) - _FIRST_DAY).days + 1


def synthetic_uid(*parts: object) -> UID:
    """Return a deterministic ``2.25.`` UID derived from ``parts`` (same parts -> same UID).

    The UID is the decimal form of a name-based (SHA-1, version 5) UUID, as PS3.5 B.2 allows.
    (``pydicom.uid.generate_uid(prefix=None, ...)`` ignores ``entropy_srcs`` and is random.)
    """
    name = "/".join(map(str, parts))
    return UID(f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}")


def _file_meta(sop_class: UID, sop_instance: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _to_bytes(ds: Dataset) -> bytes:
    buf = BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _patient(ds: Dataset, name: str, patient_id: str, issuer: str, birth_date: str, sex: str) -> None:
    """The Patient module attributes (PatientID is qualified by its issuer, as Aperture stores it)."""
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex


def _grayscale_pixels(ds: Dataset, rows: int, cols: int, *, allocated: int, stored: int, signed: bool) -> None:
    """The Image Pixel module attributes of a single-sample grayscale image."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = allocated
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def _ds_num(value: float) -> str:
    """Format a number for a DS element (at most 16 characters, no exponent for normal values)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _ct_phantom(rows: int, cols: int, n_slices: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (body mask bool[rows, cols], precomputed noise int16[k, rows, cols]) for the phantom."""
    yy, xx = np.ogrid[:rows, :cols]
    cy, cx = (rows - 1) / 2.0, (cols - 1) / 2.0
    body = ((yy - cy) / (0.40 * rows)) ** 2 + ((xx - cx) / (0.46 * cols)) ** 2 <= 1.0
    rng = np.random.default_rng(seed)
    # A handful of noise fields re-used (rolled) across slices: generating fresh gaussian noise for
    # 300 x 512 x 512 pixels would dominate the run time without making the data more realistic.
    k = max(1, min(8, n_slices))
    noise = rng.normal(0.0, 12.0, size=(k, rows, cols)).astype(np.int16)
    return body, noise


def ct_study(
    n_slices: int = 300,
    rows: int = 512,
    cols: int = 512,
    *,
    patient_id: str = "BENCH-CT",
    issuer: str = "urn:oid:1.2.3.4",
    patient_name: str = "Bench^Ct",
    study_date: str = "20240105",
    seed: int = 0,
    study_uid: str | None = None,
    accession: str | None = None,
    study_description: str = "CT CHEST ABDOMEN PELVIS W CONTRAST",
    birth_date: str = "19700101",
    sex: str = "O",
) -> Iterator[bytes]:
    """Yield ``n_slices`` Part-10 CT Image Storage files forming one study with one axial series.

    Each file is Explicit VR Little Endian, 16 bits allocated/stored, signed pixels with
    RescaleSlope 1 / RescaleIntercept -1024 (so stored value = HU + 1024), soft-tissue window,
    0.7 mm pixels, 1.25 mm slices with ImagePositionPatient advancing in -z. UIDs derive from
    ``patient_id``, ``study_date`` and ``seed`` only (or from ``study_uid`` when it is given), so
    the same call yields the same study.
    """
    if n_slices < 1 or rows < 8 or cols < 8:
        raise ValueError("need n_slices >= 1 and rows, cols >= 8")
    key: tuple[object, ...] = ("ct", patient_id, study_date, seed) if study_uid is None else ("ct", study_uid)
    study_uid = study_uid or synthetic_uid(*key, "study")
    series_uid = synthetic_uid(*key, "series")
    frame_of_ref = synthetic_uid(*key, "for")
    pixel_spacing = 0.7
    thickness = 1.25
    x0 = -pixel_spacing * (cols - 1) / 2.0
    y0 = -pixel_spacing * (rows - 1) / 2.0
    z_top = thickness * (n_slices - 1) / 2.0

    ds = Dataset()
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = "083015"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ""
    # General Study
    ds.StudyDate = study_date
    ds.StudyTime = "083000"
    ds.AccessionNumber = accession if accession is not None else f"ACC-{patient_id}"[:16]
    ds.ReferringPhysicianName = "Referring^Doctor"
    ds.StudyDescription = study_description
    ds.StudyInstanceUID = study_uid
    ds.StudyID = "1"
    # General Series
    ds.SeriesDate = study_date
    ds.SeriesTime = "083010"
    ds.Modality = "CT"
    ds.SeriesDescription = "AXIAL 1.25MM STD"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "FFS"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 2
    # General Equipment
    ds.Manufacturer = "Aperture Synthetic"
    ds.InstitutionName = "Aperture Test Hospital"
    ds.StationName = "SYNTHCT01"
    ds.ManufacturerModelName = "Phantom CT"
    ds.SoftwareVersions = "1.0"
    # Patient
    _patient(ds, patient_name, patient_id, issuer, birth_date, sex)
    if birth_date[:4].isdigit():
        ds.PatientAge = f"{max(0, int(study_date[:4]) - int(birth_date[:4])):03d}Y"
    # Frame of Reference
    ds.FrameOfReferenceUID = frame_of_ref
    ds.PositionReferenceIndicator = ""
    # General Image
    ds.InstanceNumber = 1
    ds.ContentDate = study_date
    ds.ContentTime = "083015"
    ds.AcquisitionNumber = 1
    # CT Image
    ds.KVP = "120"
    ds.SliceThickness = _ds_num(thickness)
    ds.ConvolutionKernel = "STANDARD"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.WindowCenterWidthExplanation = "SOFT TISSUE"
    # Image Plane
    ds.PixelSpacing = [_ds_num(pixel_spacing), _ds_num(pixel_spacing)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.SliceLocation = "0"
    # Image Pixel
    _grayscale_pixels(ds, rows, cols, allocated=16, stored=16, signed=True)

    body, noise = _ct_phantom(rows, cols, n_slices, seed)
    yy, xx = np.ogrid[:rows, :cols]
    # Background: air (-1000 HU) outside, soft tissue (+40 HU) inside the body; stored = HU + 1024.
    base = np.where(body, 40 + 1024, -1000 + 1024).astype(np.int16)
    # Spheres (centre row, centre col, centre slice fraction, radius in pixels, HU).
    spheres = (
        (0.45, 0.35, 0.35, 0.10, -850),  # "lung"
        (0.45, 0.65, 0.40, 0.10, -850),  # "lung"
        (0.60, 0.50, 0.70, 0.07, 300),  # contrast-filled vessel/organ
        (0.75, 0.50, 0.50, 0.05, 1200),  # "bone"
    )
    for i in range(n_slices):
        sop_uid = synthetic_uid(*key, "instance", i)
        z = z_top - i * thickness
        img = base.copy()
        for fr, fc, fz, frad, hu in spheres:
            dz = (i / max(1, n_slices - 1) - fz) * n_slices * thickness / pixel_spacing
            r2 = (frad * min(rows, cols)) ** 2 - dz**2
            if r2 > 0:
                mask = (yy - fr * rows) ** 2 + (xx - fc * cols) ** 2 <= r2
                img[mask] = hu + 1024
        img += np.roll(noise[i % len(noise)], shift=i * 7, axis=1) * body
        ds.file_meta = _file_meta(CTImageStorage, sop_uid)
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [_ds_num(x0), _ds_num(y0), _ds_num(z)]
        ds.SliceLocation = _ds_num(z)
        ds.PixelData = img.astype("<i2", copy=False).tobytes()
        yield _to_bytes(ds)


def small_study(
    index: int,
    *,
    rows: int = 64,
    cols: int = 64,
    issuer: str = "urn:oid:1.2.3.4",
    seed: int = 0,
) -> bytes:
    """Return one Part-10 file that is a complete one-instance study, varied by ``index``.

    Patient ID ``PAT{index:05d}`` (one patient per study), a name from a small list, a study date
    spread over 2015-01-01..2024-12-31, accession number ``ACC{index:07d}``, and a modality cycling
    through CT/MR/CR/US/DX. The object is Secondary Capture Image Storage, MONOCHROME2, 8-bit for
    US and 16-bit (12 stored) otherwise, Explicit VR Little Endian.
    """
    if index < 0:
        raise ValueError("index must be >= 0")
    modality = _MODALITIES[index % len(_MODALITIES)]
    study_desc, body_part, series_desc = _DESCRIPTIONS[modality]
    date = _FIRST_DAY + _dt.timedelta(days=(index * 7919 + seed) % _N_DAYS)
    study_date = date.strftime("%Y%m%d")
    hh, mm, ss = 7 + index % 12, (index * 7) % 60, (index * 13) % 60
    study_time = f"{hh:02d}{mm:02d}{ss:02d}"
    birth_year = 1935 + (index * 37) % 70
    key = ("small", index, seed)
    study_uid = synthetic_uid(*key, "study")
    sop_uid = synthetic_uid(*key, "instance")

    ds = Dataset()
    ds.file_meta = _file_meta(SecondaryCaptureImageStorage, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.AccessionNumber = f"ACC{index:07d}"
    ds.Modality = modality
    ds.ConversionType = "WSD"
    ds.Manufacturer = "Aperture Synthetic"
    ds.InstitutionName = "Aperture Test Hospital"
    ds.ReferringPhysicianName = "Referring^Doctor"
    ds.StudyDescription = study_desc
    ds.SeriesDescription = series_desc
    _patient(
        ds,
        f"{_FAMILY[index % len(_FAMILY)]}^{_GIVEN[(index // len(_FAMILY)) % len(_GIVEN)]}",
        f"PAT{index:05d}",
        issuer,
        f"{birth_year}{1 + index % 12:02d}{1 + index % 28:02d}",
        "FM"[index % 2],
    )
    ds.BodyPartExamined = body_part
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = synthetic_uid(*key, "series")
    ds.StudyID = str(index + 1)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    _grayscale_pixels(ds, rows, cols, allocated=16, stored=12, signed=False)

    yy, xx = np.ogrid[:rows, :cols]
    ramp = (yy * 3 + xx * (1 + index % 5)) % 256
    disc = (yy - rows / 2) ** 2 + (xx - cols / 2) ** 2 <= (min(rows, cols) * (0.2 + 0.02 * (index % 10))) ** 2
    img = np.where(disc, 230, ramp).astype(np.uint16)
    if modality == "US":
        _grayscale_pixels(ds, rows, cols, allocated=8, stored=8, signed=False)
        ds.PixelData = img.astype(np.uint8).tobytes()
    else:
        ds.WindowCenter = "2048"
        ds.WindowWidth = "4096"
        ds.PixelData = (img * 16).astype("<u2").tobytes()
    return _to_bytes(ds)


def patient_study(
    *,
    study_uid: str,
    accession: str,
    modality: str,
    description: str,
    study_date: str,
    patient_id: str,
    issuer: str,
    patient_name: str,
    birth_date: str = "",
    sex: str = "O",
    images: int = 12,
    rows: int = 256,
    cols: int = 256,
) -> Iterator[bytes]:
    """A study that an EHR knows by its UID and accession number: one series of ``images`` images.

    CT is a CT Image Storage volume (`ct_study`); any other modality is a series of Secondary
    Capture images carrying that Modality, which every viewer shows. UIDs below the study derive
    from ``study_uid``, so the same call yields the same files.
    """
    if modality == "CT":
        yield from ct_study(
            images, rows, cols, patient_id=patient_id, issuer=issuer, patient_name=patient_name,
            study_date=study_date, study_uid=study_uid, accession=accession, study_description=description,
            birth_date=birth_date, sex=sex,
        )  # fmt: skip
        return
    series_uid = synthetic_uid("patient-study", study_uid, "series")
    yy, xx = np.ogrid[:rows, :cols]
    for number in range(1, images + 1):
        sop_uid = synthetic_uid("patient-study", study_uid, "instance", number)
        ds = Dataset()
        ds.file_meta = _file_meta(SecondaryCaptureImageStorage, sop_uid)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
        ds.StudyTime = "091500"
        ds.AccessionNumber = accession
        ds.Modality = modality
        ds.ConversionType = "WSD"
        ds.Manufacturer = "Aperture Synthetic"
        ds.InstitutionName = "Aperture General Hospital"
        ds.ReferringPhysicianName = "Referring^Doctor"
        ds.StudyDescription = description
        ds.SeriesDescription = description
        _patient(ds, patient_name, patient_id, issuer, birth_date, sex)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = accession[-8:]
        ds.SeriesNumber = 1
        ds.InstanceNumber = number
        ds.PatientOrientation = ""
        _grayscale_pixels(ds, rows, cols, allocated=16, stored=12, signed=False)
        ds.WindowCenter = "2048"
        ds.WindowWidth = "4096"
        radius = min(rows, cols) * (0.15 + 0.25 * number / images)
        disc = (yy - rows / 2) ** 2 + (xx - cols / 2) ** 2 <= radius**2
        ramp = (yy * 7 + xx * 3 + number * 40) % 2048 + 512
        ds.PixelData = np.where(disc, 3600, ramp).astype("<u2").tobytes()
        yield _to_bytes(ds)
