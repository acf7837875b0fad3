"""Validators and compression for DICOMweb answers: strong ETags, If-None-Match, gzip for JSON.

ETags are derived from content: each stored file's SHA-256 (recorded at ingest), plus whatever
else shapes the representation (transfer syntax, frame numbers, rendering parameters, the public
base URL written into metadata). The same request therefore gets the same ETag and, because
multipart boundaries are derived from it too, the same bytes, which is what caches and byte-range
resumption need. JSON is gzip-compressed when the client accepts it; binary DICOM is not (it is
either compressed already or not worth the CPU).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

_FORMAT = b"aperture-representation-1"  # bump when the bytes Aperture writes for the same data change
_GZIP_MIN_BYTES = 1024


def etag(*parts: str | int | None) -> str:
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


def json_response(request: Request, body: bytes, *, tag: str | None = None) -> Response:
    """application/dicom+json, gzip-compressed when accepted; the gzip variant has its own ETag."""
    headers = {"Vary": "Accept-Encoding"}
    if len(body) >= _GZIP_MIN_BYTES and "gzip" in request.headers.get("accept-encoding", "").lower():
        body = gzip.compress(body, compresslevel=5 if len(body) < (1 << 20) else 1)
        headers["Content-Encoding"] = "gzip"
        if tag is not None:
            tag = f'"{tag.strip(chr(34))}-gzip"'
    if tag is not None:
        headers["ETag"] = tag
    return Response(body, media_type="application/dicom+json", headers=headers)
