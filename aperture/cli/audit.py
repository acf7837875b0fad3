"""`aperture audit`: list the audit events in a data folder's index, filtered, as a table or JSON.

It opens the index the way `aperture serve` does (`--data`, `--config`) and may run while the
server does (SQLite WAL). What a running server decided in its last fraction of a second may not
be written yet (the recorder writes in batches, `aperture.audit.recorder`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aperture.config import ConfigError, load_config
from aperture.errors import InvalidRequest


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("audit", help="list recorded access decisions (FHIR AuditEvents)")
    parser.add_argument("--data", type=Path, default=None, help="data folder: blobs and the SQLite index")
    parser.add_argument("--config", type=Path, default=None, help="TOML config file (docs/configuration.md)")
    parser.add_argument("--patient", default=None, help="a FHIR patient reference (Patient/123) or logical id")
    parser.add_argument("--client", default=None, help="an OAuth client_id")
    parser.add_argument("--outcome", choices=["permit", "deny"], default=None)
    parser.add_argument("--since", default=None, help="from this date or dateTime on (e.g. 2026-12-01)")
    parser.add_argument("--until", default=None, help="up to and including this date or dateTime")
    parser.add_argument("--limit", type=int, default=100, help="at most this many events, newest first (default 100)")
    parser.add_argument("--format", choices=["table", "json"], default="table", dest="output")
    parser.set_defaults(handler=run)


def _params(args: argparse.Namespace) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {"_count": [str(args.limit)]}
    for name, value in (("patient", args.patient), ("client", args.client), ("outcome", args.outcome)):
        if value is not None:
            params[name] = [value]
    dates = [f"ge{args.since}"] if args.since else []
    dates += [f"le{args.until}"] if args.until else []
    if dates:
        params["date"] = dates
    return params


def run(args: argparse.Namespace) -> int:
    from aperture.audit.search import parse_search
    from aperture.audit.store import AuditStore
    from aperture.store.engine import open_engine

    try:
        config = load_config(args.config, store={"path": str(args.data) if args.data else None})
        query = parse_search(_params(args))
    except (ConfigError, InvalidRequest) as exc:
        print(f"aperture audit: {exc}", file=sys.stderr)
        return 2
    index = config.store.path / "index.sqlite3"
    if not config.store.database_url and not index.exists():  # a listing must not create an empty index
        print(
            f"aperture audit: there is no index at {index}; give the server's --data folder or --config.",
            file=sys.stderr,
        )
        return 2
    engine = open_engine(config.database_url)
    try:
        events = [event.document for event in AuditStore(engine, "").find(query)]
    finally:
        engine.dispose()
    if args.output == "json":
        print(json.dumps(events, indent=2, ensure_ascii=False))
    else:
        print(_table(events))
    return 0


_COLUMNS = ("recorded", "action", "outcome", "status", "client", "user", "patient", "studies", "count", "address")


def _row(event: dict[str, Any]) -> tuple[str, ...]:
    """One table row, read from the AuditEvent itself (what is stored is what is shown)."""
    agents = event["agent"]  # as events.audit_event writes them: client, server, then the user if known
    client, users = agents[0], agents[2:]
    patient = next(
        (e["what"]["reference"] for e in event.get("entity", []) if e.get("role", {}).get("code") == "1"), ""
    )
    studies = [
        e["what"]["identifier"]["value"].removeprefix("urn:oid:")
        for e in event.get("entity", [])
        if e.get("role", {}).get("code") == "3"
    ]
    count = next((str(x["valueInteger"]) for x in event.get("extension", []) if "valueInteger" in x), "1")
    user = users[0]["who"] if users else {}
    return (
        event["recorded"],
        event["action"],
        *event["outcomeDesc"].split(": HTTP "),  # "deny: HTTP 403", as events.audit_event writes it
        client.get("who", {}).get("identifier", {}).get("value", ""),
        user.get("reference") or user.get("identifier", {}).get("value", ""),
        patient,
        " ".join(studies),
        count,
        client.get("network", {}).get("address", ""),
    )


def _table(events: list[dict[str, Any]]) -> str:
    rows = [_COLUMNS, *(_row(event) for event in events)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
