"""The one place where errors become HTTP answers: a JSON body a person can act on.

Every 4xx/5xx carries `{"status": ..., "error": <reason phrase>, "message": <what to do>}` with
`application/json`. Unexpected exceptions are logged with a request id and answered 500 without
internals.
"""

from __future__ import annotations

import logging
import secrets
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aperture.errors import ApertureError

log = logging.getLogger("aperture.server")

_ROUTE_HINT = {
    404: "No such resource. DICOMweb lives under /dicom-web (see docs/dicomweb.md).",
    405: "This method is not allowed on this resource.",
}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return JSONResponse({"status": status, "error": reason, "message": message}, status_code=status, headers=headers)


async def aperture_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApertureError)
    return error_response(exc.status, exc.message)


async def http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.detail and exc.detail != HTTPStatus(exc.status_code).phrase else None
    return error_response(exc.status_code, detail or _ROUTE_HINT.get(exc.status_code, "Request failed."), exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    incident = secrets.token_hex(6)
    log.exception("unhandled error %s on %s %s", incident, request.method, request.url.path)
    return error_response(500, f"Internal error (incident {incident}); the server log has the details.")


EXCEPTION_HANDLERS = {ApertureError: aperture_error, HTTPException: http_error, Exception: unexpected_error}
