"""Validators and compression for DICOMweb answers: strong ETags, If-None-Match, gzip for JSON.

ETags are derived from content: each stored file's SHA-256 (recorded at ingest), plus whatever
else shapes the representation (transfer syntax, frame numbers, rendering parameters, the public
base URL written into metadata). The same request therefore gets the same ETag and, because
multipart boundaries are derived from it too, the same bytes, which is what caches and byte-range
resumption need. JSON and XML are gzip-compressed when the client accepts it; binary DICOM is not (it is
either compressed already or not worth the CPU).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

_FORMAT = b"aperture-representation-2"  # bump when the bytes Aperture writes for the same data change
_GZIP_MIN_BYTES = 1024


def etag(*parts: object) -> str:
    """A strong entity tag (quoted) over the given representation-defining parts."""
    digest = hashlib.blake2b(_FORMAT, digest_size=16)
    for part in parts:
        digest.update(b"\x00" + str(part).encode("utf-8", "surrogateescape"))
    return f'"{digest.hexdigest()}"'


def etag_of_many(label: str, validators: Iterable[str], *parts: str | int | None) -> str:
    digest = hashlib.blake2b(label.encode(), digest_size=16)
    for validator in validators:
        digest.update(validator.encode("ascii", "replace"))
    return etag(digest.hexdigest(), *parts)


def boundary_for(tag: str) -> str:
    """A multipart boundary fixed by the representation, so repeated answers are byte-identical."""
    return "aperture-" + tag.strip('"')


def not_modified_tag(header: str, tag: str) -> bool:
    """Whether an If-None-Match header value names `tag` (or its gzip variant, or `*`)."""
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    bare = tag.strip('"')
    return "*" in candidates or tag in candidates or f'"{bare}-gzip"' in candidates


def not_modified(request: Request, tag: str) -> Response | None:
    """A 304 when If-None-Match names `tag`, else None."""
    header = request.headers.get("if-none-match")
    if header and not_modified_tag(header, tag):
        return Response(status_code=304, headers={"ETag": tag})
    return None


def json_response(
    request: Request, body: bytes, *, tag: str | None = None, media_type: str = "application/dicom+json"
) -> Response:
    """application/dicom+json (or `media_type`, DICOM XML), gzip-compressed when accepted.

    The gzip variant has its own ETag. `Vary: Accept`: metadata and search results are JSON or XML by
    the Accept header (RFC 9110 §12.5.5), so a cache must not give one to a client asking for the other.
    """
    headers = {"Vary": "Accept, Accept-Encoding"}
    if len(body) >= _GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", "").lower():
        body = gzip.compress(body, compresslevel=5 if len(body) < (1 << 20) else 1)
        headers["Content-Encoding"] = "gzip"
        if tag is not None:
            tag = f'"{tag.strip(chr(34))}-gzip"'
    if tag is not None:
        headers["ETag"] = tag
    return Response(body, media_type=media_type, headers=headers)


def with_range(request: Request, body: bytes | memoryview, headers: dict[str, str]) -> Response:
    """The whole body (200), or the one byte range the request asks for (206), or 416.

    Cornerstone loads HTJ2K progressively by asking for a prefix of a frame and then the rest
    (`Range: bytes=0-65535`, then `bytes=65536-`); this works because the answer for a given ETag
    is always the same bytes. Several ranges in one request are answered with the whole body.
    """
    headers = {**headers, "Accept-Ranges": "bytes"}
    spec = request.headers.get("range", "")
    if_range = request.headers.get("if-range")
    current = headers.get("ETag") or headers.get("etag")
    if not spec or (if_range is not None and if_range != current):
        return Response(body, headers=headers)
    span = _one_range(spec, len(body))
    if span is None:
        return Response(body, headers=headers)
    if span == (-1, -1):
        headers["Content-Range"] = f"bytes */{len(body)}"
        return Response(status_code=416, headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
    return Response(body[start : end + 1], status_code=206, headers=headers)


def _one_range(spec: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range; None to ignore it; (-1, -1) if unsatisfiable."""
    unit, _, ranges = spec.partition("=")
    if unit.strip().lower() != "bytes" or "," in ranges:
        return None
    first, sep, last = ranges.strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                return (-1, -1)
            return (max(0, size - length), size - 1)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return (-1, -1)
    return (start, min(end, size - 1))
