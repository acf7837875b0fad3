"""RFC 7662 token introspection and RFC 7009 revocation, on Authlib's endpoints.

Introspection requires client authentication (HTTP Basic with a confidential client's secret), and
only clients registered as resource servers (`--introspect`) learn anything: for any other client,
or a token that is unknown, expired or revoked, the answer is just `{"active": false}` (RFC 7662
§2.2). Only access tokens are introspected: a refresh token is never sent to a resource server, so
it too is `active: false` here. An active answer carries the SMART 2.2 fields: `scope`, `client_id`, `exp`, plus `iat`,
`iss`, `sub`, `aud`, `token_type`, and the launch context (`patient`) and `fhirUser` when the token
has them, and, for a token that may read imaging, the EHR's policy for it as RFC 9396
`authorization_details` (`aperture.ehr.policy`).

Revocation (RFC 7009) takes access and refresh tokens. The client authenticates as at the token
endpoint: HTTP Basic, a client assertion, or, for a public client, its `client_id` in the body
alone (§2.1). `token_type_hint` says which kind to look up first; the other is tried next. A client
revokes only its own tokens: another client's token, like an unknown one, is answered 200 and left
alone (§2.2), so the answer tells nothing about tokens the caller does not hold. Revoking a refresh
token revokes its whole grant, every refresh and access token descending from the same
authorization; revoking an access token revokes only it. Afterwards introspection says
`active: false`.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlalchemy import Engine

from aperture.ehr.clients import Client
from aperture.ehr.config import EhrConfig
from aperture.ehr.people import load_directory
from aperture.ehr.policy import details_for_token
from aperture.ehr.tokens import AccessToken, RefreshToken, find_refresh_token, find_token, revoke_grant, revoke_token


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic"]

    def __init__(self, engine: Engine, config: EhrConfig) -> None:
        super().__init__()
        self.engine = engine
        self.config = config

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken | None:
        return find_token(self.engine, token_string)

    def check_permission(self, token: AccessToken, client: Client, request: OAuth2Request) -> bool:
        return client.introspect

    def introspect_token(self, token: AccessToken) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "active": True,
            "scope": token.scope,
            "client_id": token.client_id,
            "exp": token.expires_at,
            "iat": token.issued_at,
            "iss": self.config.issuer,
            "sub": token.user or token.client_id,
            "aud": list(token.audience),
            "token_type": "Bearer",
        }
        if token.patient is not None:
            answer["patient"] = token.patient
        if token.user is not None:
            answer["fhirUser"] = f"{self.config.fhir_base}/{token.user}"
        details = details_for_token(
            self.engine, self.config, load_directory(),
            scope=token.scope, client_id=token.client_id, patient=token.patient, user=token.user,
        )  # fmt: skip
        if details and self.config.authorization_details:
            answer["authorization_details"] = details
        return answer


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]  # none: public clients only

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken | RefreshToken | None:
        lookups = [find_token, find_refresh_token]
        if token_type_hint == "refresh_token":
            lookups.reverse()
        for lookup in lookups:
            token = lookup(self.engine, token_string)
            if token is not None:
                return token
        return None

    def authenticate_token(self, request: OAuth2Request, client: Client) -> AccessToken | RefreshToken | None:
        """The token to revoke: None for an unknown one and for another client's, both answered 200."""
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token is None or not token.check_client(client):
            return None
        return token

    def revoke_token(self, token: AccessToken | RefreshToken, request: OAuth2Request) -> None:
        if isinstance(token, RefreshToken):
            revoke_grant(self.engine, token.grant_id)
        else:
            revoke_token(self.engine, token)
