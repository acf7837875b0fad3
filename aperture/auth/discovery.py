"""Where the EHR introspects tokens: `introspection_endpoint` of `{issuer}/.well-known/smart-configuration`.

SMART App Launch 2.2 §Discovery publishes the metadata at the FHIR base (the issuer); the
`introspection_endpoint` member is the one this server needs. Failures are 503 (the EHR may be
starting), never a guess at a conventional path.
"""

from __future__ import annotations

import logging

import httpx

from aperture.errors import AuthorizationServerUnavailable

log = logging.getLogger("aperture.auth")


async def find_introspection_endpoint(client: httpx.AsyncClient, issuer: str, *, retry_after: int = 5) -> str:
    """The EHR's introspection endpoint, from its SMART configuration document."""
    url = f"{issuer.rstrip('/')}/.well-known/smart-configuration"
    try:
        response = await client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        log.warning("SMART discovery at %s failed: %s", url, type(exc).__name__)
        raise AuthorizationServerUnavailable(retry_after=retry_after) from None
    try:
        document = response.json() if response.status_code == 200 else None
    except ValueError:
        document = None
    endpoint = document.get("introspection_endpoint") if isinstance(document, dict) else None
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        log.warning("SMART discovery at %s gave no introspection_endpoint (status %d)", url, response.status_code)
        raise AuthorizationServerUnavailable(retry_after=retry_after)
    return endpoint
