"""The errors Aperture reports to people, one small tree.

    ApertureError                  500  something on our side went wrong
    ├── InvalidRequest             400  the request cannot be understood as sent
    │   ├── InvalidQuery           400  a QIDO-RS query key or value is wrong
    │   ├── MalformedMultipart     400  a multipart body cannot be parsed
    │   └── InvalidUID             400  a UID in the path is not a valid DICOM UID
    ├── Unauthorized               401  no usable access token
    ├── Forbidden                  403  the token does not allow this
    ├── NotFound                   404  no such study / series / instance / frame
    ├── MethodNotAllowed           405  e.g. DELETE while deletion is disabled
    ├── NotAcceptable              406  no representation matches Accept (names what is available)
    ├── PayloadTooLarge            413  the upload exceeds the configured limit
    ├── UnsupportedMediaType       415  STOW-RS body is not multipart/related application/dicom
    ├── InvalidPixelData           422  a stored instance's pixel data contradicts its Image Pixel attributes
    └── InsufficientStorage        507  the disk is full: nothing from the request was stored

Each class carries its HTTP status and a default message that says what to do; the HTTP layer
turns them into a JSON body in exactly one place (`aperture.server.handlers`). Code below the
HTTP layer raises these and never builds responses itself.
"""

from __future__ import annotations


class ApertureError(Exception):
    """Base of every error Aperture reports to a client."""

    status: int = 500
    default_message = "Internal error in Aperture; the server log has the details."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
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


class Forbidden(ApertureError):
    status = 403
    default_message = "The access token does not allow this request."


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
