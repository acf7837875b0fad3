"""The errors the EHR sandbox reports, one small tree, each named by its RFC 6749 error code.

    EhrError                     500  server_error     something on our side went wrong
    ├── InvalidRequest           400  invalid_request  a parameter or option is missing or malformed
    ├── InvalidScope             400  invalid_scope    a scope is malformed or wider than the client may have
    ├── InvalidClientMetadata    400  invalid_client_metadata  a registration is incomplete or contradictory
    ├── UnknownClient            401  invalid_client   no client is registered under that id
    ├── InvalidToken             401  invalid_token    (RFC 6750) no token, or an unknown, expired, revoked one
    ├── InsufficientScope        403  insufficient_scope  (RFC 6750) the token does not reach that resource
    ├── ResourceNotFound         404  not_found        no such FHIR resource (as far as the token may know)
    ├── ResourceConflict         409  conflict         the resource contradicts what the record holds
    ├── PreconditionFailed       412  precondition_failed  a conditional update's criteria match several resources
    └── Unprocessable            422  unprocessable    well-formed, but nothing in the record to attach it to

Inside the OAuth flows Authlib's own `OAuth2Error` classes carry these codes to the wire; code that
runs outside them (the admin CLI, registration) raises these. Either way a client sees RFC 6749 §5.2
JSON, `{"error": <code>, "error_description": <message>}`, built in one place
(`aperture.ehr.app.ehr_error`), and a person at the command line sees the message. The FHIR server
answers the same errors as OperationOutcome resources instead (`aperture.ehr.fhir.outcomes`).
"""

from __future__ import annotations


def wire_description(text: str) -> str:
    """`text` kept to the characters RFC 6749 §5.2 allows in error_description (others become '?').

    Messages quote what the caller sent (a scope, a kid), and Authlib refuses, with an exception,
    a description holding anything else, which would turn a 400 into a 500.
    """
    return "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "?" for c in text)


class EhrError(Exception):
    """Base of every error the sandbox reports."""

    status: int = 500
    error: str = "server_error"
    default_message = "Internal error in the EHR sandbox; its log has the details."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidRequest(EhrError):
    status = 400
    error = "invalid_request"
    default_message = "The request is missing a parameter or has a malformed one."


class InvalidScope(EhrError):
    status = 400
    error = "invalid_scope"
    default_message = "The requested scope is malformed or wider than the client is registered for."


class InvalidClientMetadata(EhrError):
    status = 400
    error = "invalid_client_metadata"  # RFC 7591 §3.2.2
    default_message = "The client registration is incomplete or contradictory."


class UnknownClient(EhrError):
    status = 401
    error = "invalid_client"
    default_message = "No client is registered under this id; list them with `aperture ehr clients list`."


class InvalidToken(EhrError):
    status = 401
    error = "invalid_token"  # RFC 6750 §3.1
    default_message = "Send a valid access token: Authorization: Bearer <token>."


class InsufficientScope(EhrError):
    status = 403
    error = "insufficient_scope"  # RFC 6750 §3.1
    default_message = "The access token does not allow this."


class ResourceNotFound(EhrError):
    status = 404
    error = "not_found"
    default_message = "No such resource."


class ResourceConflict(EhrError):
    status = 409
    error = "conflict"
    default_message = "The resource contradicts what the record holds."


class PreconditionFailed(EhrError):
    status = 412
    error = "precondition_failed"  # FHIR R4 §3.1.0.4.3: a conditional update matching several resources
    default_message = "The conditional update's criteria match more than one resource."


class Unprocessable(EhrError):
    status = 422
    error = "unprocessable"
    default_message = "The resource is well-formed, but the record has nothing to attach it to."
