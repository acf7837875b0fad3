"""The DICOMDIR of interchange media (PS3.10 §8, PS3.3 Annex F), built with pydicom's FileSet.

Records are made from each instance's header as the files are added, so a caller that streams the
files (the HTTP zip) holds only the directory records, never the instances. pydicom's record
creators raise on an empty or missing Type 1 key (a Study ID, a Patient ID, an Instance Number:
real devices leave them empty); such a key is invented *in the directory record only*, never in the
file, and every invention is reported (`Directory.invented`) so README.TXT can say so.

The File IDs are Aperture's own (`aperture.media.names`: `DICOM/<study>/<series>/<instance>`), not
the `PT000000/ST000000/...` layout `FileSet.write()` moves files into: the instances stay where the
download put them, byte for byte. So the FileSet is used below its `add`/`write`: its record
creators make the records (`_recordify`, which applies `DIRECTORY_RECORDERS`), the records go into
its record tree as `RecordNode`s with the Referenced File IDs set here, and its encoder
(`_write_dicomdir`) lays out the offsets. `FileSet.add` would also stage a copy of each instance in
a temp folder and scan every instance already added (O(n²): 83 s for 1500 instances here).
`tests/media` reads every DICOMDIR back with `FileSet` and checks it with dciodvfy and dcmtk.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.fileset import FileSet, RecordNode
from pydicom.uid import MediaStorageDirectoryStorage

from aperture.media.names import component, file_id

FILE_SET_ID_LENGTH = 16  # (0004,1130) is CS: at most 16 characters
# What the records need from an instance: read from the header only (Pixel Data is never loaded).
RECORD_KEYWORDS = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "PatientID",
    "IssuerOfPatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "StudyDescription",
    "AccessionNumber",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "Modality",
    "InstanceNumber",
    "AcquisitionDate",
    "AcquisitionTime",
    "ContentDate",
    "ContentTime",
    "NumberOfFrames",
    "Rows",
    "Columns",
    # leaf records other than IMAGE (PS3.3 F.5): what their keys are taken from
    "DoseSummationType",
    "StructureSetLabel",
    "StructureSetDate",
    "StructureSetTime",
    "RTPlanLabel",
    "RTPlanDate",
    "RTPlanTime",
    "TreatmentDate",
    "TreatmentTime",
    "PresentationCreationDate",
    "PresentationCreationTime",
    "ContentLabel",
    "ContentDescription",
    "ContentCreatorName",
    "ReferencedSeriesSequence",
    "BlendingSequence",
    "CompletionFlag",
    "VerificationFlag",
    "ConceptNameCodeSequence",
    "MIMETypeOfEncapsulatedDocument",
    "DocumentTitle",
    "HL7InstanceIdentifier",
    "EncapsulatedDocument",  # only its presence is used (it makes an ENCAP DOC record); never loaded
)
_ROOT_FIELDS = {"SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"}


@dataclass(frozen=True)
class Refusal:
    """A file that cannot be put on the media, and why: reported to the person, never dropped silently."""

    path: str
    reason: str


@dataclass(frozen=True)
class Invention:
    """A Type 1 directory key the file leaves empty, and the value the record got instead."""

    path: str
    keyword: str
    value: str


@dataclass
class Directory:
    """A DICOMDIR being built: `add` one instance header at a time, then `encode`."""

    file_set_id: str = "APERTURE"
    invented: list[Invention] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    syntaxes: set[str] = field(default_factory=set)
    count: int = 0
    _fs: FileSet = field(init=False, repr=False)
    _seen: set[str] = field(default_factory=set, init=False, repr=False)
    _patients: dict[tuple[str, str], str] = field(default_factory=dict, init=False, repr=False)
    _numbers: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _nodes: dict[tuple[str, ...], RecordNode] = field(default_factory=dict, init=False, repr=False)
    _counts: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._fs = FileSet()
        self._fs._stage["t"].cleanup()  # its staging folder: nothing is ever staged here (see the module doc)
        self._fs.ID = checked_file_set_id(self.file_set_id)

    def add(self, path: PurePosixPath, header: Dataset) -> bool:
        """Add the instance at media path `path` (its header read by `read_header`); False when refused."""
        name = str(path)
        try:
            parts = file_id(path)
        except ValueError as exc:
            self.refused.append(Refusal(name, str(exc)))
            return False
        problem = _unusable(header)
        if problem is not None:
            self.refused.append(Refusal(name, problem))
            return False
        sop_uid = str(header.SOPInstanceUID)
        if sop_uid in self._seen:
            self.refused.append(Refusal(name, f"another file on the media already holds instance {sop_uid}"))
            return False
        keys = self._record_keys(name, header)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                records = list(self._fs._recordify(keys))  # pydicom's record creators, PS3.3 F.5
        except (ValueError, KeyError, AttributeError) as exc:
            self.refused.append(Refusal(name, f"no directory record can be made for it: {exc}"))
            return False
        records[-1].ReferencedFileID = parts
        parent: RecordNode = self._fs._tree
        path_key: tuple[str, ...] = ()
        for record in records[:-1]:  # PATIENT, STUDY, SERIES: one node each, shared by their instances
            path_key += (str(RecordNode(record).key),)
            node = self._nodes.get(path_key)
            if node is None:
                node = self._nodes[path_key] = RecordNode(record)
                node.parent = parent
            parent = node
        RecordNode(records[-1]).parent = parent
        self._seen.add(sop_uid)
        self.syntaxes.add(str(header.file_meta.TransferSyntaxUID))
        self.count += 1
        return True

    def encode(self) -> bytes:
        """The DICOMDIR file: Explicit VR Little Endian, Media Storage Directory Storage (1.2.840.10008.1.3.10)."""
        buffer = io.BytesIO()
        self._fs._write_dicomdir(DicomFileLike(buffer))
        return buffer.getvalue()

    def _record_keys(self, name: str, header: Dataset) -> Dataset:
        """The attributes pydicom's record creators read, with empty Type 1 keys invented (and noted)."""
        keys = Dataset()
        for keyword in RECORD_KEYWORDS:
            if keyword == "EncapsulatedDocument":
                if keyword in header:
                    keys.EncapsulatedDocument = b""
            elif keyword in header:
                keys[keyword] = header[keyword]
        keys.file_meta = FileMetaDataset()
        keys.file_meta.TransferSyntaxUID = header.file_meta.TransferSyntaxUID
        keys.file_meta.MediaStorageSOPClassUID = header.SOPClassUID
        keys.file_meta.MediaStorageSOPInstanceUID = header.SOPInstanceUID

        for tag in list(keys.keys()):
            element = keys[tag]
            if element.VR in _CHECKED_VRS and element.VM != 0:
                fixed = legal_value(element.VR, element.value)
                if fixed != element.value:
                    element.value = fixed
                    self.invented.append(Invention(name, element.keyword, str(fixed)))

        def invent(keyword: str, value: Any) -> None:
            if keyword in keys and keys[keyword].VM != 0 and str(keys[keyword].value).strip():
                return
            setattr(keys, keyword, value)
            self.invented.append(Invention(name, keyword, str(value)))

        study = str(header.StudyInstanceUID)
        issuer = str(header.get("IssuerOfPatientID", "") or "")
        patient = str(header.get("PatientID", "") or "").strip()
        if not patient:
            invent("PatientID", f"UNKNOWN_{component(study)}")  # one unnamed patient per study: never merged
        else:
            # PS3.3 F.5.1: a Patient ID is unique within a file-set; the same ID of another issuer is another person
            recorded = self._patients.setdefault((patient, issuer), patient if not self._taken(patient) else "")
            if not recorded:
                recorded = self._patients[(patient, issuer)] = f"{patient[:55]}_{component(issuer or '-')}"
            if recorded != patient:
                keys.PatientID = recorded
                self.invented.append(Invention(name, "PatientID", recorded))
        day = _first_date(header)
        invent("StudyDate", day)
        invent("StudyTime", str(header.get("AcquisitionTime", "") or header.get("ContentTime", "") or "000000"))
        invent("StudyID", component(study))
        invent("Modality", "OT")
        series = str(header.SeriesInstanceUID)
        invent("SeriesNumber", self._next(f"series:{study}", series))
        invent("InstanceNumber", self._next(f"instance:{series}", str(header.SOPInstanceUID)))
        if str(keys.get("VerificationFlag", "")) == "VERIFIED" and "VerificationDateTime" not in header:
            keys.VerificationDateTime = f"{keys.get('ContentDate') or day}{keys.get('ContentTime') or '000000'}"
            self.invented.append(Invention(name, "VerificationDateTime", str(keys.VerificationDateTime)))
        for keyword, value in (
            ("DoseSummationType", "PLAN"),
            ("StructureSetLabel", "UNNAMED"),
            ("RTPlanLabel", "UNNAMED"),
            ("PresentationCreationDate", day),
            ("PresentationCreationTime", "000000"),
            ("ContentDate", day),
            ("ContentTime", "000000"),
            ("ContentLabel", "UNNAMED"),
            ("CompletionFlag", "PARTIAL"),
            ("VerificationFlag", "UNVERIFIED"),
        ):
            if _needs(keys, keyword):
                invent(keyword, value)
        return keys

    def _taken(self, patient: str) -> bool:
        return patient in self._patients.values()

    def _next(self, scope: str, uid: str) -> str:
        """A number for `uid` within `scope` (a study's series, a series' instances) above any given one."""
        key = f"{scope}/{uid}"
        if key not in self._numbers:
            self._counts[scope] = self._counts.get(scope, 0) + 1
            self._numbers[key] = self._counts[scope]
        return str(self._numbers[key])


