"""`aperture download`: sign in at the EHR, fetch every study the authorization reaches, write IHE PDI media."""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from datetime import date
from pathlib import Path

from aperture.cli import signing_in
from aperture.clients.download import Progress
from aperture.clients.http import client
from aperture.errors import ApertureError


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "download",
        help="download a patient's studies as IHE PDI media (a DICOM/ folder with DICOMDIR, or a zip)",
        description="Sign in at a SMART EHR and download every study the authorization reaches.",
    )
    signing_in.add_arguments(parser)
    parser.add_argument("--study", help="only this StudyInstanceUID")
    parser.add_argument("--since", type=date.fromisoformat, help="only studies changed on or after DATE (YYYY-MM-DD)")
    parser.add_argument("--out", type=Path, default=Path("aperture-download"), help="output folder")
    parser.add_argument("--streams", type=int, default=4, help="parallel streams (default 4)")
    parser.add_argument("--zip", action="store_true", help="also write OUT.zip of the media folder")
    parser.add_argument("--no-index", action="store_true", help="only the DICOM/ folder: no DICOMDIR, README, INDEX")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aperture.clients import download

    if not 1 <= args.streams <= 32:
        print("aperture download: --streams is 1 to 32", file=sys.stderr)
        return 2
    if (wrong := signing_in.problem(args)) is not None:
        print(f"aperture download: {wrong}", file=sys.stderr)
        return 2
    with client(timeout=60) as http:
        try:
            session = signing_in.sign_in(args, http)
            since = args.since.isoformat() if args.since else None
            studies = download.find_studies(http, session, study=args.study, since=since)
        except ApertureError as exc:
            print(f"aperture download: {exc.message}", file=sys.stderr)
            return 2
        if args.study and not studies:
            print(f"aperture download: study {args.study} is not among the studies you may see", file=sys.stderr)
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        progress = download.Progress() if args.quiet else _RichProgress()
        try:
            report = download.download(session, studies, args.out, streams=args.streams, progress=progress, http=http)
        finally:
            progress.stop()
    print(
        f"{report.studies} studies, {report.instances} instances: {report.fetched} fetched "
        f"({report.bytes / 1e6:.1f} MB), {report.kept} already here"
        + (f", {report.unverified} without a server digest" if report.unverified else "")
    )
    if not report.complete:
        for problem in report.problems:
            print(f"  missing or wrong: {problem}", file=sys.stderr)
        print(f"aperture download: incomplete ({len(report.problems)} problems); run again to retry", file=sys.stderr)
        return 1
    if not args.no_index:
        write_media(args.out)
    if args.zip:
        archive = write_zip(args.out)
        print(f"Wrote {archive}")
    print(f"Wrote {args.out}")
    return 0


def write_media(out: Path) -> None:
    """The PDI index beside DICOM/ (DICOMDIR, README.TXT, INDEX.HTM with previews), and what it left out.

    A file the media may not hold (aperture.media.pdi says why) is kept in EXCLUDED/, unchanged,
    and named here: the download has it, the DICOMDIR does not list it.
    """
    from aperture.media.pdi import write_pdi

    summary = write_pdi(out)
    print(
        f"Media: DICOMDIR of {summary.instances} instances ({summary.studies} studies, {summary.patients} patients), "
        f"profile {summary.profile}, {summary.previews} series previews in INDEX.HTM"
    )
    for refusal in summary.refused:
        print(f"  not on the media (kept in EXCLUDED/): {refusal.path}: {refusal.reason}", file=sys.stderr)


def write_zip(out: Path) -> Path:
    """`OUT.zip`: the media folder (DICOM/ and the index), without the download's own state; stored, not deflated."""
    archive = out.with_name(out.name + ".zip")
    partial = archive.with_name(archive.name + ".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zipped:
        for path in sorted(out.rglob("*")):
            relative = path.relative_to(out)
            if not path.is_file():
                continue
            zipped.write(path, relative.as_posix())
    shutil.move(partial, archive)
    return archive


class _RichProgress(Progress):
    """Bars for studies, instances and bytes (with the rate), on standard error."""

    def __init__(self) -> None:
        import rich.progress
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        self.counts = rich.progress.Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), console=console
        )
        self.bytes = rich.progress.Progress(
            TextColumn("{task.description:<10}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console,
        )  # fmt: skip
        from rich.console import Group
        from rich.live import Live

        self.live = Live(Group(self.counts, self.bytes), console=console, refresh_per_second=8)

    def start(self, studies: int, instances: int, kept: int, kept_bytes: int) -> None:
        self.studies = self.counts.add_task("studies", total=studies)
        self.instances = self.counts.add_task("instances", total=instances, completed=kept)
        self.received_task = self.bytes.add_task("bytes", total=None)
        self.live.start()

    def received(self, size: int) -> None:
        self.bytes.advance(self.received_task, size)

    def instance_done(self) -> None:
        self.counts.advance(self.instances)

    def study_done(self) -> None:
        self.counts.advance(self.studies)

    def stop(self) -> None:
        self.live.stop()
