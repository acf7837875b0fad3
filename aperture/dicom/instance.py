"""Read one uploaded Part-10 file into everything the index keeps about it.

`read_instance` is called once per stored instance (STOW-RS, later C-STORE). It refuses what cannot
be stored faithfully (not Part-10, truncated, identifiers missing or unsafe) with a PS3.18
FailureReason and a message naming the problem, and otherwise returns the DICOM JSON with
BulkDataURIs, where each bulk value sits in the file, and the level attributes QIDO answers from.
Pixel Data is never loaded: the header is parsed up to it, its extent is found by walking item
headers, and anything after it (trailing padding, signatures) is parsed on its own.

The common case (plain little endian files in the usual character sets) is read straight from the
bytes by `aperture.dicom.header`, about three times cheaper; it declines anything it is not certain
of, and `read_with_pydicom` then reads the file as before, so the record never depends on the path.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.uid import UID_dictionary

from aperture.dicom.attributes import Level, level_of
from aperture.dicom.dicomjson import BASE_PLACEHOLDER, BULK_THRESHOLD, PIXEL_TAGS, BulkRef, instance_json
from aperture.dicom.frames import FrameIndex, index_at, locate_frames
from aperture.dicom.header import is_trailing_padding, read_header
from aperture.dicom.identifiers import PatientKey, uid_problem

# FailureReason values used by Aperture (PS3.18 Annex I, Table I.2-2, codes from PS3.4; see docs/dicomweb.md).
DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.4 "Duplicate SOP Instance": not in Table I.2-2, which allows other codes
SOP_CLASS_NOT_SUPPORTED = 0x0122  # "Referenced SOP Class not supported"
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900  # A9xx "Data Set does not match SOP Class"
CANNOT_UNDERSTAND = 0xC000  # Cxxx "Cannot understand"
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122  # "Referenced Transfer Syntax not supported"

DEFLATED = "1.2.840.10008.1.2.1.99"
_IMPLICIT = "1.2.840.10008.1.2"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}


class InvalidInstance(ValueError):
    """This upload cannot be stored; `reason` is the FailureReason to report."""

    def __init__(self, reason: int, message: str, sop_class_uid: str = "", sop_instance_uid: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid

    def __reduce__(self) -> tuple[type, tuple[int, str, str, str]]:  # crosses process boundaries intact
        return (InvalidInstance, (self.reason, str(self), self.sop_class_uid, self.sop_instance_uid))


@dataclass
class InstanceRecord:
    """What the index stores for one instance, all computed at ingest."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    patient: PatientKey
    metadata: dict[str, Any]
    bulk: list[BulkRef]
    study_attrs: dict[str, Any]
    series_attrs: dict[str, Any]
    instance_attrs: dict[str, Any]
    num_frames: int
    size: int
    frame_index: FrameIndex | None = None
    digest: str = ""  # content fingerprint of the file (XXH3-128), filled in by the store
    document_media_type: str = ""  # MIME Type of Encapsulated Document (0042,0012), for its bulk data


def read_instance(path: Path) -> InstanceRecord:
    """Parse the file at `path`; raises InvalidInstance with the FailureReason when it cannot be stored."""
    size = os.path.getsize(path)
    record = read_common_case(path, size)
    if record is None:
        return read_with_pydicom(path, size)
    check_supported(record.sop_class_uid, record.transfer_syntax, record.sop_uid)
    return record


def check_supported(sop_class: str, transfer_syntax: str, sop_uid: str) -> None:
    """Refuse a SOP class that is not a storage class, or a transfer syntax nothing here can read.

    PS3.18 Table I.2-2: 0122 "did not store the instance because it does not support the requested
    SOP Class", C122 "... does not support the requested Transfer Syntax". Only classes the DICOM
    dictionary knows as something other than storage are refused (a DICOMDIR, Verification, a
    query model): private and newer classes are stored. A transfer syntax must be a standard one
    pydicom knows, or a private one registered with it; any other leaves the data set's encoding a
    guess.
    """
    known = UID_dictionary.get(sop_class)
    if known is not None and known[1] == "SOP Class" and not _is_storage(known[0]):
        raise InvalidInstance(
            SOP_CLASS_NOT_SUPPORTED,
            f"SOP Class {sop_class} ({known[0]}) is not a storage SOP class: it cannot be stored.",
            sop_class,
            sop_uid,
        )
    syntax = UID_dictionary.get(transfer_syntax)
    registered = pydicom.uid.PrivateTransferSyntaxes
    if (syntax is None or syntax[1] != "Transfer Syntax") and transfer_syntax not in registered:
        raise InvalidInstance(
            TRANSFER_SYNTAX_NOT_SUPPORTED,
            f"Transfer Syntax {transfer_syntax[:64]} is not one this server can read.",
            sop_class,
            sop_uid,
        )


