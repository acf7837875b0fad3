"""The authorization code grant of the browser launch, on Authlib's `AuthorizationCodeGrant` and PKCE.

What is added to Authlib:

- PKCE is required of every client, public or confidential (SMART App Launch 2.2), and only S256:
  a request without `code_challenge`, or with `plain` or no `code_challenge_method`, is refused;
- a code is stored as its SHA-256 hash with what the user granted on the consent screen (the scope,
  the patient, the FHIR reference they act as), lives two minutes, and is used once: the first
  exchange marks it used in the same statement that checks it, and a second exchange is refused
  and revokes every token descending from it (RFC 6749 §4.1.2, OAuth 2.0 Security BCP);
- public clients authenticate with nothing but their `client_id` (`none`), confidential ones with
  HTTP Basic (`client_secret_basic`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError, InvalidScopeError, OAuth2Request
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import Engine, insert, select, update

from aperture.ehr.clients import Client
from aperture.ehr.store import authorization_codes, stored_hash
from aperture.ehr.tokens import Grantee, revoke_grant

log = logging.getLogger("aperture.ehr")

CODE_LIFETIME = 120  # seconds; RFC 6749 recommends at most ten minutes


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):  # type: ignore[misc]
    code_hash: str
    client_id: str
    redirect_uri: str | None
    grantee: Grantee
    code_challenge: str
    code_challenge_method: str
    nonce: str | None
    auth_time: int

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.grantee.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class S256Only(CodeChallenge):  # type: ignore[misc]
    """Authlib's PKCE, required for every authorization request and limited to S256."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: AuthorizationCodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge and code_challenge_method=S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 (plain is not accepted).")
        super().validate_code_challenge(grant, redirect_uri)


class BrowserLaunchGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "none"]

    def __init__(self, request: OAuth2Request, server: Any) -> None:
        super().__init__(request, server)
        self.engine: Engine = server.engine

    def validate_requested_scope(self) -> None:
        """Authlib narrows to the registration (`Client.get_allowed_scope`); nothing left is invalid_scope."""
        client: Client = self.request.client
        if not client.get_allowed_scope(self.request.payload.scope or ""):
            raise InvalidScopeError(
                f"None of the requested scopes is registered for this client; it may ask for: {client.scope}"
            )

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        grantee: Grantee = request.user
        data = request.payload.data
        with self.engine.begin() as conn:
            conn.execute(
                insert(authorization_codes).values(
                    code_hash=stored_hash(code),
                    client_id=request.client.client_id,
                    redirect_uri=request.payload.redirect_uri,
                    scope=grantee.scope,
                    account=grantee.account,
                    user=grantee.user,
                    patient=grantee.patient,
                    session_hash=grantee.session_hash,
                    nonce=data.get("nonce"),
                    code_challenge=data["code_challenge"],
                    code_challenge_method=data["code_challenge_method"],
                    auth_time=grantee.auth_time,
                    expires_at=int(time.time()) + CODE_LIFETIME,
                )  # fmt: skip
            )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """The code, claimed for this exchange; None if unknown, expired, another client's, or reused."""
        code_hash = stored_hash(code)
        with self.engine.begin() as conn:
            row = (
                conn.execute(select(authorization_codes).where(authorization_codes.c.code_hash == code_hash))
                .mappings()
                .first()
            )
            if row is None or row["client_id"] != client.client_id:
                return None
            claimed = conn.execute(
                update(authorization_codes)
                .where(authorization_codes.c.code_hash == code_hash, authorization_codes.c.used_at.is_(None))
                .values(used_at=int(time.time()))
            ).rowcount
        if not claimed:
            log.warning("authorization code presented twice by client %s: its tokens are revoked", client.client_id)
            revoke_grant(self.engine, code_hash)
            return None
        if row["expires_at"] < time.time():
            return None
        grantee = Grantee(
            row["account"], row["user"], row["patient"], row["scope"], row["session_hash"], row["auth_time"]
        )
        return AuthorizationCode(
            code_hash, row["client_id"], row["redirect_uri"], grantee, row["code_challenge"],
            row["code_challenge_method"], row["nonce"], row["auth_time"],
        )  # fmt: skip

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Kept, marked used: a second exchange must still be recognised as reuse."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Grantee:
        return authorization_code.grantee


def nonce_used(engine: Engine, client_id: str, nonce: str) -> bool:
    """Whether `nonce` was already sent by this client (OpenID Connect replay check)."""
    with engine.connect() as conn:
        found = conn.execute(
            select(authorization_codes.c.code_hash).where(
                authorization_codes.c.client_id == client_id, authorization_codes.c.nonce == nonce
            )
        ).first()
    return found is not None
