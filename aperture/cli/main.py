"""`aperture` command dispatch.

Only the module of the command being run is imported: `aperture download` should not pay for the
server's SQL and web stack before its first request. `aperture --help` (or an unknown command)
loads them all, so the usage lists every command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from aperture import __version__

# httpx's package __init__ imports its own command line (click, rich, pygments: ~70 ms) when it can;
# no aperture command uses it, and the download and transmit commands should start fast. A None
# here makes that import fail, which httpx expects and answers with a stub `httpx.main`.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

COMMANDS = ("serve", "demo", "ehr", "audit", "download", "transmit")  # each aperture.cli.<name> has add_parser


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="aperture", description="Aperture imaging server")
    parser.add_argument("--version", action="version", version=f"aperture {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    named = [a for a in arguments[:1] if a in COMMANDS]
    for name in named or COMMANDS:
        importlib.import_module(f"aperture.cli.{name}").add_parser(subparsers)
    args = parser.parse_args(arguments)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
