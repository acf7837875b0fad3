"""FHIR answers: `application/fhir+json` bodies, and the sandbox's errors as OperationOutcome resources.

The OAuth endpoints answer errors in RFC 6749 shape; a FHIR client expects an OperationOutcome, so
the FHIR routes turn the same `EhrError`s into one, with the RFC 6750 challenge on 401. Every FHIR
answer, errors included, is `Cache-Control: private, no-store`: it is one token's view of patient
data, which no shared cache may keep or hand to another requester.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from aperture.ehr.errors import EhrError

FHIR_JSON = "application/fhir+json"
_ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                409: "conflict", 412: "multiple-matches", 415: "not-supported", 422: "processing"}  # fmt: skip


PRIVATE = {"Cache-Control": "private, no-store"}


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON

    def __init__(self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(content, status_code=status_code, headers={**PRIVATE, **(headers or {})})


def operation_outcome(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    issue = {"severity": "error", "code": _ISSUE_CODES.get(status, "exception"), "diagnostics": text}
    return FhirResponse({"resourceType": "OperationOutcome", "issue": [issue]}, status_code=status, headers=headers)


def error_outcome(error: EhrError, realm: str) -> Response:
    """`error` as an OperationOutcome; a 401 carries `WWW-Authenticate: Bearer` (RFC 6750 §3)."""
    headers = None
    if error.status == 401:
        challenge = f'Bearer realm="{realm}"'
        if error.error == "invalid_token" and error.message != error.default_message:
            challenge += ', error="invalid_token"'  # a token was sent and is no good (none sent: no error code)
        headers = {"WWW-Authenticate": challenge}
    return operation_outcome(error.status, error.message, headers)


def resource_response(resource: dict[str, Any]) -> Response:
    return FhirResponse(resource)
