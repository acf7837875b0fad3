"""This server as a SMART Backend Services client of the EHR: a `system/` access token of its own.

`BackendClient.token()` asks the EHR's token endpoint (the `token_endpoint` of
`{auth.ehr_issuer}/.well-known/smart-configuration`) for a token with `grant_type=client_credentials`
and a `private_key_jwt` client assertion (RFC 7523 §2.2; SMART Backend Services: RS384 or ES384,
`aud` the token endpoint, `exp` at most five minutes ahead, a fresh `jti`), signed by
`ClientCredentials` with the key of `auth.backend_private_key_file` under `auth.backend_client_id`.
That registration is separate from the introspecting client (`auth.client_id`): the sandbox, like
Backend Services, authenticates backend clients by signed assertion only.

The token is reused until `REFRESH_MARGIN` before its `expires_in` (until half its lifetime when
that is shorter than twice the margin); concurrent callers share one request to the EHR (single
flight). An EHR that cannot be reached, or refuses (our registration or
scopes are wrong), is `AuthorizationServerUnavailable` with a message saying which, for the log of
the caller (the publisher); the token itself is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from aperture.auth.discovery import find_token_endpoint
from aperture.auth.introspection import ClientCredentials
from aperture.config import AuthConfig, ConfigError
from aperture.errors import AuthorizationServerUnavailable

log = logging.getLogger("aperture.auth")

REFRESH_MARGIN = 30.0  # seconds before expiry a new token is fetched (a request in flight must not outlive it)


def backend_configured(config: AuthConfig) -> bool:
    """Whether this server has Backend Services credentials at the EHR at all."""
    return bool(config.ehr_issuer and config.backend_client_id)


class BackendClient:
    """One per process that calls the EHR as itself; `aclose()` when done."""

    def __init__(self, config: AuthConfig, scope: str, *, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.scope = scope
        self.credentials = self.check(config)
        timeout = httpx.Timeout(config.timeout_seconds)
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._endpoint: str | None = None
        self._token: str | None = None
        self._renew_at = 0.0  # time.monotonic() after which the token is fetched again
        self._lock = asyncio.Lock()

    @staticmethod
    def check(config: AuthConfig) -> ClientCredentials:
        """The signing credentials `config` names, or ConfigError naming the setting to fix."""
        if not config.ehr_issuer:
            raise ConfigError("'auth.ehr_issuer' is required: the EHR whose token endpoint issues our token.")
        if not config.backend_client_id:
            raise ConfigError("'auth.backend_client_id' is required: this server's Backend Services client id.")
        return ClientCredentials.signing_key(
            config.backend_client_id, config.backend_private_key_file, setting="auth.backend_private_key_file"
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def forget(self) -> None:
        """Drop the cached token (the EHR answered 401 to it: revoked or expired early)."""
        self._token = None

    async def token(self) -> str:
        """A current access token for `scope`; fetched once for all callers waiting at the same time."""
        if self._token is not None and time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            if self._token is not None and time.monotonic() < self._renew_at:
                return self._token  # another caller fetched it while this one waited
            token, lifetime = await self._fetch()
            self._token = token
            self._renew_at = time.monotonic() + max(0.0, lifetime - min(REFRESH_MARGIN, lifetime / 2))
            return token

    def _unavailable(self, message: str) -> AuthorizationServerUnavailable:
        return AuthorizationServerUnavailable(message, retry_after=self.config.retry_after_seconds)

    async def _fetch(self) -> tuple[str, float]:
        if self._endpoint is None:
            try:
                self._endpoint = await find_token_endpoint(
                    self._client, self.config.ehr_issuer, retry_after=self.config.retry_after_seconds
                )
            except AuthorizationServerUnavailable:
                raise self._unavailable(
                    f"The EHR's SMART configuration ({self.config.ehr_issuer}/.well-known/smart-configuration) "
                    "cannot be read or names no token_endpoint."
                ) from None
        endpoint = self._endpoint
        _, fields = self.credentials.authenticate(endpoint)
        form = {"grant_type": "client_credentials", "scope": self.scope, **fields}
        try:
            response = await self._client.post(endpoint, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            failure = type(exc).__name__
            raise self._unavailable(f"The EHR's token endpoint {endpoint} cannot be reached ({failure}).") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200:
            error = answer.get("error") if isinstance(answer, dict) else None
            description = answer.get("error_description") if isinstance(answer, dict) else None
            what = f"{error}: {description}" if error else f"HTTP {response.status_code}"
            if response.status_code in (400, 401):
                raise self._unavailable(
                    f"The EHR's token endpoint {endpoint} refused Backend Services client "
                    f"{self.credentials.client_id!r} ({str(what)[:300]}); check its registration "
                    f"(the public key of auth.backend_private_key_file, and the scope {self.scope!r})."
                )
            raise self._unavailable(f"The EHR's token endpoint {endpoint} answered {str(what)[:300]}.")
        token = answer.get("access_token") if isinstance(answer, dict) else None
        lifetime = answer.get("expires_in", 300) if isinstance(answer, dict) else None
        if (
            not isinstance(token, str)
            or not token
            or isinstance(lifetime, bool)
            or not isinstance(lifetime, int | float)
            or lifetime <= 0
        ):
            raise self._unavailable(f"The EHR's token endpoint {endpoint} answered without a usable access_token.")
        granted = answer.get("scope", self.scope)
        log.info("Backend Services token from %s for %r, %ds", endpoint, granted, int(lifetime))
        return token, float(lifetime)