def _needs(keys: Dataset, keyword: str) -> bool:
    """Whether the leaf record type of these keys has `keyword` as a Type 1 key (PS3.3 F.5)."""
    sop = str(keys.get("SOPClassUID", ""))
    rt_dose, rt_struct, rt_plan = (f"1.2.840.10008.5.1.4.1.1.481.{n}" for n in (2, 3, 5))
    presentation = sop.startswith("1.2.840.10008.5.1.4.1.1.11.")
    sr = sop.startswith("1.2.840.10008.5.1.4.1.1.88.") and sop != "1.2.840.10008.5.1.4.1.1.88.59"
    return {
        "DoseSummationType": sop == rt_dose,
        "StructureSetLabel": sop == rt_struct,
        "RTPlanLabel": sop == rt_plan,
        "PresentationCreationDate": presentation,
        "PresentationCreationTime": presentation,
        "ContentLabel": presentation,
        "ContentDate": sr or sop == "1.2.840.10008.5.1.4.1.1.88.59",
        "ContentTime": sr or sop == "1.2.840.10008.5.1.4.1.1.88.59",
        "CompletionFlag": sr,
        "VerificationFlag": sr,
    }.get(keyword, False)


def _first_date(header: Dataset) -> str:
    """The study's date, else the instance's other dates, else today (the day the media was made)."""
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        value = str(header.get(keyword, "") or "").strip()
        if len(value) == 8 and value.isdigit():
            return value
    return datetime.now(UTC).strftime("%Y%m%d")


