"""OpenID Connect id_tokens for `openid fhirUser`, on Authlib's `OpenIDCode` extension.

The id_token is a JWT signed with the sandbox's own key (`aperture.ehr.keys`, published at
`jwks_uri`) with the key's algorithm, RS256 (OpenID Connect's default); discovery says so in
`id_token_signing_alg_values_supported`. Its `sub` is the user's login (stable across patients);
`fhirUser` (when that scope is granted) is the absolute URL of the FHIR resource the user acts
as: for a parent acting for a child, the RelatedPerson. `nonce` is checked for replay per client.
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey
from sqlalchemy import Engine

from aperture.ehr.clients import Client
from aperture.ehr.codes import nonce_used
from aperture.ehr.config import EhrConfig
from aperture.ehr.keys import SIGNING_ALG
from aperture.ehr.tokens import Grantee

ID_TOKEN_LIFETIME = 3600


class SandboxIdTokens(OpenIDCode):  # type: ignore[misc]
    def __init__(self, engine: Engine, config: EhrConfig, key: RSAKey) -> None:
        super().__init__(require_nonce=False)
        self.engine = engine
        self.config = config
        self.key = key

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.key

    def get_client_algorithm(self, client: Client) -> str:
        return SIGNING_ALG

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": SIGNING_ALG, "kid": str(self.key.kid), "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.config.issuer, "aud": [client.client_id], "exp": int(time.time()) + ID_TOKEN_LIFETIME}

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return nonce_used(self.engine, request.payload.client_id, nonce)

    def generate_user_info(self, user: Grantee, scope: str) -> UserInfo:
        info = UserInfo(sub=user.account)
        if "fhirUser" in scope.split():
            info["fhirUser"] = f"{self.config.fhir_base}/{user.user}"
        return info
