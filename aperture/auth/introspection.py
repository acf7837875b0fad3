"""The imaging server's RFC 7662 client: ask the EHR what a bearer token allows, check the answer, remember it.

`Introspector.verify(token)` posts `token=...` to the EHR's introspection endpoint (from the config,
or found by SMART discovery), authenticated as this server (`client_secret_basic`, RFC 6749 §2.3.1;
or `private_key_jwt`, RFC 7523 §2.2 with an RS384/ES384 assertion signed by joserfc). The answer
is accepted only if `active` is true, `exp` is in the future (and `nbf`, if sent, is past), `iss`
(when present) is the configured EHR and `aud` names this server's audience or an associated one
(fail closed: anything else is `InvalidToken`). An EHR that cannot answer (down, timing out, 5xx,
not JSON, not RFC 7662) is
`AuthorizationServerUnavailable` (503 with Retry-After). Answers are cached by token hash
(`aperture.auth.cache`).

`aperture.auth.requirements.authorize` calls `verify` for every request under `--auth smart`
(one Introspector per server worker, made in the app's lifespan). The raw token is never logged, cached or put
in an exception; log lines name a token by the first 12 hex digits of its SHA-256.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from aperture.auth.cache import IntrospectionCache, token_key
from aperture.auth.discovery import fetch_smart_configuration, find_introspection_endpoint
from aperture.auth.tokens import TokenFacts, parse_authorization_details, parse_scopes
from aperture.config import AuthConfig, ConfigError
from aperture.errors import AuthorizationServerUnavailable, InvalidToken

log = logging.getLogger("aperture.auth")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DISCOVERY_SECONDS = 60  # how long the EHR's SMART configuration is reused for the echo
ASSERTION_LIFETIME = 60  # seconds; SMART Backend Services asks for no more than five minutes


class ClientCredentials:
    """How this server authenticates to the EHR. The secret is held here and nowhere else, never in a repr."""

    def __init__(self, config: AuthConfig) -> None:
        if not config.client_id:
            raise ConfigError("'auth.client_id' is required: this server's client id at the EHR.")
        self.client_id = config.client_id
        self.method = config.client_authentication
        self._secret: str | None = None
        self._key: RSAKey | ECKey | None = None
        if self.method == "client_secret_basic":
            self._secret = _read_secret(config)
        else:
            self._key = _read_key(config.private_key_file)

    @classmethod
    def signing_key(cls, client_id: str, key_file: str, *, setting: str) -> ClientCredentials:
        """private_key_jwt credentials from a client id and a JWK file; `setting` names the key in errors.

        The Backend Services client (`aperture.auth.backend`) authenticates this way with its own
        registration, apart from the introspection client's.
        """
        credentials = cls.__new__(cls)
        credentials.client_id = client_id
        credentials.method = "private_key_jwt"
        credentials._secret = None
        credentials._key = _read_key(key_file, setting)
        return credentials

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, method={self.method!r})"

    def authenticate(self, endpoint: str) -> tuple[httpx.BasicAuth | None, dict[str, str]]:
        """(HTTP auth, extra form fields) for one request to `endpoint`."""
        if self._secret is not None:
            return httpx.BasicAuth(self.client_id, self._secret), {}
        assert self._key is not None
        alg = "RS384" if isinstance(self._key, RSAKey) else "ES384"
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": endpoint, "iat": now,
                  "exp": now + ASSERTION_LIFETIME, "jti": secrets.token_urlsafe(16)}  # fmt: skip
        assertion = jwt.encode({"alg": alg, "kid": self._key.kid, "typ": "JWT"}, claims, self._key, algorithms=[alg])
        return None, {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


def _read_secret(config: AuthConfig) -> str:
    if config.client_secret_file:
        try:
            secret = Path(config.client_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"'auth.client_secret_file' {config.client_secret_file} cannot be read: {exc}") from None
    elif config.client_secret_env:
        secret = os.environ.get(config.client_secret_env, "").strip()
        if not secret:
            raise ConfigError(
                f"'auth.client_secret_env': the environment variable {config.client_secret_env} is empty."
            )
    else:
        raise ConfigError("client_secret_basic needs 'auth.client_secret_file' or 'auth.client_secret_env'.")
    if not secret:
        raise ConfigError(f"'auth.client_secret_file' {config.client_secret_file} is empty.")
    return secret


def _read_key(path: str, setting: str = "auth.private_key_file") -> RSAKey | ECKey:
    if not path:
        raise ConfigError(f"private_key_jwt needs '{setting}': a private JWK (RSA or EC P-384).")
    try:
        key = JWKRegistry.import_key(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, JoseError) as exc:
        raise ConfigError(f"'{setting}' {path} is not a readable JWK: {type(exc).__name__}") from None
    if not isinstance(key, RSAKey | ECKey) or not key.is_private or not key.kid:
        raise ConfigError(f"'{setting}' {path} must be a private RSA or EC P-384 JWK with a \"kid\".")
    if isinstance(key, ECKey) and key.curve_name != "P-384":
        raise ConfigError(f"'{setting}' {path}: EC keys must be P-384 (ES384), not {key.curve_name}.")
    return key


def check_auth_config(config: AuthConfig) -> None:
    """ConfigError unless `config` is enough to introspect (issuer, audience, readable credentials)."""
    if not config.ehr_issuer:
        raise ConfigError("'auth.ehr_issuer' is required: the EHR's FHIR base URL (its `iss`).")
    if not config.audience:
        raise ConfigError("'auth.audience' is required: this server's base URL as tokens name it in `aud`.")
    ClientCredentials(config)


class Introspector:
    """One per server worker (it owns an httpx.AsyncClient with connection reuse); `aclose()` at shutdown."""

    def __init__(self, config: AuthConfig, *, client: httpx.AsyncClient | None = None) -> None:
        check_auth_config(config)
        self.config = config
        self.credentials = ClientCredentials(config)
        self.audiences = (config.audience, *config.associated_audiences)
        self._endpoint = config.introspection_endpoint or None
        self._discovery: tuple[float, dict[str, Any]] | None = None
        timeout = httpx.Timeout(config.timeout_seconds)
        self._client = client or httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            follow_redirects=False,
        )
        self.cache = IntrospectionCache(
            cache_seconds=config.cache_seconds,
            negative_cache_seconds=config.negative_cache_seconds,
            entries=config.cache_entries,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ehr_configuration(self) -> dict[str, Any]:
        """The EHR's SMART configuration, fetched once a minute at most (apps discover it through us)."""
        now = time.monotonic()
        if self._discovery is None or now - self._discovery[0] > DISCOVERY_SECONDS:
            document = await fetch_smart_configuration(
                self._client, self.config.ehr_issuer, retry_after=self.config.retry_after_seconds
            )
            self._discovery = (now, document)
        return self._discovery[1]

    async def verify(self, token: str, key: str | None = None) -> TokenFacts:
        """The checked facts of `token`, or InvalidToken (401) / AuthorizationServerUnavailable (503).

        `key` is `token_key(token)` when the caller has it already.
        """
        key = key or token_key(token)
        facts = self.cache.cached(key)
        if facts is not None:
            return facts
        return await self.cache.get_or_fetch(key, lambda: self._introspect(token, key))

    def _unavailable(self) -> AuthorizationServerUnavailable:
        return AuthorizationServerUnavailable(retry_after=self.config.retry_after_seconds)

    async def _introspect(self, token: str, key: str) -> TokenFacts:
        name = key[:12]
        if self._endpoint is None:
            self._endpoint = await find_introspection_endpoint(
                self._client, self.config.ehr_issuer, retry_after=self.config.retry_after_seconds
            )
        auth, fields = self.credentials.authenticate(self._endpoint)
        try:
            response = await self._client.post(
                self._endpoint, data={"token": token, **fields}, auth=auth or httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json"},
            )  # fmt: skip
        except httpx.HTTPError as exc:
            log.warning("introspection of token %s at %s failed: %s", name, self._endpoint, type(exc).__name__)
            raise self._unavailable() from None
        if response.status_code != 200:
            # 401/400 mean our own registration or credentials are wrong: the operator must act, the client can retry.
            log.warning("introspection of token %s at %s answered %d", name, self._endpoint, response.status_code)
            raise self._unavailable()
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            log.warning("introspection of token %s at %s: the answer is not RFC 7662 JSON", name, self._endpoint)
            raise self._unavailable()
        try:
            return self._check(answer, name)
        except (TypeError, ValueError) as exc:
            log.warning("introspection of token %s: malformed answer (%s)", name, exc)
            raise self._unavailable() from None

    def _check(self, answer: dict[str, Any], name: str) -> TokenFacts:
        """RFC 7662 §2.2 fields, checked as SMART Imaging Access asks (active, exp, iss, aud), fail closed."""
        if answer["active"] is not True:
            log.info("token %s refused: inactive", name)
            raise InvalidToken()
        exp = answer.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int) or exp <= time.time():
            log.info("token %s refused: no exp in the future", name)
            raise InvalidToken()
        nbf = answer.get("nbf")
        if nbf is not None and (isinstance(nbf, bool) or not isinstance(nbf, int) or nbf > time.time()):
            log.info("token %s refused: not valid before %r", name, nbf)
            raise InvalidToken()
        iss = answer.get("iss")
        if iss is not None and (not isinstance(iss, str) or iss.rstrip("/") != self.config.ehr_issuer):
            log.info("token %s refused: issued by %r, not %r", name, iss, self.config.ehr_issuer)
            raise InvalidToken()
        aud = answer.get("aud")
        audiences = (aud,) if isinstance(aud, str) else tuple(aud) if isinstance(aud, list) else ()
        if not any(isinstance(a, str) and a.rstrip("/") in self.audiences for a in audiences):
            log.info("token %s refused: audience %r does not name this server", name, aud)
            raise InvalidToken()
        scope = answer.get("scope", "")
        client_id = answer.get("client_id")
        if not isinstance(scope, str) or not isinstance(client_id, str):
            raise ValueError("scope and client_id must be strings")
        optional = {field: answer.get(field) for field in ("sub", "patient", "fhirUser")}
        if any(value is not None and not isinstance(value, str) for value in optional.values()):
            raise ValueError("sub, patient and fhirUser must be strings")
        return TokenFacts(
            client_id=client_id,
            scope=scope,
            scopes=parse_scopes(scope),
            exp=exp,
            iss=iss,
            aud=tuple(str(a) for a in audiences),
            sub=optional["sub"],
            patient=optional["patient"],
            fhir_user=optional["fhirUser"],
            authorization_details=parse_authorization_details(answer.get("authorization_details"), self.audiences),
        )
