"""The errors Aperture reports to people, one small tree.

    ApertureError                  500  something on our side went wrong
    ├── InvalidRequest             400  the request cannot be understood as sent
    │   ├── InvalidQuery           400  a QIDO-RS query key or value is wrong
    │   ├── MalformedMultipart     400  a multipart body cannot be parsed
    │   └── InvalidUID             400  a UID in the path is not a valid DICOM UID
    ├── Unauthorized               401  no usable access token
    │   └── InvalidToken           401  the token is unknown, expired, revoked, foreign or not for us
    ├── Forbidden                  403  the token does not allow this
    │   └── InsufficientScope      403  the token's scopes do not cover the request
    ├── NotFound                   404  no such study / series / instance / frame
    ├── MethodNotAllowed           405  e.g. DELETE while deletion is disabled
    ├── NotAcceptable              406  no representation matches Accept (names what is available)
    ├── PayloadTooLarge            413  the upload exceeds the configured limit
    ├── UnsupportedMediaType       415  STOW-RS body is not multipart/related application/dicom
    ├── InvalidPixelData           422  a stored instance's pixel data contradicts its Image Pixel attributes
    ├── BadGateway                 502  another node this request needed (a transmit's receiver) did not answer
    ├── AuthorizationServerUnavailable 503  the EHR cannot answer whether the token is good
    └── InsufficientStorage        507  the disk is full: nothing from the request was stored

Each class carries its HTTP status and a default message that says what to do; the HTTP layer
turns them into a JSON body in exactly one place (`aperture.server.handlers`). Code below the
HTTP layer raises these and never builds responses itself. An error whose answer needs headers
(a `WWW-Authenticate` challenge, a `Retry-After`) carries them in `headers`; the same place sends them.
"""

from __future__ import annotations

from collections.abc import Mapping


class ApertureError(Exception):
    """Base of every error Aperture reports to a client."""

    status: int = 500
    default_message = "Internal error in Aperture; the server log has the details."
    default_headers: Mapping[str, str] = {}

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        self.message = message or self.default_message
        self.headers: dict[str, str] = {**self.default_headers, **(headers or {})}
        super().__init__(self.message)


class InvalidRequest(ApertureError):
    status = 400
    default_message = "The request is malformed."


class InvalidQuery(InvalidRequest):
    default_message = "The query is not valid QIDO-RS (PS3.18 §8.3.4)."


class MalformedMultipart(InvalidRequest):
    default_message = "The body is not a well-formed multipart/related message (RFC 2387)."


class InvalidUID(InvalidRequest):
    default_message = "A UID must be 1-64 characters: digits and dots (PS3.5 §9.1); letters, '-' and '_' are tolerated."


class Unauthorized(ApertureError):
    status = 401
    default_message = "This request needs an access token (Authorization: Bearer ...)."


class InvalidToken(Unauthorized):
    """RFC 6750 §3.1 `invalid_token`: expired, revoked, malformed, from another issuer or for another audience.

    One message for all of them: the client learns that it needs a new token, not why (as RFC 7662
    §2.2 keeps the reason from the resource server's caller too).
    """

    default_message = "The access token is not valid here (expired, revoked or not issued for this server)."
    default_headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Forbidden(ApertureError):
    status = 403
    default_message = "The access token does not allow this request."


class InsufficientScope(Forbidden):
    """RFC 6750 §3.1 `insufficient_scope`: a good token whose scopes do not cover the request."""

    default_message = "The access token's scopes do not cover this request (e.g. patient/ImagingStudy.rs)."
    default_headers = {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}


class NotFound(ApertureError):
    status = 404
    default_message = "No such resource."


class MethodNotAllowed(ApertureError):
    status = 405
    default_message = "This method is not allowed on this resource."


class NotAcceptable(ApertureError):
    status = 406
    default_message = "No representation of this resource matches the Accept header."


class PayloadTooLarge(ApertureError):
    status = 413
    default_message = "The upload is larger than the server accepts (store.max_upload_bytes)."


class AuthorizationServerUnavailable(ApertureError):
    """The EHR did not answer the introspection (down, timing out, 5xx, or an answer that is not RFC 7662).

    503, not 401: the token may be fine, and the client should retry the same request later
    (RFC 9110 §15.6.4 with `Retry-After` in seconds). Nothing is served meanwhile (fail closed).
    """

    status = 503
    default_message = "The authorization server cannot be reached to check the access token; try again shortly."

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class BadGateway(ApertureError):
    """Another node the request needed could not be reached: the receiver of `POST /transmit` refused the
    connection, timed out or acknowledged nothing. The request was fine and may work later."""

    status = 502
    default_message = "The receiving node could not be reached; nothing was sent. Try again later."


class InsufficientStorage(ApertureError):
    status = 507
    default_message = "The server's disk is full; nothing from this request was stored. Try again later."


class UnsupportedMediaType(ApertureError):
    status = 415
    default_message = 'Send STOW-RS bodies as multipart/related; type="application/dicom".'


class InvalidPixelData(ApertureError):
    """The request is fine; the stored instance is not: its pixel data cannot be read as its header describes.

    Not a 406 (nothing else the client could accept would help, short of the stored bytes) and not
    a 500 (nothing on the server failed): 422, "the server understands the request but cannot
    process what it is about". The message names what does not fit.
    """

    status = 422
    default_message = (
        "The stored instance's pixel data does not match its Image Pixel attributes; "
        "retrieve it with transfer-syntax=* to inspect it."
    )
