"""`aperture ehr`: run the EHR sandbox, register clients, mint tokens without the browser flow.

The sandbox runs under granian like the imaging server (`aperture serve`), in its own process with
its own `--data` folder. Admin commands open that folder's database directly; they may run while
the server does (SQLite WAL). A confidential client's secret is printed once, on registration,
and exists nowhere else in clear.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aperture.cli.serve import serve_with_granian
from aperture.config import ConfigError
from aperture.ehr.clients import DEFAULT_APP_SCOPE, KINDS, list_clients, register_client
from aperture.ehr.config import EhrConfig, load_ehr_config
from aperture.ehr.errors import EhrError
from aperture.lifecycle import ListenError, check_listen
from aperture.logs import console_logging

if TYPE_CHECKING:
    from sqlalchemy import Engine


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ehr = subparsers.add_parser("ehr", help="the EHR sandbox: a SMART on FHIR authorization server")
    commands = ehr.add_subparsers(dest="ehr_command", required=True)

    serve = commands.add_parser("serve", help="run the sandbox (discovery at /fhir/.well-known/smart-configuration)")
    _common(serve)
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 9090)")
    serve.add_argument("--public-url", default=None, help="URL apps use to reach the sandbox")
    serve.add_argument("--imaging-fhir-base", default=None, help="imaging server's FHIR base, for discovery")
    serve.add_argument(
        "--dynamic-registration", action="store_true", default=None, help="open RFC 7591 registration at /register"
    )
    serve.add_argument(
        "--developer-page", action="store_true", default=None,
        help="serve the developer page at /sandbox: register, remove and launch apps, no sign-in",
    )  # fmt: skip
    serve.add_argument(
        "--no-authorization-details", action="store_false", default=None, dest="authorization_details",
        help="answer introspection as a plain SMART EHR: no authorization_details (the imaging policy)",
    )  # fmt: skip
    serve.add_argument(
        "--cors-origin", action="append", default=None, dest="cors_origins", metavar="ORIGIN",
        help="browser origin allowed to call the token and FHIR endpoints (repeatable; '*' for any)",
    )  # fmt: skip
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request, every query value but public OAuth ones REDACTED (debugging)",
    )
    serve.set_defaults(handler=run_serve)

    token = commands.add_parser("token", help="print a token response for a registered client, no browser flow")
    _common(token)
    token.add_argument("--client-id", required=True)
    token.add_argument("--scope", required=True, help='space-separated, e.g. "system/ImagingStudy.rs"')
    token.add_argument("--patient", default=None, help="patient launch context: a FHIR logical id")
    token.add_argument("--user", default=None, help="signed-in user: a FHIR reference, e.g. Practitioner/123")
    token.set_defaults(handler=run_token)

    clients = commands.add_parser("clients", help="register, list, approve and remove apps").add_subparsers(
        dest="clients_command", required=True
    )
    add = clients.add_parser("add", help="register a client; prints it (with its secret, shown only now)")
    _common(add)
    add.add_argument("--kind", choices=KINDS, required=True)
    add.add_argument("--name", required=True, help="what people see, e.g. 'Imaging server'")
    add.add_argument(
        "--scope", default=None,
        help=f"scopes the client may be granted, space-separated (public default: {DEFAULT_APP_SCOPE!r}; else none)",
    )  # fmt: skip
    add.add_argument("--client-id", default=None, help="default: a random id")
    add.add_argument("--jwks", type=Path, default=None, help="backend: file holding the public JWK Set")
    add.add_argument("--jwks-uri", default=None, help="backend: where the public JWK Set is published")
    add.add_argument("--redirect-uri", action="append", default=[], help="exact redirect URI (repeatable)")
    add.add_argument("--introspect", action="store_true", help="confidential: a resource server that introspects")
    add.add_argument("--launch-url", default=None, help="EHR launch: the app page that receives ?iss=&launch=")
    add.add_argument(
        "--pre-approved", action="store_true", help="organisational policy: EHR launches skip the consent screen"
    )
    add.add_argument(
        "--patients", nargs="+", action="extend", default=[], metavar="ID",
        help="backend: patients (FHIR ids) the client is pre-authorized for, every study of theirs",
    )  # fmt: skip
    add.add_argument(
        "--studies", nargs="+", action="extend", default=[], metavar="UID",
        help="backend: single studies (StudyInstanceUID) the client is pre-authorized for",
    )  # fmt: skip
    add.set_defaults(handler=run_clients_add)
    listing = clients.add_parser("list", help="list registered clients (never their secrets)")
    _common(listing)
    listing.set_defaults(handler=run_clients_list)
    approve = clients.add_parser(
        "approve", help="approve a dynamically registered app: launch page, CORS, no 'unverified' warning"
    )
    _common(approve)
    approve.add_argument("client_id")
    approve.set_defaults(handler=run_clients_approve)
    remove = clients.add_parser(
        "remove", help="remove a client and everything issued to it (tokens, refresh tokens, codes, launches)"
    )
    _common(remove)
    remove.add_argument("client_id")
    remove.set_defaults(handler=run_clients_remove)
    reconcile = commands.add_parser(
        "reconcile", help="studies the imaging server published that match no patient"
    ).add_subparsers(dest="reconcile_command", required=True)
    pending = reconcile.add_parser("list", help="list them (JSON): UID, the subject identifier sent, why, when")
    _common(pending)
    pending.set_defaults(handler=run_reconcile_list)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=None, help="sandbox data folder (default ./ehr-data)")
    parser.add_argument("--config", type=Path, default=None, help="TOML file with an [ehr] table")


# Written by `aperture ehr serve` into its data folder: the settings it serves with, so that the other
# commands on that folder (`token`, `clients`) issue tokens for the URLs it really publishes.
SERVING_FILE = "serving.json"


def _sandbox_folder(data: Path | None) -> Path | None:
    """`data`, or the sandbox inside it when `data` is an `aperture demo` folder (its `ehr/` sub-folder).

    A demo prints its own folder; the sandbox commands given that folder use the demo's sandbox
    instead of creating an empty one beside it.
    """
    if data is None or (data / SERVING_FILE).is_file():
        return data
    inside = data / "ehr"
    if (data / "demo.json").is_file() and (inside / SERVING_FILE).is_file():
        return inside
    return data


def _config(args: argparse.Namespace, **flags: Any) -> EhrConfig:
    data = _sandbox_folder(args.data)
    config = load_ehr_config(args.config, data=str(data) if data else None, **flags)
    served = config.data / SERVING_FILE
    if args.config is None and not flags and served.is_file():
        try:
            settings = json.loads(served.read_text(encoding="utf-8"))
            return EhrConfig(**{**settings, "data": config.data})
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{served} is not what aperture ehr serve writes ({exc}); remove it.") from exc
    return config


def _fail(message: str, status: int = 2) -> int:
    print(f"aperture ehr: {message}", file=sys.stderr)
    return status


def run_serve(args: argparse.Namespace) -> int:
    from aperture.ehr.asgi import SETTINGS_ENV
    from aperture.ehr.keys import load_or_create_signing_key
    from aperture.ehr.store import open_store

    try:
        config = _config(
            args,
            host=args.host,
            port=args.port,
            public_url=args.public_url,
            imaging_fhir_base=args.imaging_fhir_base,
            dynamic_registration=args.dynamic_registration,
            developer_page=args.developer_page,
            authorization_details=args.authorization_details,
            cors_origins=args.cors_origins,
        )
    except ConfigError as exc:
        return _fail(str(exc))
    try:  # before anything is written: a second sandbox on a busy port must change nothing
        check_listen(config.host, config.port)
    except ListenError as exc:
        return _fail(str(exc), status=1)
    try:
        open_store(config.data).dispose()  # create the schema once here, not racing in workers
        load_or_create_signing_key(config.data)
        (config.data / SERVING_FILE).write_text(json.dumps(config.to_json(), indent=2), encoding="utf-8")
    except ConfigError as exc:
        return _fail(str(exc))
    console_logging()
    os.environ[SETTINGS_ENV] = json.dumps(config.to_json())
    print(f"Aperture EHR sandbox: {config.fhir_base}/.well-known/smart-configuration", flush=True)
    if config.developer_page:
        print(f"Developer page: {config.developer_page_url}", flush=True)
    serve_with_granian("aperture.cli.workers:ehr", config.host, config.port, workers=1, access_log=args.access_log)
    return 0


def run_token(args: argparse.Namespace) -> int:
    from aperture.ehr.mint import mint_token
    from aperture.ehr.store import open_store

    try:
        config = _config(args)
        engine = open_store(config.data)
        try:
            response = mint_token(
                engine, config, client_id=args.client_id, scope=args.scope, patient=args.patient, user=args.user
            )
        finally:
            engine.dispose()
    except (ConfigError, EhrError) as exc:
        return _fail(str(exc))
    print(json.dumps(response, indent=2))
    return 0


def run_clients_add(args: argparse.Namespace) -> int:
    from aperture.ehr.people import load_directory
    from aperture.ehr.preauthorization import check_preauthorization, store_preauthorization
    from aperture.ehr.store import open_store

    try:
        config = _config(args)
        jwks = _read_jwks(args.jwks) if args.jwks else None
        reach = check_preauthorization(load_directory(), args.kind, args.patients, args.studies)
        engine = open_store(config.data)
        try:
            client, secret = register_client(
                engine,
                kind=args.kind,
                name=args.name,
                scope=args.scope if args.scope is not None else DEFAULT_APP_SCOPE if args.kind == "public" else "",
                client_id=args.client_id,
                jwks=jwks,
                jwks_uri=args.jwks_uri,
                redirect_uris=tuple(args.redirect_uri),
                introspect=args.introspect,
                launch_url=args.launch_url,
                pre_approved=args.pre_approved,
            )
            store_preauthorization(engine, client.client_id, reach)
        finally:
            engine.dispose()
    except (ConfigError, EhrError) as exc:
        return _fail(str(exc))
    answer = {**client.describe(), **reach.describe()}
    if secret is not None:
        answer["client_secret"] = secret
        print("aperture ehr: the client secret is shown only now; store it safely.", file=sys.stderr)
    print(json.dumps(answer, indent=2))
    return 0


def run_clients_list(args: argparse.Namespace) -> int:
    from aperture.ehr.store import open_store

    try:
        engine = open_store(_config(args).data)
    except ConfigError as exc:
        return _fail(str(exc))
    from aperture.ehr.preauthorization import find_preauthorization

    try:
        listing = [
            {**client.describe(), **find_preauthorization(engine, client.client_id).describe()}
            for client in list_clients(engine)
        ]
        print(json.dumps(listing, indent=2))
    finally:
        engine.dispose()
    return 0


def run_clients_approve(args: argparse.Namespace) -> int:
    from aperture.ehr.clients import approve_client

    return _on_client(args, lambda engine: approve_client(engine, args.client_id).describe())


def run_clients_remove(args: argparse.Namespace) -> int:
    from aperture.ehr.clients import remove_client

    return _on_client(args, lambda engine: remove_client(engine, args.client_id).describe())


def _on_client(args: argparse.Namespace, change: Callable[[Engine], dict[str, Any]]) -> int:
    """Open the sandbox's store, make one change to a client, print what it answers as JSON."""
    from aperture.ehr.store import open_store

    try:
        engine = open_store(_config(args).data)
        try:
            answer = change(engine)
        finally:
            engine.dispose()
    except (ConfigError, EhrError) as exc:
        return _fail(str(exc))
    print(json.dumps(answer, indent=2))
    return 0


def run_reconcile_list(args: argparse.Namespace) -> int:
    from aperture.ehr.fhir.submissions import unmatched
    from aperture.ehr.store import open_store

    try:
        engine = open_store(_config(args).data)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        print(json.dumps(unmatched(engine), indent=2))
    finally:
        engine.dispose()
    return 0


def _read_jwks(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"JWK Set file {path} does not exist.") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"JWK Set file {path} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f'JWK Set file {path} must hold a JSON object {{"keys": [...]}}.')
    return value