def _is_storage(name: str) -> bool:
    return "Storage" in name and not name.startswith(("Storage Commitment", "Media Storage Directory"))


def read_with_pydicom(path: Path, size: int) -> InstanceRecord:
    """`read_instance` through pydicom: every file, including those it refuses."""
    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, defer_size=BULK_THRESHOLD, stop_before_pixels=True)
            pixel_start = fp.tell()
            _check_file_meta_complete(ds, size)
            transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
            if not transfer_syntax:
                raise InvalidInstance(CANNOT_UNDERSTAND, "The file meta information has no TransferSyntaxUID.")
            extra: list[tuple[int, str, int, int]] = []
            frame_index = None
            if transfer_syntax == DEFLATED:
                ds = pydicom.dcmread(path)  # offsets inside a deflated stream mean nothing: parse it all
                offsets_known = False
            else:
                offsets_known = True
                if pixel_start < size:
                    extra = _pixel_and_trailing(fp, ds, pixel_start, size, transfer_syntax)
                else:
                    _check_data_set_complete(ds, size)
    except InvalidInstance:
        raise
    except InvalidDicomError as exc:
        raise InvalidInstance(CANNOT_UNDERSTAND, "Not a Part-10 file: no 'DICM' after the preamble.") from exc
    except (EOFError, struct.error, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise InvalidInstance(CANNOT_UNDERSTAND, f"The data set cannot be parsed: {exc}") from exc

    sop_class = _text(ds, 0x00080016)
    sop_uid = _text(ds, 0x00080018)
    study_uid = _text(ds, 0x0020000D)
    series_uid = _text(ds, 0x0020000E)
    check_supported(sop_class, transfer_syntax, sop_uid)  # before the UIDs: a DICOMDIR has no study
    for name, value in (
        ("SOPInstanceUID", sop_uid),
        ("SOPClassUID", sop_class),
        ("StudyInstanceUID", study_uid),
        ("SeriesInstanceUID", series_uid),
    ):
        problem = uid_problem(value)
        if problem:
            raise InvalidInstance(
                DATASET_DOES_NOT_MATCH_SOP_CLASS, f"Unusable {name}: {problem}. It reads {value!r}.", sop_class, sop_uid
            )

    prefix = _bulk_prefix(study_uid, series_uid, sop_uid)
    bulk: list[BulkRef] = []
    try:
        metadata = instance_json(ds, prefix, bulk=bulk, offsets_are_file_positions=offsets_known)
    except Exception as exc:
        raise InvalidInstance(
            CANNOT_UNDERSTAND, f"The data set cannot be converted to DICOM JSON: {exc}", sop_class, sop_uid
        ) from exc
    if extra and offsets_known:  # after the JSON: locating frames converts raw values it reads
        with open(path, "rb") as fp:
            fp.seek(pixel_start)
            frame_index = index_at(fp, ds, transfer_syntax, size)
    return _record(
        metadata,
        bulk,
        extra,
        prefix,
        (study_uid, series_uid, sop_uid, sop_class, transfer_syntax),
        ds.get("NumberOfFrames"),
        frame_index,
        size,
    )


def read_common_case(path: Path, size: int) -> InstanceRecord | None:
    """The record read straight from the bytes (aperture.dicom.header), or None to parse with pydicom.

    None whenever anything is not certain to come out exactly as `read_with_pydicom` makes it, which
    includes every file that path refuses: refusals are always that path's.
    """
    try:
        with open(path, "rb") as fp:
            header = read_header(fp, size)
            if header is None:
                return None
            uids = (header.text(0x0020000D), header.text(0x0020000E), header.text(0x00080018), header.text(0x00080016))
            if any(uid_problem(uid) for uid in uids):
                return None
            prefix = _bulk_prefix(*uids[:3])
            bulk: list[BulkRef] = []
            metadata = header.to_json(prefix, bulk)
            if metadata is None:
                return None
            extra: list[tuple[int, str, int, int]] = []
            frame_index = None
            if header.pixel_start < size:
                tag, vr, offset, length, end = _pixel_element(fp, header.pixel_start, size, header.transfer_syntax)
                if end != size and not is_trailing_padding(fp, end, size, header.implicit):
                    return None  # elements after the pixel data: the pydicom path parses them
                extra = [(tag, vr, offset, length)]
                fp.seek(header.pixel_start)
                frame_index = locate_frames(fp, header, header.transfer_syntax, size)
    except Exception:  # whatever goes wrong here, the pydicom path meets (or not) on its own terms
        return None
    frames = header.frames_value()
    return _record(metadata, bulk, extra, prefix, (*uids, header.transfer_syntax), frames, frame_index, size)


def _bulk_prefix(study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"{BASE_PLACEHOLDER}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulkdata"


def _record(
    metadata: dict[str, Any],
    bulk: list[BulkRef],
    extra: list[tuple[int, str, int, int]],
    prefix: str,
    uids: tuple[str, str, str, str, str],
    frames: Any,
    frame_index: FrameIndex | None,
    size: int,
) -> InstanceRecord:
    """The record from the instance's DICOM JSON; `frames` is the Number of Frames value as read."""
    study_uid, series_uid, sop_uid, sop_class, transfer_syntax = uids
    for tag, vr, offset, length in extra:
        key = f"{tag:08X}"
        bulk.append(BulkRef(key, vr, offset, length))
        metadata[key] = {"vr": vr, "BulkDataURI": f"{prefix}/{key}"}
    metadata["00083002"] = {"vr": "UI", "Value": [transfer_syntax]}  # AvailableTransferSyntaxUID
    document_type = (metadata.get("00420012") or {}).get("Value") or []
    document_media_type = str(document_type[0]).strip().lower() if document_type and document_type[0] else ""
    metadata = dict(sorted(metadata.items()))

    study_attrs: dict[str, Any] = {}
    series_attrs: dict[str, Any] = {}
    for key, element in metadata.items():
        if "BulkDataURI" in element or "InlineBinary" in element:
            continue
        level = level_of(int(key, 16))
        if level is Level.STUDY:
            study_attrs[key] = element
        elif level is Level.SERIES:
            series_attrs[key] = element
    if "00080005" in metadata:
        series_attrs["00080005"] = metadata["00080005"]
    instance_attrs: dict[str, Any] = {
        key: metadata[key]
        for key in (
            "00080005",
            "00080008",
            "00080016",
            "00080018",
            "00080023",
            "00080033",
            "00200013",
            "00280008",
            "00280010",
            "00280011",
            "00280100",
            "00200012",
        )  # fmt: skip
        if key in metadata
    }
    try:
        num_frames = int(frames) if frames not in (None, "") else (1 if _has_pixels(metadata) else 0)
    except (TypeError, ValueError):
        num_frames = 1
    return InstanceRecord(
        document_media_type=document_media_type,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        sop_class_uid=sop_class,
        transfer_syntax=transfer_syntax,
        patient=PatientKey.from_json(metadata),
        metadata=metadata,
        bulk=bulk,
        study_attrs=study_attrs,
        series_attrs=series_attrs,
        instance_attrs=instance_attrs,
        num_frames=num_frames,
        size=size,
        frame_index=frame_index,
    )


def _has_pixels(metadata: dict[str, Any]) -> bool:
    return any(f"{t:08X}" in metadata for t in PIXEL_TAGS)


def _text(ds: Dataset, tag: int) -> str:
    """A UID straight from the raw element: no value conversion on the ingest hot path."""
    raw = ds.get_item(tag)
    if raw is None:
        return ""
    value = raw.value
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip(" \x00")
    return str(value).strip(" \x00") if value is not None else ""


_PREAMBLE_AND_GROUP_LENGTH = 128 + 4 + 12  # preamble, "DICM", (0002,0000) UL in explicit VR


def _check_file_meta_complete(ds: Dataset, size: int) -> None:
    """pydicom reads a file cut short as far as it goes; a file cut inside its file meta is refused.

    Only when no data set element follows: a group length that is merely wrong, in a file that is
    otherwise whole, is read past as pydicom and the fast reader both do (tolerant on read).
    """
    if len(ds):
        return
    group_length = ds.file_meta.get("FileMetaInformationGroupLength")
    if not isinstance(group_length, int) and size < _PREAMBLE_AND_GROUP_LENGTH:
        raise InvalidInstance(CANNOT_UNDERSTAND, "The file is truncated inside its file meta information.")
    if isinstance(group_length, int) and _PREAMBLE_AND_GROUP_LENGTH + group_length > size:
        raise InvalidInstance(
            CANNOT_UNDERSTAND,
            f"The file is truncated inside its file meta information: it declares "
            f"{group_length} bytes of it, but the file ends at byte {size}.",
        )


def _check_data_set_complete(ds: Dataset, size: int) -> None:
    """Refuse a file without Pixel Data that is cut short (pydicom stops at the end without a word).

    The last element read must end where the file does: ending later, its value was cut; ending
    earlier, what is left was too short for an element header.
    """
    tags = list(ds.keys())
    if not tags:
        raise InvalidInstance(CANNOT_UNDERSTAND, "The file is truncated: no data set follows its file meta.")
    last = ds.get_item(tags[-1])
    length, start = getattr(last, "length", None), getattr(last, "value_tell", None)
    if not isinstance(length, int) or not isinstance(start, int) or length == 0xFFFFFFFF:
        return  # undefined length: pydicom walked its items and delimiters itself
    if start + length > size:
        raise InvalidInstance(
            CANNOT_UNDERSTAND,
            f"The file is truncated: element {tags[-1]} declares {length} bytes but only {size - start} follow.",
        )
    if start + length < size:
        raise InvalidInstance(
            CANNOT_UNDERSTAND, f"The file is truncated inside the element header at byte {start + length}."
        )


def _pixel_and_trailing(
    fp: Any, ds: Dataset, start: int, size: int, transfer_syntax: str
) -> list[tuple[int, str, int, int]]:
    """Locate the pixel element (offset, length) and parse any elements that follow it into `ds`."""
    tag, vr, value_offset, value_length, end = _pixel_element(fp, start, size, transfer_syntax)
    found = [(tag, vr, value_offset, value_length)]
    if end < size:
        fp.seek(end)
        little = transfer_syntax != _BIG_ENDIAN
        trailing = read_dataset(fp, transfer_syntax == _IMPLICIT, little, defer_size=BULK_THRESHOLD)
        for trailing_tag in list(trailing.keys()):
            raw = trailing.get_item(trailing_tag)
            if int(trailing_tag) in PIXEL_TAGS:
                assert isinstance(raw, RawDataElement)  # read_dataset leaves every element raw
                found.append((int(trailing_tag), raw.VR or "OB", raw.value_tell, raw.length))
            else:
                ds[trailing_tag] = trailing[trailing_tag]
    return found


def _pixel_element(fp: Any, start: int, size: int, transfer_syntax: str) -> tuple[int, str, int, int, int]:
    """The pixel element at `start`: (tag, VR, value offset, value length, offset just past it)."""
    little = transfer_syntax != _BIG_ENDIAN
    implicit = transfer_syntax == _IMPLICIT
    endian = "<" if little else ">"
    fp.seek(start)
    header = fp.read(8)
    if len(header) < 8:
        raise InvalidInstance(CANNOT_UNDERSTAND, f"The file is truncated inside the element header at byte {start}.")
    group, element = struct.unpack(f"{endian}HH", header[:4])
    tag = group << 16 | element
    if implicit:
        (length,) = struct.unpack(f"{endian}I", header[4:8])
        vr = "OW"
        value_offset = start + 8
    else:
        vr_bytes = header[4:6]
        vr = vr_bytes.decode("ascii", "replace")
        if vr_bytes in _LONG_VRS:
            more = fp.read(4)
            if len(more) < 4:
                raise InvalidInstance(CANNOT_UNDERSTAND, "The file is truncated inside the Pixel Data header.")
            (length,) = struct.unpack(f"{endian}I", more)
            value_offset = start + 12
        else:
            (length,) = struct.unpack(f"{endian}H", header[6:8])
            value_offset = start + 8
    if tag not in PIXEL_TAGS:
        raise InvalidInstance(CANNOT_UNDERSTAND, f"Unexpected element ({group:04X},{element:04X}) at byte {start}.")
    if length == 0xFFFFFFFF:
        end = _end_of_encapsulated(fp, value_offset, size, endian)
        value_length = end - value_offset
    else:
        end = value_offset + length
        value_length = length
        if end > size:
            raise InvalidInstance(
                CANNOT_UNDERSTAND,
                f"The file is truncated: Pixel Data declares {length} bytes but only {size - value_offset} follow.",
            )
    return tag, vr, value_offset, value_length, end


def _end_of_encapsulated(fp: Any, offset: int, size: int, endian: str) -> int:
    """Walk (FFFE,E000) items to the sequence delimiter; the offset just past it."""
    position = offset
    while True:
        fp.seek(position)
        header = fp.read(8)
        if len(header) < 8:
            raise InvalidInstance(
                CANNOT_UNDERSTAND, "The file is truncated: encapsulated Pixel Data has no sequence delimiter."
            )
        group, element, length = struct.unpack(f"{endian}HHI", header)
        if (group, element) == (0xFFFE, 0xE0DD):
            return position + 8
        if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            raise InvalidInstance(
                CANNOT_UNDERSTAND,
                f"Encapsulated Pixel Data is malformed at byte {position}: expected an item, found "
                f"({group:04X},{element:04X}).",
            )
        position += 8 + length
        if position > size:
            raise InvalidInstance(CANNOT_UNDERSTAND, "The file is truncated inside an encapsulated Pixel Data item.")
