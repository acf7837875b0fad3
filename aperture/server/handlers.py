"""The one place where errors become HTTP answers: a JSON body a person can act on.

Every 4xx/5xx carries `{"status": ..., "error": <reason phrase>, "message": <what to do>}` with
`application/json`, except on a route a person opens in a browser (IHE Invoke Image Display), which
calls `answer_errors_as_page` first: its errors are a short HTML page with the same message.
Unexpected exceptions are logged with a request id and answered 500 without internals. A client
that goes away before its request body ends is not a server error: one log line, and status 499
(nginx's "client closed request") for the access log, which no one receives.
"""

from __future__ import annotations

import html
import logging
import secrets
from collections.abc import Mapping
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

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


_AS_PAGE = "aperture.errors_as_page"  # request scope key: this request's errors are answered as a page
_PAGE_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def answer_errors_as_page(request: Request) -> None:
    """Mark `request` as one a person reads in a browser: its errors become an HTML page, not JSON."""
    request.scope[_AS_PAGE] = True


def error_page(status: int, message: str) -> HTMLResponse:
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{status} {html.escape(reason)}</title></head>\n"
        f'<body><main><h1>The images cannot be shown</h1>\n<p role="alert">{html.escape(message)}</p>\n'
        f"<p>(HTTP {status} {html.escape(reason)})</p></main></body></html>\n"
    )
    headers = {"Content-Security-Policy": _PAGE_POLICY, "Cache-Control": "no-store"}
    return HTMLResponse(body, status_code=status, headers=headers)


async def aperture_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApertureError)
    if request.scope.get(_AS_PAGE):
        return error_page(exc.status, exc.message)
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
