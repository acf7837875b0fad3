"""FHIR answers: `application/fhir+json` bodies, Accept negotiation, and errors as OperationOutcome.

A FHIR client expects an OperationOutcome for every error (R4 §3.1.0.4 "http" page: errors SHOULD
carry one), so `fhir_errors` turns Aperture's errors into one for the routes under /fhir; the
server-wide handlers keep DICOMweb's JSON error shape. Answers are `Cache-Control: private,
no-store`: an imaging search is one requester's view of patient data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aperture.errors import ApertureError, NotAcceptable

FHIR_JSON = "application/fhir+json"
_ACCEPTED = {"application/fhir+json", "application/json", "application/*", "*/*", "application/json+fhir"}
_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
}
PRIVATE = {"Cache-Control": "private, no-store"}

Handler = Callable[[Request], Awaitable[Response]]


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON

    def __init__(self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(content, status_code=status_code, headers={**PRIVATE, **(headers or {})})


def operation_outcome(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    """An OperationOutcome answer; `headers` carry what the error needs (WWW-Authenticate, Retry-After)."""
    issue = {"severity": "error", "code": _ISSUE_CODES.get(status, "exception"), "diagnostics": text}
    return FhirResponse({"resourceType": "OperationOutcome", "issue": [issue]}, status_code=status, headers=headers)


def require_fhir_json(request: Request) -> None:
    """406 unless Accept (or `_format`) allows FHIR JSON; both clients send fhir+json or plain json."""
    wanted = request.query_params.get("_format")
    if wanted is not None:
        if wanted not in {"json", FHIR_JSON, "application/json"}:
            raise NotAcceptable(
                f"_format={wanted[:40]!r} is not served; this endpoint answers JSON only (_format=json)."
            )
        return
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        if media.strip().lower() in _ACCEPTED and "q=0" not in params.replace(" ", "").split(";"):
            return
    raise NotAcceptable(
        f"Accept {accept[:80]!r} allows no representation served here: ask for {FHIR_JSON} or application/json."
    )


def fhir_errors(handler: Handler) -> Handler:
    """Run `handler`, answering Aperture errors as OperationOutcome with the error's status."""

    @wraps(handler)
    async def run(request: Request) -> Response:
        try:
            require_fhir_json(request)
            return await handler(request)
        except ApertureError as error:
            return operation_outcome(error.status, error.message, error.headers)

    return run
