"""PDI media as a zip built while it streams: unpacked, the zip is the folder `write_pdi` makes.

Each instance is read from its file in 1 MB pieces and written as a stored entry (DICOM is not
deflated: compressed pixel data does not shrink, and stored entries keep the bytes a reader can
check), its CRC-32 and sizes in a data descriptor after it, ZIP64 when an entry or the archive
passes 4 GB. Only the directory records and one preview source per series are kept, so memory does
not grow with the bytes sent, and nothing is written to disk. A consumer that stops reading stops
the work: the generator is simply not resumed, and its files are closed when it is.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from aperture.media.dicomdir import read_header
from aperture.media.names import excluded_path, instance_path
from aperture.media.pdi import Assembly
from aperture.media.zipsink import ZipSink

CHUNK = 1 << 20
_ZIP64_AT = 0xFFFF0000  # an entry this large needs ZIP64 sizes, decided before its bytes are written


@dataclass(frozen=True)
class MediaSource:
    """One stored instance: its UIDs (for its File ID) and the file its bytes are read from."""

    study_uid: str
    series_uid: str
    sop_uid: str
    path: str | os.PathLike[str]
    size: int


def _info(name: str, when: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def pdi_zip(
    sources: Iterable[MediaSource], *, web: bool = True, institution: str | None = None, file_set_id: str = "APERTURE"
) -> Iterator[bytes]:
    """The zip's bytes, in pieces: the instances as they are read, then previews, INDEX.HTM, README.TXT, DICOMDIR."""
    assembly = Assembly(file_set_id, web=web, institution=institution)
    when = datetime.now(UTC).timetuple()[:6]
    sink = ZipSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for source in sources:
            media_path = instance_path(source.study_uid, source.series_uid, source.sop_uid)
            try:
                header = read_header(os.fspath(source.path))
                placed = assembly.add(media_path, header, source.path)
            except Exception as exc:  # pydicom's errors for a file that is not DICOM vary by what is wrong
                assembly.refuse(str(media_path), f"it cannot be read as DICOM: {exc}")
                placed = False
            name = media_path if placed else excluded_path(media_path)
            with (
                archive.open(_info(name.as_posix(), when), "w", force_zip64=source.size > _ZIP64_AT) as member,
                open(source.path, "rb", buffering=0) as handle,
            ):
                while chunk := handle.read(CHUNK):
                    member.write(chunk)
                    yield sink.take()
            yield sink.take()
        for path, data in assembly.closing_files():
            archive.writestr(_info(PurePosixPath(path).as_posix(), when), data)
            yield sink.take()
    yield sink.take()
