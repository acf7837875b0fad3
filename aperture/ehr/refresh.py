"""The refresh_token grant, on Authlib's `RefreshTokenGrant`.

Refresh tokens are issued only for `offline_access` or `online_access` (SMART App Launch 2.2).
Each use rotates it: the new access token keeps the patient and user of the original grant, a new
refresh token replaces the old one, and the old one is revoked. The requested scope may narrow, never
widen (Authlib checks it is a subset). An `online_access` refresh token works only while the user's
sign-in lasts. Tokens from a refresh stay in the lineage of their authorization code, so a reused
code revokes them too.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.grants import RefreshTokenGrant
from sqlalchemy import Engine

from aperture.ehr.sessions import session_alive
from aperture.ehr.tokens import Grantee, RefreshToken, find_refresh_token, revoke_refresh_token


class RotatingRefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def __init__(self, request: OAuth2Request, server: Any) -> None:
        super().__init__(request, server)
        self.engine: Engine = server.engine

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        token = find_refresh_token(self.engine, refresh_token)
        if token is None or token.is_revoked() or token.is_expired():
            return None
        if token.grantee.session_hash and not session_alive(self.engine, token.grantee.session_hash):
            return None  # online_access: the user has signed out or the sign-in expired
        return token

    def authenticate_user(self, refresh_token: RefreshToken) -> Grantee:
        scope = self.request.payload.scope or refresh_token.scope
        grantee = refresh_token.grantee
        return Grantee(grantee.account, grantee.user, grantee.patient, scope, grantee.session_hash)

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        revoke_refresh_token(self.engine, refresh_token.token_hash)
