"""`/apps/sample/`: the files of the sample SMART imaging app (`aperture/clients/sample_app/`), and nothing else.

Public and static: the app's pages carry no patient data; the app fetches that itself with the
token it gets from the EHR. Only the names in `FILES` are served, looked up by exact name (the
route's `{name}` never holds a `/`, so no path reaches another folder, encoded or not), and
`config.json`, written here: the EHR the app is to trust is the one this server trusts
(`auth.ehr_issuer`), and its client id is the one `aperture demo` registers. The same files served
from another origin need only another `config.json` (docs/sample-app.md). The
Content-Security-Policy lets the scripts talk only to this server and to the EHR this server
trusts (`auth.ehr_issuer`), and `Referrer-Policy: no-referrer` keeps the authorization code that
arrives in the callback URL out of every Referer.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aperture.clients import SAMPLE_APP_CLIENT_ID
from aperture.config import Config
from aperture.errors import NotFound

PREFIX = "/apps/sample"
FILES = {
    "index.html": "text/html; charset=utf-8",  # the redirect URI: code exchange, then the patient's studies
    "launch.html": "text/html; charset=utf-8",  # the launch URL: EHR launch (iss, launch) or standalone
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@cache
def _content(name: str) -> bytes:
    return (files("aperture") / "clients" / "sample_app" / name).read_bytes()


def _policy(config: Config) -> str:
    connect = "'self'"
    if config.server.auth != "none" and config.auth.ehr_issuer:
        parts = urlsplit(config.auth.ehr_issuer)
        connect += f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src {connect}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def app_config(config: Config) -> bytes:
    """The app's `config.json`: the issuer it signs in at (null without SMART authorization) and its client id."""
    issuer = config.auth.ehr_issuer if config.server.auth != "none" and config.auth.ehr_issuer else None
    return json.dumps({"issuer": issuer, "clientId": SAMPLE_APP_CLIENT_ID}).encode()


def _answer(request: Request, name: str) -> Response:
    if name != "config.json" and name not in FILES:
        names = ", ".join(sorted([*FILES, "config.json"]))
        raise NotFound(f"No file {name[:80]!r} in the sample app; it has {names}.")
    headers = {
        "Content-Security-Policy": _policy(request.app.state.config),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }
    if name == "config.json":
        return Response(app_config(request.app.state.config), media_type="application/json", headers=headers)
    return Response(_content(name), media_type=FILES[name], headers=headers)


async def sample_index(request: Request) -> Response:
    return _answer(request, "index.html")


async def sample_file(request: Request) -> Response:
    return _answer(request, request.path_params["name"])


routes = [
    Route(f"{PREFIX}/", sample_index, methods=["GET"]),
    Route(PREFIX + "/{name}", sample_file, methods=["GET"]),
]