_CHECKED_VRS = {"DA", "TM", "SH", "LO", "CS", "IS", "PN"}
_LENGTHS = {"SH": 16, "LO": 64, "CS": 16, "IS": 12}
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_CS = re.compile(r"^[A-Z0-9_ ]*$")


def legal_value(vr: str, value: Any) -> Any:
    """`value` as its VR allows (PS3.5 Table 6.2-1), or "" when it cannot be made so.

    Old ACR-NEMA spellings are normalized (`1997.04.24` is `19970424`, `14:04:38` is `140438`);
    anything else the VR does not allow is emptied, so the record carries no value a validator
    rejects (a Type 1 key emptied this way is then invented).
    """
    if isinstance(value, list | tuple) or hasattr(value, "__iter__") and not isinstance(value, str | bytes):
        values = [legal_value(vr, v) for v in value]
        return values if values != list(value) else value
    text = str(value)
    if vr == "DA":
        text = text.strip().replace(".", "")
        return text if _DATE.match(text) else ""
    if vr == "TM":
        text = text.strip().replace(":", "")
        return text if _TIME.match(text) else ""
    if vr == "IS":
        try:
            number = int(str(value).strip())
        except ValueError:
            return ""
        return value if -(2**31) <= number < 2**31 else ""
    if vr == "CS" and not _CS.match(text):
        return ""
    if vr in _LENGTHS and len(text) > _LENGTHS[vr]:
        return ""
    if vr == "PN" and any(len(group) > 64 for group in text.split("=")):
        return ""
    return value


def legal_uid(uid: str) -> bool:
    """A UID media readers accept: PS3.5 §9.1 (digits and dots, no leading zeros, at most 64) and an ISO root."""
    if not (0 < len(uid) <= 64) or not _UID.match(uid):
        return False
    first, _, rest = uid.partition(".")
    second = rest.split(".")[0] if rest else ""
    return first == "2" or (first in ("0", "1") and second != "" and int(second) < 40)


def _unusable(header: Dataset) -> str | None:
    """Why an instance header cannot be referenced from a DICOMDIR, or None."""
    meta = getattr(header, "file_meta", None)
    if meta is None or not meta.get("TransferSyntaxUID"):
        return "it has no DICOM file meta information (not a PS3.10 file)"
    if str(header.get("SOPClassUID", "")) == MediaStorageDirectoryStorage:
        return "it is a DICOMDIR itself, not an instance"
    missing = [k for k in sorted(_ROOT_FIELDS) if not str(header.get(k, "") or "").strip()]
    if missing:
        return f"it has no {', '.join(missing)}"
    bad = [k for k in sorted(_ROOT_FIELDS) if not legal_uid(str(header.get(k)))]
    if bad:
        return (
            f"its {', '.join(f'{k} {str(header.get(k))[:64]!r}' for k in bad)} "
            "is not a valid DICOM UID (PS3.5 §9.1), which a DICOMDIR record must repeat"
        )
    return None


def read_header(source: str | BinaryIO) -> Dataset:
    """The attributes a directory record needs, without Pixel Data: pydicom reads only up to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(source, stop_before_pixels=True, defer_size=4096, specific_tags=list(RECORD_KEYWORDS))


def checked_file_set_id(value: str) -> str:
    """A File-set ID (0004,1130): CS, up to 16 of A-Z 0-9 _ and space (PS3.5 Table 6.2-1)."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_ ") else "_" for c in value.upper())
    return cleaned[:FILE_SET_ID_LENGTH] or "APERTURE"


def directory_of(entries: Iterable[tuple[PurePosixPath, Dataset]], file_set_id: str = "APERTURE") -> Directory:
    """A Directory with all these (media path, header) pairs added."""
    directory = Directory(file_set_id)
    for path, header in entries:
        directory.add(path, header)
    return directory
