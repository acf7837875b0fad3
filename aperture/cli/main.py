"""`aperture` command dispatch."""

from __future__ import annotations

import argparse
import sys

from aperture import __version__
from aperture.cli import audit, demo, download, ehr, serve, transmit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aperture", description="Aperture imaging server")
    parser.add_argument("--version", action="version", version=f"aperture {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(subparsers)
    demo.add_parser(subparsers)
    ehr.add_parser(subparsers)
    audit.add_parser(subparsers)
    download.add_parser(subparsers)
    transmit.add_parser(subparsers)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
