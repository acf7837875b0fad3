"""URLs Aperture writes and UIDs it reads from paths.

Every URL in a response (RetrieveURL, BulkDataURI) is built from `public_base`: the configured
`server.public_url` when set, else the URL the request came in on (scheme, host, root path).
Behind a trusted proxy, `aperture.server.proxy` has already put the forwarded scheme, host and path
prefix into the scope, so "the URL the request came in on" is the one the client used.
Stored JSON carries `BASE_PLACEHOLDER` in their place; `with_base` swaps it in one pass.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from aperture.dicom.dicomjson import BASE_PLACEHOLDER
from aperture.dicom.identifiers import uid_problem
from aperture.errors import InvalidUID

_PLACEHOLDER = BASE_PLACEHOLDER.encode("ascii")
_PLAIN_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([0-9]{1,5}))?")  # what request.url keeps as is


def public_base(request: Request) -> str:
    """The DICOMweb base URL as the client sees it, without a trailing slash.

    Every multipart part names its resource with it (Content-Location), so it is made from the
    scope directly when the Host header is a plain host[:port] (about 1 µs); `request.url`, which
    builds and parses the whole URL (about 6 µs), only answers the unusual rest the same way as before.
    """
    configured: str | None = request.app.state.config.server.public_url
    if configured:  # the whole external base, any proxy prefix included: X-Forwarded-* and Forwarded are not consulted
        return configured.rstrip("/") + "/dicom-web"
    scope = request.scope
    root = scope.get("root_path", "")  # proxy prefix (if any) + the /dicom-web mount
    scheme = scope.get("scheme")
    if scheme in ("http", "https"):
        for name, value in scope["headers"]:
            if name == b"host":
                plain = _PLAIN_HOST.fullmatch(value)
                if plain and (plain[1] is None or int(plain[1]) <= 65535):
                    return f"{scheme}://{value.decode('ascii')}{root}"
                break
    return f"{request.url.scheme}://{request.url.netloc}{root}"


def with_base(body: bytes, request: Request) -> bytes:
    return body.replace(_PLACEHOLDER, public_base(request).encode("utf-8"))


def path_uid(request: Request, name: str) -> str:
    """A UID from the URL path, validated before anything uses it (400 otherwise)."""
    value: str = request.path_params[name]
    problem = uid_problem(value)
    if problem:
        label = {"study": "Study", "series": "Series", "instance": "SOP Instance"}.get(name, name)
        raise InvalidUID(f"{label} Instance UID {value[:80]!r} in the URL is not valid: {problem}.")
    return value


def optional_uid(request: Request, name: str) -> str | None:
    return path_uid(request, name) if name in request.path_params else None
