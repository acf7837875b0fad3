"""The one place where errors become HTTP answers: a JSON body a person can act on.

Every 4xx/5xx carries `{"status": ..., "error": <reason phrase>, "message": <what to do>}` with
`application/json`. Unexpected exceptions are logged with a request id and answered 500 without
internals. A client that goes away before its request body ends is not a server error: one log
line, and status 499 (nginx's "client closed request") for the access log, which no one receives.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from aperture.errors import ApertureError
from aperture.logs import logged_path

log = logging.getLogger("aperture.server")

_ROUTE_HINT = {
    404: "No such resource. DICOMweb lives under /dicom-web (see docs/dicomweb.md).",
    405: "This method is not allowed on this resource.",
}


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return JSONResponse({"status": status, "error": reason, "message": message}, status_code=status, headers=headers)


async def aperture_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApertureError)
    return error_response(exc.status, exc.message, exc.headers or None)


async def http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.detail and exc.detail != HTTPStatus(exc.status_code).phrase else None
    return error_response(exc.status_code, detail or _ROUTE_HINT.get(exc.status_code, "Request failed."), exc.headers)


CLIENT_CLOSED_REQUEST = 499


async def client_disconnected(request: Request, _exc: Exception) -> Response:
    log.warning(
        "client went away during %s %s before the request body ended; nothing from it was stored",
        request.method,
        logged_path(request.scope),
    )
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    incident = secrets.token_hex(6)
    log.exception("unhandled error %s on %s %s", incident, request.method, logged_path(request.scope))
    return error_response(500, f"Internal error (incident {incident}); the server log has the details.")


EXCEPTION_HANDLERS = {
    ApertureError: aperture_error,
    HTTPException: http_error,
    ClientDisconnect: client_disconnected,
    Exception: unexpected_error,
}
