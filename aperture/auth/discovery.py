"""The EHR's SMART configuration (`{issuer}/.well-known/smart-configuration`) and what this server reads of it.

SMART App Launch 2.2 §Discovery publishes the metadata at the FHIR base (the issuer). This server
needs two members: `introspection_endpoint` (to check the tokens clients bring) and
`token_endpoint` (to get its own Backend Services token, `aperture.auth.backend`); and it echoes
the whole document at its own `/fhir/.well-known/smart-configuration` (SMART Imaging Access: the
imaging FHIR server points apps at the EHR's authorization server). Failures are 503 (the EHR may
be starting), never a guess at a conventional path; what went wrong is logged, and the error
keeps its default message, since a client of this server may see it.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from aperture.errors import AuthorizationServerUnavailable

log = logging.getLogger("aperture.auth")


async def fetch_smart_configuration(client: httpx.AsyncClient, issuer: str, *, retry_after: int = 5) -> dict[str, Any]:
    """The EHR's SMART configuration document, or AuthorizationServerUnavailable."""
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
    if not isinstance(document, dict):
        log.warning("SMART discovery at %s gave no JSON object (status %d)", url, response.status_code)
        raise AuthorizationServerUnavailable(retry_after=retry_after)
    return document


async def find_endpoint(client: httpx.AsyncClient, issuer: str, member: str, *, retry_after: int = 5) -> str:
    """The http(s) URL that `member` of the EHR's SMART configuration document names."""
    document = await fetch_smart_configuration(client, issuer, retry_after=retry_after)
    endpoint = document.get(member)
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        log.warning("SMART discovery at %s gave no %s", issuer, member)
        raise AuthorizationServerUnavailable(retry_after=retry_after)
    return endpoint


async def find_introspection_endpoint(client: httpx.AsyncClient, issuer: str, *, retry_after: int = 5) -> str:
    """The EHR's introspection endpoint, from its SMART configuration document."""
    return await find_endpoint(client, issuer, "introspection_endpoint", retry_after=retry_after)


async def find_token_endpoint(client: httpx.AsyncClient, issuer: str, *, retry_after: int = 5) -> str:
    """The EHR's token endpoint, from its SMART configuration document."""
    return await find_endpoint(client, issuer, "token_endpoint", retry_after=retry_after)
