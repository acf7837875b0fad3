"""`private_key_jwt`: backend clients authenticate with a JWT they sign (RFC 7523 §2.2, SMART Backend Services).

Authlib's `JWTBearerClientAssertion` does the RFC 7523 work (find the client by `sub`, check
`iss == sub`, `aud`, `exp`, `jti`) with joserfc. This subclass adds what SMART Backend Services
asks on top, each refusal an RFC 6749 `invalid_client`:

- only RS384 and ES384 signatures (joserfc refuses `none` and HS* because they are not listed; it
  also treats RS384/ES384 as "not recommended" unless listed, which is why the decode is overridden);
- the header names its key by `kid`, found in the client's registered JWK Set, inline or fetched
  from its `jwks_uri` (refetched once when the kid is new, for key rotation); a `jku` header must
  equal the registered `jwks_uri`, so the sandbox never fetches a URL a caller chose;
- `aud` is exactly the token endpoint URL;
- `exp` is at most five minutes ahead, and not past (a small leeway for clock skew);
- each `jti` is accepted once per client while its assertion could still be valid.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, Key, KeySet
from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from aperture.ehr.clients import Client, check_public_jwks
from aperture.ehr.errors import InvalidClientMetadata, wire_description
from aperture.ehr.store import assertion_ids

ALGORITHMS = ["RS384", "ES384"]
MAX_LIFETIME = 300  # seconds an assertion may be valid for: SMART Backend Services says five minutes
CLOCK_SKEW = 10  # seconds of leeway on exp (and on the five-minute horizon)
JWKS_CACHE_SECONDS = 300
JWKS_REFRESH_SECONDS = 5  # an unknown kid refetches at most this often, so callers cannot make us hammer a URI


def invalid_client(description: str) -> InvalidClientError:
    """An RFC 6749 invalid_client whose description is kept to the characters §5.2 allows."""
    return InvalidClientError(description=wire_description(description))


class PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, engine: Engine, token_endpoint: str, jwks: RemoteJWKS) -> None:
        super().__init__(validate_jti=True, leeway=CLOCK_SKEW)
        self.engine = engine
        self.token_endpoint = token_endpoint
        self.remote_jwks = jwks

    def get_audiences(self) -> list[str]:
        return [self.token_endpoint]

    def resolve_client_public_key(self, client: Client) -> Callable[[GuestProtocol], Key]:
        """A key resolver joserfc calls with the assertion's header (Authlib passes only the client)."""

        def resolve(token: GuestProtocol) -> Key:
            header = token.headers()
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise invalid_client("The assertion header has no 'kid' naming the signing key.")
            jku = header.get("jku")
            if jku is not None and jku != client.jwks_uri:
                raise invalid_client("The assertion's 'jku' is not the jwks_uri registered for this client.")
            if client.jwks is not None:
                return _key_by_kid(KeySet.import_key_set(client.jwks), kid)  # type: ignore[arg-type]
            assert client.jwks_uri is not None
            keys = self.remote_jwks.get(client.jwks_uri)
            if not _has_kid(keys, kid):
                keys = self.remote_jwks.get(client.jwks_uri, refresh=True)
            return _key_by_kid(keys, kid)

        return resolve

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ALGORITHMS)
        except JoseError as exc:
            raise invalid_client(f"The client assertion is not acceptable: {exc.description or exc.error}") from exc
        self.verify_claims(token.claims)
        return dict(token.claims)

    def verify_claims(self, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > time.time() + MAX_LIFETIME + CLOCK_SKEW:
            raise invalid_client("The assertion's 'exp' is more than five minutes ahead.")
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise invalid_client("The assertion's 'jti' must be a string.")
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Remember `jti` for this client until its assertion expires; False if already seen."""
        now = int(time.time())
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(assertion_ids).where(assertion_ids.c.expires_at < now - CLOCK_SKEW))
                conn.execute(
                    insert(assertion_ids).values(client_id=claims["sub"], jti=jti, expires_at=int(claims["exp"]))
                )
        except IntegrityError:
            return False
        return True


class RemoteJWKS:
    """JWK Sets fetched from clients' `jwks_uri`, cached for a few minutes.

    Only registered URIs are ever fetched (the caller passes `client.jwks_uri`). A failed fetch is
    the client's problem, so it is an invalid_client saying what went wrong.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._cache: dict[str, tuple[float, KeySet]] = {}
        self._lock = threading.Lock()

    def get(self, uri: str, *, refresh: bool = False) -> KeySet:
        with self._lock:
            cached = self._cache.get(uri)
        if cached:
            age = time.monotonic() - cached[0]
            if age < (JWKS_REFRESH_SECONDS if refresh else JWKS_CACHE_SECONDS):
                return cached[1]
        try:
            response = httpx.get(uri, timeout=self.timeout, follow_redirects=False)
            response.raise_for_status()
            keys = check_public_jwks(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise invalid_client(
                f"Could not fetch the client's JWK Set from its jwks_uri: {type(exc).__name__}"
            ) from exc
        except InvalidClientMetadata as exc:
            raise invalid_client(f"The JWK Set at the client's jwks_uri is not usable: {exc.message}") from exc
        with self._lock:
            self._cache[uri] = (time.monotonic(), keys)
        return keys


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _key_by_kid(keys: KeySet, kid: str) -> Key:
    for key in keys.keys:
        if key.kid == kid:
            return key
    raise invalid_client(f"No key with kid {kid!r} is registered for this client.")
