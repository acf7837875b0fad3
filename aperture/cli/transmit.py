"""`aperture transmit`: send studies to another node over STOW-RS or C-STORE, with a per-instance report.

Exit status 0 only when the receiver acknowledged every instance (or a previous report says it
did); 1 when anything was refused or failed; 2 for a usage or source error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from aperture.cli import signing_in
from aperture.errors import ApertureError

if TYPE_CHECKING:
    import httpx

    from aperture.clients.transmit.source import DicomwebSource


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("transmit", help="send studies to a DICOMweb server or a DICOM node")
    parser.add_argument("--source", default=None,
                        help="a DICOMweb base URL (Aperture's .../dicom-web) or a folder of DICOM files; "
                             "or sign in with --issuer and send every study the authorization reaches")  # fmt: skip
    parser.add_argument("--token-file", type=Path, default=None,
                        help="the source's bearer token, read from this file (else $APERTURE_TOKEN)")  # fmt: skip
    parser.add_argument("--study", action="append", default=None, help="a Study Instance UID (repeatable; default all)")
    parser.add_argument("--to", required=True, help="dicomweb:URL or dimse:AET@host:port")
    parser.add_argument("--to-token-file", type=Path, default=None,
                        help="dicomweb receiver bearer token file (else $APERTURE_TO_TOKEN)")  # fmt: skip
    parser.add_argument("--to-basic-file", type=Path, default=None,
                        help="dicomweb receiver user:password file (else $APERTURE_TO_BASIC)")  # fmt: skip
    parser.add_argument("--calling-aet", default="APERTURE", help="our AE title for dimse (default APERTURE)")
    parser.add_argument("--retries", type=int, default=3, help="retries of transient failures (default 3)")
    parser.add_argument("--report", type=Path, default=None, help="write the per-instance JSON report here")
    parser.add_argument("--skip-acknowledged", type=Path, default=None, metavar="REPORT",
                        help="do not resend what this previous report says the same receiver acknowledged")  # fmt: skip
    signing_in.add_arguments(parser, required=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aperture.clients.http import client

    with client(timeout=60) as http:  # the sign-in's: discovery, token, refresh, ImagingStudy search
        return _run(args, http)


def _signed_in_source(args: argparse.Namespace, http: httpx.Client) -> DicomwebSource:
    """Sign in at the EHR and find the studies the authorization reaches: their WADO-RS base, as the source.

    The token is asked for on every request, so a long transmit outlives its first access token.
    """
    from aperture.clients.download import find_studies
    from aperture.clients.transmit.source import BearerAuth, DicomwebSource, SourceError

    session = signing_in.sign_in(args, http)
    studies = [s for uid in (args.study or [None]) for s in find_studies(http, session, study=uid)]
    if not studies:
        raise SourceError("The authorization reaches no study (or none of those named with --study).")
    bases = {s.address for s in studies}
    if len(bases) != 1 or None in bases:
        raise SourceError(
            "The studies are not all at one WADO-RS base (their ImagingStudy Endpoints differ or are missing); "
            "transmit them one server at a time with --study."
        )

    def token() -> str:
        if session.expiring():
            session.refresh(http)
        return session.access_token

    return DicomwebSource(str(bases.pop()), BearerAuth(token), [s.uid for s in studies])


def _run(args: argparse.Namespace, http: httpx.Client) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from aperture.clients.transmit.address import parse_to
    from aperture.clients.transmit.report import InstanceResult, acknowledged_in
    from aperture.clients.transmit.retry import Backoff
    from aperture.clients.transmit.run import Sender, transmit
    from aperture.clients.transmit.senders import sender_for
    from aperture.clients.transmit.source import BearerAuth, DicomwebSource, FolderSource, Source, SourceError
    from aperture.clients.transmit.stow import read_secret, receiver_auth

    err = Console(stderr=True)
    backoff = Backoff(attempts=max(args.retries, 0) + 1)
    sender: Sender
    try:
        auth = receiver_auth(
            read_secret(args.to_token_file, "APERTURE_TO_TOKEN"), read_secret(args.to_basic_file, "APERTURE_TO_BASIC")
        )
        sender = sender_for(parse_to(args.to), auth=auth, calling_aet=args.calling_aet, backoff=backoff)
        source: Source
        if (args.source is None) == (args.issuer is None):
            raise ValueError("give either --source (a DICOMweb URL or a folder) or --issuer (sign in at the EHR)")
        if args.issuer is not None:
            if (wrong := signing_in.problem(args)) is not None:
                raise ValueError(wrong)
            source = _signed_in_source(args, http)
        elif args.source.startswith(("http://", "https://")):
            source_token = read_secret(args.token_file, "APERTURE_TOKEN")
            source_auth = BearerAuth(lambda: source_token) if source_token else None
            source = DicomwebSource(args.source, source_auth, args.study)
        else:
            source = FolderSource(Path(args.source), args.study)
        skip = acknowledged_in(args.skip_acknowledged, args.to) if args.skip_acknowledged else set()
    except (ValueError, OSError, SourceError) as exc:
        err.print(f"aperture transmit: {exc}")
        return 2
    except ApertureError as exc:  # the sign-in or the ImagingStudy search
        err.print(f"aperture transmit: {exc.message}")
        return 2

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as bars:  # fmt: skip
        task = bars.add_task("instances acknowledged", total=None)
        done = 0

        def progress(event: str, result: InstanceResult) -> None:
            nonlocal done
            done += 1
            bars.update(task, completed=done)
            if not result.acknowledged:
                bars.console.print(f"[red]{result.outcome}[/red] {result.sop_instance}: {result.reason}")

        try:
            report = transmit(source, sender, args.to, skip=skip, progress=progress)
        except SourceError as exc:
            err.print(f"aperture transmit: {exc}")
            return 2
        finally:
            sender.close()
            if isinstance(source, DicomwebSource):
                source.close()
    if args.report:
        report.write(args.report)
    counts = report.counts()
    print(", ".join(f"{counts[name]} {name}" for name in ("sent", "skipped", "refused", "failed")))
    return 0 if report.complete else 1
