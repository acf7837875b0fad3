"""The human side of PDI media: README.TXT and the web content (INDEX.HTM, JPEG previews in IHE_PDI/).

IHE PDI (RAD TF-1 ch. 15) restricts web content to XHTML and JPEG under `IHE_PDI/`, entered at
`INDEX.HTM`, with ISO 9660 8.3 names, and says not to rely on anything running from the media. So
the page is one static XHTML file with relative links and no script: it opens from the folder in
any browser, with no server. The previews are drawn by `aperture.dicom.render` (the same pipeline as
WADO-RS `/rendered`): one per series, from its middle image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from html import escape
from pathlib import PurePosixPath

import pydicom

from aperture import __version__
from aperture.dicom.render import RenderError, thumbnail
from aperture.media.names import component

WEB_FOLDER = "IHE_PDI"
PREVIEW_SIZE = 256  # pixels on the longer side: a grid a phone shows at a glance


@dataclass
class SeriesEntry:
    """One series as the page lists it; `images` are (instance number, where the file is read from)."""

    study_uid: str
    series_uid: str
    modality: str
    number: str
    description: str
    images: list[tuple[int, str]] = field(default_factory=list)
    count: int = 0
    preview: PurePosixPath | None = None
    no_preview: str | None = None


@dataclass
class StudyEntry:
    study_uid: str
    date: str
    description: str
    accession: str
    series: dict[str, SeriesEntry] = field(default_factory=dict)


@dataclass
class PatientEntry:
    name: str
    patient_id: str
    studies: dict[str, StudyEntry] = field(default_factory=dict)


def preview_path(study_uid: str, series_uid: str) -> PurePosixPath:
    """`IHE_PDI/<study>/<series>.JPG`: 8.3 names mirroring the DICOM tree."""
    return PurePosixPath(WEB_FOLDER, component(study_uid), component(series_uid) + ".JPG")


def render_preview(source: str | os.PathLike[str]) -> bytes:
    """A JPEG of the first frame of the file at `source`, at most PREVIEW_SIZE a side (RenderError if it cannot)."""
    try:
        ds = pydicom.dcmread(source, defer_size=4096)
    except Exception as exc:  # a file pydicom cannot parse has no picture
        raise RenderError(f"it cannot be read: {exc}") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise RenderError("it has no pixel data")
    return thumbnail(ds, size=PREVIEW_SIZE, pixels_from=source)


def _person(name: str) -> str:
    return " ".join(part for part in name.replace("^", " ").split() if part) or "(no name)"


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value or "(no date)"


def index_page(patients: list[PatientEntry], *, title: str = "Medical images") -> bytes:
    """INDEX.HTM: XHTML 1.0 with every patient, study and series on the media and each series' preview."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">',
        '<html xmlns="http://www.w3.org/1999/xhtml" lang="en" xml:lang="en">',
        "<head>",
        '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />',
        '<meta name="viewport" content="width=device-width, initial-scale=1" />',
        f"<title>{escape(title)}</title>",
        '<style type="text/css">body{font-family:sans-serif;margin:1em;max-width:60em}'
        "ul.series{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1em}"
        "ul.series li{width:16em}img{max-width:100%;height:auto;background:#000}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
        "<p>These pages show previews only (JPEG, not for diagnosis). The images themselves are the DICOM files "
        "listed in DICOMDIR; open DICOMDIR with any DICOM viewer, or give this folder to your doctor or "
        "hospital to import. README.TXT says more.</p>",
    ]
    for patient in patients:
        out.append(f"<h2>{escape(_person(patient.name))} <small>(ID {escape(patient.patient_id)})</small></h2>")
        for study in patient.studies.values():
            heading = " · ".join(x for x in (_date(study.date), study.description) if x)
            out.append(f"<h3>{escape(heading)}</h3>")
            if study.accession:
                out.append(f"<p>Accession number {escape(study.accession)}</p>")
            out.append('<ul class="series">')
            for series in study.series.values():
                label = f"{series.modality} series {series.number}".strip()
                caption = escape(" · ".join(x for x in (label, series.description) if x))
                count = f"{series.count} image{'s' if series.count != 1 else ''}"
                if series.preview is not None:
                    picture = f'<img src="{series.preview.as_posix()}" alt="{caption}" />'
                else:
                    picture = f"<p>No preview: {escape(series.no_preview or 'not an image')}.</p>"
                out.append(f"<li>{picture}<p>{caption}<br />{count}</p></li>")
            out.append("</ul>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out).encode("utf-8")


@dataclass(frozen=True)
class ReadmeFacts:
    """What README.TXT tells the reader (IHE RAD TF-3 4.47: who made it, with what, how it is organised)."""

    created: str  # ISO date and time, UTC
    institution: str | None
    instances: int
    studies: int
    patients: int
    profile: str
    syntaxes: list[str]
    web: bool
    refused: list[tuple[str, str]]
    invented: list[tuple[str, str, str]]


def readme(facts: ReadmeFacts) -> bytes:
    """README.TXT, plain text (UTF-8, CRLF so every reader shows the lines)."""
    lines = [
        "DICOM MEDIA (IHE PDI): " + ("DICOM PLUS WEB" if facts.web else "DICOM ONLY"),
        "",
        f"Created {facts.created} by Aperture {__version__}, an open-source imaging server.",
        f"Source: {facts.institution}" if facts.institution else "Source: the imaging server the images came from.",
        "",
        f"Contents: {facts.instances} DICOM instance(s) of {facts.studies} study(ies), {facts.patients} patient(s).",
        "",
        "How this folder is organised",
        "  DICOMDIR            the DICOM directory (PS3.10): open it with any DICOM viewer or import tool",
        "  DICOM/              the DICOM files, unchanged from the server (DICOM/<study>/<series>/<instance>)",
    ]
    if facts.web:
        lines += [
            "  INDEX.HTM           open in a web browser: every study and series with a preview",
            "  IHE_PDI/            the previews (JPEG, for orientation only, not for diagnosis)",
        ]
    lines += [
        "  README.TXT          this file",
        "",
        "No viewer program is included and nothing on this media runs by itself. Any DICOM viewer",
        "opens DICOMDIR; a hospital imports the folder with its PACS or media importer.",
        "",
        f"Media profile: {facts.profile}.",
        "Transfer syntaxes on the media (as stored on the server; nothing was recompressed):",
        *(f"  {uid}" for uid in facts.syntaxes),
    ]
    if facts.invented:
        lines += [
            "",
            "Some files leave empty a key the DICOMDIR requires (PS3.3 Annex F). The value below was",
            "put in the DICOMDIR record only; the DICOM files themselves are unchanged:",
            *(f"  {path}: {keyword} = {value}" for path, keyword, value in facts.invented),
        ]
    if facts.refused:
        lines += [
            "",
            "NOT IN THE DICOMDIR: these files could not be put on DICOM media, for the reason given.",
            "They are kept in EXCLUDED/ (the same path as under DICOM/), unchanged:",
            *(f"  {path}: {reason}" for path, reason in facts.refused),
        ]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
