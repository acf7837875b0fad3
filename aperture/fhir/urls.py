"""This server's public FHIR base and WADO-RS base, as the client sees them.

The same rule as DICOMweb's URLs (aperture.dicomweb.urls): `server.public_url` when set, else the
scheme, host and path prefix the request came in on (a trusted proxy's forwarded values included).
"""

from __future__ import annotations

from starlette.requests import Request

MOUNT = "/fhir"


def server_root(request: Request) -> str:
    configured: str = request.app.state.config.server.public_url
    if configured:
        return configured.rstrip("/")
    root = str(request.scope.get("root_path", "")).removesuffix(MOUNT)  # proxy prefix, without this mount
    return f"{request.url.scheme}://{request.url.netloc}{root}"


def fhir_base(request: Request) -> str:
    return server_root(request) + MOUNT


def wado_base(request: Request) -> str:
    """The WADO-RS base an Endpoint's `address` names: `/studies/{uid}` is appended to it."""
    return server_root(request) + "/dicom-web"
