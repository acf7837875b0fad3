"""Grant types the token endpoint serves; for now SMART Backend Services (`client_credentials`).

Authlib's `ClientCredentialsGrant` authenticates the client and checks its grant type. This
subclass accepts only `private_key_jwt` (SMART Backend Services has no shared secrets) and narrows
the requested scope to the `system/` scopes the client is registered for; the token carries the
narrowed scope and the answer's `scope` says which (RFC 6749 §3.3). Asking for nothing the client
may have is `invalid_scope`.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant

from aperture.ehr import scopes
from aperture.ehr.errors import InvalidScope, wire_description


class BackendServicesGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def validate_requested_scope(self) -> None:
        requested = self.request.payload.scope or ""
        if not requested.strip():
            raise InvalidScopeError("Ask for system/ scopes, e.g. scope=system/ImagingStudy.rs")
        try:
            result = scopes.grant(requested, self.client.scope, ("system",), literal=False)
        except InvalidScope as exc:
            raise InvalidScopeError(wire_description(exc.message)) from None
        if not result.granted:
            raise InvalidScopeError(
                wire_description(
                    f"Client {self.client.client_id!r} is not registered for {' '.join(result.refused)}; "
                    f"it may ask for: {self.client.scope or '(nothing)'}"
                )
            )
        self.request.scope = str(result)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """As Authlib's, but with the narrowed scope, and without logging the token."""
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER
