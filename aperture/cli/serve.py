"""`aperture serve`: run the imaging server under granian (a Rust HTTP server for ASGI apps).

granian is used because the HTTP server sets the ceiling for streaming large studies: measured on
the project machine a plain Python app streamed 150 MB at ~650 MB/s under uvicorn and ~1,800 MB/s
under granian.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aperture.config import ConfigError, load_config
from aperture.lifecycle import ListenError, check_listen
from aperture.logs import console_logging, worker_logging

# How much of a request body granian reads from the socket at a time (its default is 400 KB). STOW-RS
# handles each chunk in Python, so fewer, larger chunks cost less: a 158 MB STOW was about 10%
# faster with 1 MB, in two runs of seven against the default. The price: up to 1 MB per connection
# while a body is arriving.
HTTP1_BUFFER_BYTES = 1 << 20
# On SIGTERM, SIGINT or SIGHUP a worker gets this long to finish the requests under way, then it is
# killed: a worker streaming a large study or parsing a large upload must not keep the server alive.
WORKER_STOP_SECONDS = 5


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("serve", help="run the imaging server (DICOMweb at /dicom-web)")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8080)")
    parser.add_argument("--data", type=Path, default=None, help="data folder: blobs and the SQLite index")
    parser.add_argument("--config", type=Path, default=None, help="TOML config file (docs/configuration.md)")
    parser.add_argument(
        "--auth",
        choices=["none", "smart"],
        default=None,
        help="'smart' (the default) asks the EHR about every bearer token ([auth] in --config); "
        "'none' allows every request (development only; must be spelled out)",
    )
    parser.add_argument("--public-url", default=None, help="URL clients use to reach this server")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default 1)")
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="log one line per request, every query value but paging ones REDACTED (debugging)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    overrides = {
        "server": {"host": args.host, "port": args.port, "auth": args.auth, "public_url": args.public_url,
                   "workers": args.workers, "access_log": args.access_log},
        "store": {"path": str(args.data) if args.data else None},
    }  # fmt: skip
    try:
        config = load_config(args.config, **overrides)
    except ConfigError as exc:
        print(f"aperture serve: {exc}", file=sys.stderr)
        return 2
    if config.server.auth == "smart":
        from aperture.auth.introspection import check_auth_config

        try:
            check_auth_config(config.auth)
        except ConfigError as exc:
            print(
                f"aperture serve: --auth smart needs the [auth] table of a --config file "
                f"(docs/authorization.md): {exc}",
                file=sys.stderr,
            )
            return 2
    from aperture.fhir.publish import check_publishing

    try:
        check_publishing(config)  # a missing or unreadable key file is named now, not in every worker
    except ConfigError as exc:
        print(f"aperture serve: {exc}", file=sys.stderr)
        return 2
    try:
        check_listen(config.server.host, config.server.port)
    except ListenError as exc:
        print(f"aperture serve: {exc}", file=sys.stderr)
        return 1
    console_logging()
    # imported here, not at the top: other subcommands (`aperture ehr`) must not load the imaging server
    from aperture.server.asgi import SETTINGS_ENV
    from aperture.store.engine import open_engine

    config.store.path.mkdir(parents=True, exist_ok=True)
    open_engine(config.database_url).dispose()  # migrate once here, not racing in every worker
    if config.server.workers > 1:  # one worker cleans tmp/ itself; several must not race to
        from aperture.server.app import clean_temp
        from aperture.store.blobs import BlobStore

        clean_temp(BlobStore(config.store.path))
    settings = {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in overrides.items()}
    if args.config:
        settings["config_file"] = str(args.config)  # type: ignore[assignment]
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    from granian.http import HTTP1Settings

    print(f"Aperture DICOMweb: http://{config.server.host}:{config.server.port}/dicom-web", flush=True)
    serve_with_granian(
        "aperture.cli.workers:imaging",
        config.server.host,
        config.server.port,
        workers=config.server.workers,
        access_log=config.server.access_log,
        http1_settings=HTTP1Settings(max_buffer_size=HTTP1_BUFFER_BYTES),
    )
    return 0


def serve_with_granian(target: str, host: str, port: int, *, workers: int, access_log: bool, **options: Any) -> None:
    """Run `target` (a factory in `aperture.cli.workers`) under granian until a signal stops it.

    granian's own access log stays off: it would log query strings as sent. SIGHUP stops the server
    like SIGTERM (granian would respawn the workers instead), so closing the terminal ends it.
    """
    from granian import Granian
    from granian.constants import Interfaces

    from aperture.cli.workers import PARENT_ENV

    os.environ[PARENT_ENV] = str(os.getpid())
    server = Granian(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        factory=True,
        log_access=False,
        log_dictconfig=worker_logging(access_log=access_log),
        workers_kill_timeout=WORKER_STOP_SECONDS,
        **options,
    )
    server.on_startup(lambda: signal.signal(signal.SIGHUP, server.signal_handler_interrupt))
    server.serve()
