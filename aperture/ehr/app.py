"""create_app(config): the EHR sandbox's ASGI application.

Routes: SMART discovery under the FHIR base, the sandbox's JWKS, and the OAuth endpoints (token,
introspection, revocation), which hand a parsed request to Authlib in a worker thread. Errors are
answered in RFC 6749 §5.2 shape everywhere (`{"error", "error_description"}`): Authlib's within the
OAuth flows, `ehr_error` for the sandbox's own, and the same shape for 404/405 and the unexpected.
The access log is the one both servers share (`aperture.logs`, off unless `--access-log`): it never
logs headers or bodies and redacts every query value but paging and public OAuth parameters, so
client secrets, assertions, codes and tokens stay out of the log. CORS (`aperture.ehr.cors`) sits
inside it and outside the error handling, so errors carry it too.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from aperture import __version__
from aperture.ehr.accounts import seed_accounts
from aperture.ehr.authorization import (
    SandboxAuthorizationServer,
    StarletteOAuth2Request,
    query_credentials,
    urlencoded_form,
)
from aperture.ehr.authorize import authorize
from aperture.ehr.clients import approved_redirect_origins
from aperture.ehr.config import EhrConfig
from aperture.ehr.cors import CrossOrigin
from aperture.ehr.developer import DEVELOPER_PATH, developer_page
from aperture.ehr.discovery import smart_configuration
from aperture.ehr.errors import EhrError
from aperture.ehr.fhir import ROUTES as FHIR_ROUTES
from aperture.ehr.fhir import load as load_clinical_record
from aperture.ehr.fhir.outcomes import operation_outcome
from aperture.ehr.keys import load_or_create_signing_key, public_jwks
from aperture.ehr.launchpage import ehr_launch
from aperture.ehr.logout import LOGOUT_PATH, logout
from aperture.ehr.people import load_directory
from aperture.ehr.registration import register
from aperture.ehr.store import open_store
from aperture.ehr.throttle import SignInThrottle
from aperture.logs import AccessLog, logged_path

log = logging.getLogger("aperture.ehr")

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(status: int, error: str, description: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers={**_NO_STORE, **(headers or {})}
    )


async def ehr_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EhrError)
    return oauth_error(exc.status, exc.error, exc.message)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405: an OperationOutcome under /fhir/ (what a FHIR client reads), else RFC 6749 shape."""
    assert isinstance(exc, HTTPException)
    hint = {404: "No such endpoint; discovery is at /fhir/.well-known/smart-configuration."}
    if request.url.path.startswith("/fhir/") and exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        text = f"{request.method} is not supported here" + (f"; this URL serves {allowed}." if allowed else ".")
        return operation_outcome(405, text, exc.headers)
    return oauth_error(exc.status_code, "invalid_request", hint.get(exc.status_code, str(exc.detail)), exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    incident = secrets.token_hex(6)
    log.exception("unhandled error %s on %s %s", incident, request.method, logged_path(request.scope))
    return oauth_error(500, "server_error", f"Internal error (incident {incident}); the sandbox log has the details.")


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


async def discovery(request: Request) -> Response:
    return JSONResponse(smart_configuration(request.app.state.config))


async def jwks(request: Request) -> Response:
    return JSONResponse(public_jwks(request.app.state.signing_key))


def _oauth_endpoint(run: Callable[[SandboxAuthorizationServer, StarletteOAuth2Request], Response]) -> Callable:  # type: ignore[type-arg]
    """A route that reads the urlencoded form, then runs one Authlib endpoint in a worker thread."""

    async def endpoint(request: Request) -> Response:
        server: SandboxAuthorizationServer = request.app.state.authorization
        try:
            if query_credentials(request.query_params.keys()):  # refused, and a client_assertion there spent
                await run_in_threadpool(server.refuse_query_credentials, request.query_params)
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
                raise InvalidRequestError(
                    "Send the parameters as application/x-www-form-urlencoded (RFC 6749 section 3.2)."
                )
            oauth_request = StarletteOAuth2Request(request, await urlencoded_form(request))
        except OAuth2Error as error:
            return server.handle_error_response(None, error)
        return await run_in_threadpool(run, server, oauth_request)

    return endpoint


token = _oauth_endpoint(lambda server, req: server.create_token_response(req))
introspect = _oauth_endpoint(lambda server, req: server.create_endpoint_response("introspection", req))
revoke = _oauth_endpoint(lambda server, req: server.create_endpoint_response("revocation", req))


class _SandboxApp(Starlette):
    """Starlette with the access log and CORS outside its error middleware, so 500 answers get both."""

    def build_middleware_stack(self) -> ASGIApp:
        config: EhrConfig = self.state.config
        origins = CrossOrigin(
            super().build_middleware_stack(), config.cors_origins,
            lambda: approved_redirect_origins(self.state.authorization.engine),
        )  # fmt: skip
        return AccessLog(origins)


def create_app(config: EhrConfig) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = open_store(config.data)
        app.state.signing_key = load_or_create_signing_key(config.data)
        app.state.authorization = SandboxAuthorizationServer(config, engine, app.state.signing_key)
        await run_in_threadpool(seed_accounts, engine, app.state.directory)
        await run_in_threadpool(load_clinical_record, engine, app.state.directory, config)
        try:
            yield
        finally:
            engine.dispose()

    app = _SandboxApp(
        routes=[
            Route("/healthz", healthz),
            Route("/fhir/.well-known/smart-configuration", discovery),
            Route("/.well-known/jwks.json", jwks),
            Route("/auth/authorize", authorize, methods=["GET", "POST"]),
            Route("/ehr/launch", ehr_launch, methods=["GET", "POST"]),
            Route(LOGOUT_PATH, logout, methods=["GET", "POST"]),
            *FHIR_ROUTES,
            Route("/auth/token", token, methods=["POST"]),
            Route("/auth/introspect", introspect, methods=["POST"]),
            Route("/auth/revoke", revoke, methods=["POST"]),
            *([Route("/register", register, methods=["POST"])] if config.dynamic_registration else []),
            *([Route(DEVELOPER_PATH, developer_page, methods=["GET", "POST"])] if config.developer_page else []),
        ],
        exception_handlers={EhrError: ehr_error, HTTPException: http_error, Exception: unexpected_error},
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.directory = load_directory()
    app.state.sign_in_throttle = SignInThrottle(known=app.state.directory.users)
    return app
