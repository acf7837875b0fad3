"""The refresh_token grant, on Authlib's `RefreshTokenGrant`.

Refresh tokens are issued only for `offline_access` or `online_access` (SMART App Launch 2.2).
Each use rotates it: the new access token keeps the patient and user of the original grant, a new
refresh token replaces the old one, and the old one is spent in the same statement that checks it
is still live, so two concurrent uses cannot both succeed. The requested scope may narrow, never
widen (Authlib checks it is a subset), and narrows only the new access token: the new refresh
token keeps the scope of the grant (RFC 6749 §6), so a narrow refresh without offline_access
neither loses the grant nor shrinks it. An `online_access` refresh token works only while the
user's sign-in lasts.

A spent or revoked refresh token presented again means it was copied: the legitimate client or
an attacker holds the live one, and the sandbox cannot tell which. So reuse revokes the whole grant,
every refresh and access token descending from the same authorization code (RFC 9700 §4.14.2), as a
reused code does.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, OAuth2Request
from authlib.oauth2.rfc6749.grants import RefreshTokenGrant
from sqlalchemy import Engine

from aperture.ehr.sessions import session_alive
from aperture.ehr.tokens import Grantee, RefreshToken, find_refresh_token, revoke_grant, spend_refresh_token

log = logging.getLogger("aperture.ehr")


class RotatingRefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def __init__(self, request: OAuth2Request, server: Any) -> None:
        super().__init__(request, server)
        self.engine: Engine = server.engine

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        token = find_refresh_token(self.engine, refresh_token)
        if token is None:
            return None
        if token.is_revoked():
            if token.client_id == self.request.client.get_client_id():
                self._reused(token)  # only its own client's replay revokes: another client gets no such power
            return None
        if token.is_expired():
            return None
        if token.grantee.session_hash and not session_alive(self.engine, token.grantee.session_hash):
            return None  # online_access: the user has signed out or the sign-in expired
        return token

    def authenticate_user(self, refresh_token: RefreshToken) -> Grantee:
        """The grant as it was authorized, scope included: what the new refresh token carries."""
        return refresh_token.grantee

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Spend the presented refresh token before issuing; if someone spent it first, that is reuse."""
        refresh_token: RefreshToken = self.request.refresh_token
        if not spend_refresh_token(self.engine, refresh_token.token_hash):
            self._reused(refresh_token)
            raise InvalidGrantError("This refresh token was already used; its grant is revoked.")
        return super().create_token_response()  # type: ignore[no-any-return]

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Nothing left to do: `create_token_response` spent it before issuing."""

    def _reused(self, token: RefreshToken) -> None:
        log.warning("a spent refresh token of client %s was presented again: its grant is revoked", token.client_id)
        revoke_grant(self.engine, token.grant_id)
