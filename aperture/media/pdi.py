"""IHE PDI media (RAD TF-1 ch. 15, RAD-47) from DICOM files: a folder, or a zip that unpacks to one.

`Assembly` takes the instances one at a time (their media path, their header, where the bytes are
read from) and keeps only what the DICOMDIR and the web page need, never the instances. At the end
it gives the files that complete the media: `DICOMDIR`, `README.TXT` and, with web content,
`INDEX.HTM` and one JPEG preview per series under `IHE_PDI/`. `write_pdi(folder)` runs it over the
files a download put under `folder/DICOM/`; `aperture.media.archive` runs it while streaming a zip.

What cannot go on media (a file that is not PS3.10, an instance whose UIDs a DICOMDIR cannot
repeat, two files of one instance) is listed in the summary and in README.TXT, and its file is
moved to `EXCLUDED/` (same path below it), outside the DICOM folder and the DICOMDIR; nothing is
dropped, and nothing is left out without saying so. Stored bytes are never changed: the
strictest general-purpose media profile the stored transfer syntaxes meet is reported instead
(PS3.11: STD-GEN-CD takes Explicit VR Little Endian only).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from pydicom.dataset import Dataset

from aperture.dicom.render import RenderError
from aperture.media.dicomdir import Directory, Invention, Refusal, read_header
from aperture.media.names import DICOM_FOLDER, excluded_path
from aperture.media.web import (
    PatientEntry,
    ReadmeFacts,
    SeriesEntry,
    StudyEntry,
    index_page,
    preview_path,
    readme,
    render_preview,
)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Where a file that cannot be on the media goes: kept for the person (never deleted), outside DICOM/,
# which holds only what the DICOMDIR lists (IHE PDI: other content in other folders, 8.3 names).
# PS3.11 general-purpose profiles, strictest first, with the transfer syntaxes each allows (dcmmkdir's
# -Pgp, -Pfl and -Pf2 check the same lists; tests/media runs them).
PROFILES = (
    ("STD-GEN-CD", "-Pgp", frozenset({EXPLICIT_LE})),
    ("STD-GEN-USB-JPEG", "-Pfl", frozenset({EXPLICIT_LE, *(f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70))})),
    ("STD-GEN-USB-J2K", "-Pf2", frozenset({EXPLICIT_LE, "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})),
)


@dataclass(frozen=True)
class PdiSummary:
    """What was put on the media, and what was not (the CLI prints it; README.TXT says the same)."""

    instances: int
    studies: int
    patients: int
    refused: list[Refusal]
    invented: list[Invention]
    previews: int
    no_previews: list[Refusal]
    profile: str
    syntaxes: list[str]

    @property
    def complete(self) -> bool:
        """Every file offered is on the media."""
        return not self.refused


@dataclass
class Assembly:
    """The DICOMDIR and the web page of a set of instances, built one instance at a time."""

    file_set_id: str = "APERTURE"
    web: bool = True
    institution: str | None = None
    directory: Directory = field(init=False)
    patients: dict[str, PatientEntry] = field(default_factory=dict, init=False)
    no_previews: list[Refusal] = field(default_factory=list, init=False)
    _previews: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.directory = Directory(self.file_set_id)

    def add(self, path: PurePosixPath, header: Dataset, source: str | os.PathLike[str]) -> bool:
        """Add the instance that goes on the media at `path` (`source`: where a preview is drawn from)."""
        if not self.directory.add(path, header):
            return False
        if self.web:
            self._catalog(header, os.fspath(source))
        return True

    def refuse(self, path: str, reason: str) -> None:
        """A file that did not even get as far as `add` (unreadable): reported like the others."""
        self.directory.refused.append(Refusal(path, reason))

    def _catalog(self, header: Dataset, source: str) -> None:
        patient_id = str(header.get("PatientID", "") or "")
        patient = self.patients.setdefault(
            f"{patient_id}\0{header.get('IssuerOfPatientID', '') or ''}",
            PatientEntry(str(header.get("PatientName", "") or ""), patient_id),
        )
        study_uid = str(header.StudyInstanceUID)
        study = patient.studies.setdefault(
            study_uid,
            StudyEntry(
                study_uid,
                str(header.get("StudyDate", "") or ""),
                str(header.get("StudyDescription", "") or ""),
                str(header.get("AccessionNumber", "") or ""),
            ),
        )
        series_uid = str(header.SeriesInstanceUID)
        series = study.series.setdefault(
            series_uid,
            SeriesEntry(
                study_uid,
                series_uid,
                str(header.get("Modality", "") or ""),
                str(header.get("SeriesNumber", "") or ""),
                str(header.get("SeriesDescription", "") or ""),
            ),
        )
        series.count += 1
        if "Rows" in header:
            try:
                number = int(str(header.get("InstanceNumber", "") or 0))
            except ValueError:
                number = 0
            series.images.append((number, source))

    def previews(self) -> Iterator[tuple[PurePosixPath, bytes]]:
        """One JPEG per series, from its middle image; a series that cannot be drawn is noted, not fatal."""
        if not self.web:
            return
        for patient in self.patients.values():
            for study in patient.studies.values():
                for series in study.series.values():
                    if not series.images:
                        series.no_preview = "it holds no images"
                        continue
                    ordered = sorted(series.images, key=lambda item: item[0])
                    source = ordered[len(ordered) // 2][1]
                    try:
                        jpeg = render_preview(source)
                    except RenderError as exc:
                        series.no_preview = str(exc)
                        self.no_previews.append(Refusal(series.series_uid, str(exc)))
                        continue
                    series.preview = preview_path(study.study_uid, series.series_uid)
                    series.images = []  # the page needs no more of them
                    self._previews += 1
                    yield series.preview, jpeg

    def closing_files(self) -> Iterator[tuple[PurePosixPath, bytes]]:
        """The previews (when web content is on), then INDEX.HTM, README.TXT and DICOMDIR."""
        yield from self.previews()
        if self.web:
            yield PurePosixPath("INDEX.HTM"), index_page(list(self.patients.values()))
        summary = self.summary()
        facts = ReadmeFacts(
            created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            institution=self.institution,
            instances=summary.instances,
            studies=summary.studies,
            patients=summary.patients,
            profile=summary.profile,
            syntaxes=summary.syntaxes,
            web=self.web,
            refused=[(r.path, r.reason) for r in summary.refused],
            invented=[(i.path, i.keyword, i.value) for i in summary.invented],
        )
        yield PurePosixPath("README.TXT"), readme(facts)
        yield PurePosixPath("DICOMDIR"), self.directory.encode()

    def summary(self) -> PdiSummary:
        syntaxes = sorted(self.directory.syntaxes)
        return PdiSummary(
            instances=self.directory.count,
            studies=len({s for p in self.patients.values() for s in p.studies}) if self.web else 0,
            patients=len(self.patients),
            refused=list(self.directory.refused),
            invented=list(self.directory.invented),
            previews=self._previews,
            no_previews=list(self.no_previews),
            profile=media_profile(set(syntaxes)),
            syntaxes=syntaxes,
        )


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    for parent in source.parents:  # folders the move emptied
        if parent.name == DICOM_FOLDER or any(parent.iterdir()):
            break
        parent.rmdir()


def media_profile(syntaxes: set[str]) -> str:
    """The strictest PS3.11 general-purpose profile whose transfer syntaxes cover all of `syntaxes`."""
    for name, _, allowed in PROFILES:
        if syntaxes <= allowed:
            return name
    return "none of the general-purpose media profiles (the files keep the server's transfer syntaxes)"


def write_pdi(
    folder: Path, *, web: bool = True, file_set_id: str = "APERTURE", institution: str | None = None
) -> PdiSummary:
    """Make `folder` PDI media from the DICOM files already under `folder/DICOM/`.

    Writes DICOMDIR, README.TXT and (with `web`) INDEX.HTM and IHE_PDI/ previews; never changes a
    DICOM file. A file under DICOM/ that cannot be put on media stays where it is, outside the
    DICOMDIR, and is listed in the summary's `refused` and in README.TXT.
    """
    assembly = Assembly(file_set_id, web=web, institution=institution)
    root = folder / DICOM_FOLDER
    for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
        media_path = PurePosixPath(path.relative_to(folder).as_posix())
        try:
            header = read_header(str(path))
        except Exception as exc:  # pydicom's errors for a file that is not DICOM vary by what is wrong
            assembly.refuse(str(media_path), f"it cannot be read as DICOM: {exc}")
            _move(path, folder / excluded_path(media_path))
            continue
        if not assembly.add(media_path, header, path):
            _move(path, folder / excluded_path(media_path))
    for name, data in assembly.closing_files():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".PART")
        partial.write_bytes(data)
        os.replace(partial, target)  # a reader never sees half a DICOMDIR
    return assembly.summary()
