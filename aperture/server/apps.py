"""The browser apps the imaging server ships as static files: `StaticApp`, and the sample app at `/apps/sample/`.

Public and static: an app's pages carry no patient data; the app fetches that itself with the
token it gets from the EHR. Only the names in an app's `files` are served, looked up by exact name
(the route's `{name}` never holds a `/`, so no path reaches another folder, encoded or not), and
`config.json`, written here: the EHR the app is to trust is the one this server trusts
(`auth.ehr_issuer`), and its client id is the one `aperture demo` registers. The same files served
from another origin need only another `config.json` (docs/sample-app.md). The
Content-Security-Policy lets the scripts talk only to this server and to the EHR this server
trusts (`auth.ehr_issuer`), and `Referrer-Policy: no-referrer` keeps the authorization code that
arrives in the callback URL out of every Referer.

The sample app (`aperture/clients/sample_app/`) is defined here; the patients' app at `/app/` in
`aperture.server.webapp`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aperture.clients import SAMPLE_APP_CLIENT_ID
from aperture.config import Config
from aperture.errors import NotFound

HTML = "text/html; charset=utf-8"
SCRIPT = "text/javascript; charset=utf-8"
STYLE = "text/css; charset=utf-8"


@cache
def _content(folder: str, name: str) -> bytes:
    return (files("aperture") / "clients" / folder / name).read_bytes()


def ehr_issuer(config: Config) -> str | None:
    """The EHR an app of this server signs in at: the one it trusts, or None without SMART authorization."""
    return config.auth.ehr_issuer if config.server.auth != "none" and config.auth.ehr_issuer else None


@dataclass(frozen=True)
class StaticApp:
    """A SMART app's files in `aperture/clients/<folder>/`, served at `<prefix>/` with a `config.json`."""

    prefix: str
    folder: str
    files: Mapping[str, str]  # name -> media type; the first is the index (the redirect URI)
    client_id: str
    form_action: str = "'none'"  # where the app's forms may post ('self' for a download form)

    def policy(self, config: Config) -> str:
        connect = "'self'"
        issuer = ehr_issuer(config)
        if issuer:
            parts = urlsplit(issuer)
            connect += f" {parts.scheme}://{parts.netloc}"
        return (
            f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src {connect}; "
            f"base-uri 'none'; form-action {self.form_action}; frame-ancestors 'none'"
        )

    def config_json(self, config: Config) -> bytes:
        """The app's `config.json`: the issuer it signs in at (null without SMART authorization) and its client id."""
        return json.dumps({"issuer": ehr_issuer(config), "clientId": self.client_id}).encode()

    def answer(self, request: Request, name: str) -> Response:
        if name != "config.json" and name not in self.files:
            names = ", ".join(sorted([*self.files, "config.json"]))
            raise NotFound(f"No file {name[:80]!r} at {self.prefix}/; there are {names}.")
        config: Config = request.app.state.config
        headers = {
            "Content-Security-Policy": self.policy(config),
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        }
        if name == "config.json":
            return Response(self.config_json(config), media_type="application/json", headers=headers)
        return Response(_content(self.folder, name), media_type=self.files[name], headers=headers)

    def routes(self) -> list[Route]:
        index = next(iter(self.files))

        async def index_page(request: Request) -> Response:
            return self.answer(request, index)

        async def file(request: Request) -> Response:
            return self.answer(request, request.path_params["name"])

        return [
            Route(f"{self.prefix}/", index_page, methods=["GET"]),
            Route(self.prefix + "/{name}", file, methods=["GET"]),
        ]


SAMPLE = StaticApp(
    prefix="/apps/sample",
    folder="sample_app",
    files={
        "index.html": HTML,  # the redirect URI: code exchange, then the patient's studies
        "launch.html": HTML,  # the launch URL: EHR launch (iss, launch) or standalone
        "app.js": SCRIPT,
        "style.css": STYLE,
    },
    client_id=SAMPLE_APP_CLIENT_ID,
)
FILES = SAMPLE.files


def app_config(config: Config) -> bytes:
    """The sample app's `config.json`."""
    return SAMPLE.config_json(config)


routes = SAMPLE.routes()
