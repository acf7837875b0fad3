"""Tokens without the browser flow, for automated tests and app developers (as the SMART launcher offers).

`aperture ehr token` calls `mint_token`: it issues a real token, stored like any other, so
introspection accepts it and revocation ends it. It skips only the user's sign-in and consent,
never the rules: the scope must be covered by the client's registration (refused scopes are named,
not silently dropped), `patient/` scopes need a patient, and backend clients get no launch context.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine

from aperture.ehr import scopes
from aperture.ehr.clients import get_client
from aperture.ehr.config import EhrConfig
from aperture.ehr.errors import InvalidRequest, InvalidScope, UnknownClient
from aperture.ehr.policy import attach_details
from aperture.ehr.tokens import new_token_response, store_token

_USER = re.compile(r"(Patient|Practitioner|PractitionerRole|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}")
_PATIENT = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # a FHIR logical id


def mint_token(
    engine: Engine,
    config: EhrConfig,
    *,
    client_id: str,
    scope: str,
    patient: str | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Issue and store a token for `client_id`; returns the RFC 6749 token response (with `patient`)."""
    client = get_client(engine, client_id)
    if client is None:
        raise UnknownClient(f"No client {client_id!r} is registered; list them with `aperture ehr clients list`.")
    if client.kind == "backend" and (patient or user):
        raise InvalidRequest("Backend clients act for no user and no patient: drop --patient and --user.")
    if patient is not None and not _PATIENT.fullmatch(patient):
        raise InvalidRequest(f"--patient takes a FHIR logical id (letters, digits, '-', '.'), not {patient!r}.")
    if user is not None and not _USER.fullmatch(user):
        raise InvalidRequest(f"--user takes a FHIR reference such as Practitioner/123 or Patient/123, not {user!r}.")
    backend = client.kind == "backend"
    result = scopes.grant(scope, client.scope, ("system",) if backend else scopes.CONTEXTS, literal=not backend)
    if result.refused or not result.granted:
        raise InvalidScope(
            f"Client {client_id!r} is not registered for {' '.join(result.refused) or 'an empty scope'}; "
            f"it may ask for: {client.scope or '(nothing)'}"
        )
    if patient is None and any(s.startswith("patient/") for s in result.granted):
        raise InvalidRequest("patient/ scopes need a patient: add --patient ID.")
    response = new_token_response(str(result), config.access_token_lifetime)
    attach_details(engine, config, response, client_id=client.client_id, patient=patient, user=user)
    store_token(engine, response, client_id=client.client_id, audience=config.audiences, patient=patient, user=user)
    return response
