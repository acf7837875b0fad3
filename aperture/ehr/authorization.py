"""Authlib's OAuth 2.0 `AuthorizationServer`, adapted to Starlette and to the sandbox's store.

Authlib's server core is framework-neutral: an integration supplies how to read a request
(`create_oauth2_request`), how to answer (`handle_response`), how to find clients and keep tokens
(`query_client`, `save_token`), and signals (`send_signal`, unused here). That is all this module
does; grants, client authentication and the RFC 7662/7009 endpoints are Authlib's, subclassed in
`grants`, `assertions` and `introspection`.

Authlib is synchronous, and some of its steps block (SQLite, fetching a client's `jwks_uri`), so
the routes read the form body asynchronously and then run Authlib in a worker thread.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from joserfc.jwk import RSAKey
from sqlalchemy import Engine
from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aperture.ehr.assertions import PrivateKeyJWT, RemoteJWKS
from aperture.ehr.clients import Client, get_client
from aperture.ehr.codes import BrowserLaunchGrant, S256Only
from aperture.ehr.config import EhrConfig
from aperture.ehr.grants import BackendServicesGrant
from aperture.ehr.idtokens import SandboxIdTokens
from aperture.ehr.introspection import Introspection, Revocation
from aperture.ehr.policy import attach_details
from aperture.ehr.refresh import RotatingRefreshGrant
from aperture.ehr.tokens import Grantee, new_token_response, store_refresh_token, store_token

MAX_FORM_BYTES = 64 * 1024  # an assertion is a few kB; nothing legitimate comes near this
# Parameters that are credentials: at the token, introspection and revocation endpoints they are
# refused in a query string, which access logs, proxies and browser histories keep (RFC 6749 §2.3.1,
# §3.2; RFC 6750 §2.3 for tokens).
QUERY_CREDENTIALS = frozenset(
    {"access_token", "actor_token", "assertion", "client_assertion", "client_secret", "code", "code_verifier",
     "device_code", "id_token", "password", "refresh_token", "subject_token", "token"}
)  # fmt: skip


def query_credentials(query: Iterable[str]) -> list[str]:
    """The credential parameters named in a query string (lowercased, sorted, each once)."""
    return sorted({name.lower() for name in query if name.lower() in QUERY_CREDENTIALS})


async def urlencoded_form(request: Request) -> FormData:
    """The application/x-www-form-urlencoded body (RFC 6749 §3.2), read with the standard library.

    Starlette's `request.form()` needs python-multipart even for urlencoded bodies; OAuth never
    sends multipart, so parsing it here keeps that dependency out.
    """
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidRequestError(f"The request body is larger than {MAX_FORM_BYTES} bytes.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidRequestError("The request body is not UTF-8 (RFC 6749 Appendix B).") from None
    return FormData([(name, value) for name, value in pairs])


class FormPayload(OAuth2Payload):  # type: ignore[misc]
    """OAuth parameters from an application/x-www-form-urlencoded body (never from the query string)."""

    def __init__(self, form: FormData) -> None:
        self._data = {key: value for key, value in form.items() if isinstance(value, str)}
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in form.multi_items():
            if isinstance(value, str):
                self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """A Starlette request whose form body has already been read."""

    def __init__(self, request: Request, form: FormData) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self.payload = FormPayload(form)
        self._args = dict(request.query_params)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


class StarletteAuthorizationRequest(StarletteOAuth2Request):
    """An authorization request: its OAuth parameters are the query string, whatever the method.

    The sandbox's own sign-in, patient and consent forms post back to the same URL, query string
    and all, so every step re-validates the app's original request; the form body holds only the
    user's answers.
    """

    def __init__(self, request: Request) -> None:
        super().__init__(request, FormData([(name, value) for name, value in request.query_params.multi_items()]))


class SandboxAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, config: EhrConfig, engine: Engine, signing_key: RSAKey) -> None:
        super().__init__()
        self.config = config
        self.engine = engine
        self.register_token_generator("default", self._new_token)
        self.private_key_jwt = PrivateKeyJWT(engine, config.token_endpoint, RemoteJWKS(config.jwks_allowed_origins))
        self.register_client_auth_method(PrivateKeyJWT.CLIENT_AUTH_METHOD, self.private_key_jwt)
        self.register_grant(BackendServicesGrant)
        self.register_grant(BrowserLaunchGrant, [S256Only(required=True), SandboxIdTokens(engine, config, signing_key)])
        self.register_grant(RotatingRefreshGrant)
        self.register_endpoint(Introspection(engine, config))
        self.register_endpoint(Revocation(engine))

    def refuse_query_credentials(self, query: QueryParams) -> None:
        """Refuse a request with credentials in its query string, spending any client assertion there.

        The assertion is spent first because the refusal alone would leave it usable: the URL it
        came in is in the access log, and the same assertion would then work in a form body. The
        message names the parameters, never their values.
        """
        named = query_credentials(query.keys())
        if not named:
            return
        for name, value in query.multi_items():
            if name.lower() == "client_assertion" and value:
                self.private_key_jwt.spend(value)
        spent = " The client_assertion sent there is spent; sign a new one." if "client_assertion" in named else ""
        raise InvalidRequestError(
            f"Send {', '.join(named)} in the application/x-www-form-urlencoded form body, never in the URL's "
            f"query string (RFC 6749 sections 2.3.1 and 3.2): query strings are logged.{spent}"
        )

    def authenticate_client(self, request: OAuth2Request, methods: list[str], endpoint: str = "token") -> Client:
        """As Authlib's, but HTTP Basic credentials that are not UTF-8 are invalid_client, not a 500."""
        try:
            return super().authenticate_client(request, methods, endpoint)  # type: ignore[no-any-return]
        except UnicodeDecodeError:
            raise InvalidClientError(
                status_code=401, description="The HTTP Basic credentials are not UTF-8 (RFC 7617 section 2.1)."
            ) from None

    def query_client(self, client_id: str) -> Client | None:
        return get_client(self.engine, client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Store the access token (and refresh token) with the launch context of the grant it came from."""
        grantee: Grantee | None = request.user if isinstance(request.user, Grantee) else None
        attach_details(
            self.engine, self.config, token, client_id=request.client.client_id,
            patient=grantee.patient if grantee else None, user=grantee.user if grantee else None,
        )  # fmt: skip
        if grantee is None:
            store_token(self.engine, token, client_id=request.client.client_id, audience=self.config.audiences)
            return
        lineage = request.authorization_code or request.refresh_token
        grant_id = lineage.code_hash if request.authorization_code else lineage.grant_id
        store_token(
            self.engine, token, client_id=request.client.client_id, audience=self.config.audiences,
            patient=grantee.patient, user=grantee.user, grant_id=grant_id,
        )  # fmt: skip
        if "refresh_token" in token:
            store_refresh_token(
                self.engine, token["refresh_token"], client_id=request.client.client_id, grantee=grantee,
                grant_id=grant_id,
            )  # fmt: skip

    def _new_token(
        self,
        grant_type: str,
        client: Client,
        user: Any = None,
        scope: str | None = None,
        include_refresh_token: bool = False,
        **_: Any,
    ) -> dict[str, Any]:
        """A token response; whether a refresh token comes depends on the grant's scope, not the request's.

        A refresh that narrows the access token to a scope without offline_access keeps the grant
        going (RFC 6749 §6: the new refresh token has the scope of the one presented).
        """
        grant_scope = user.scope if isinstance(user, Grantee) else None
        return new_token_response(
            scope or "", self.config.access_token_lifetime, refresh=include_refresh_token, grant_scope=grant_scope
        )

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if not isinstance(request, OAuth2Request):
            raise TypeError("routes build a StarletteOAuth2Request (the form body is read asynchronously)")
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status, headers=dict(headers))
        return Response(body or b"", status_code=status, headers=dict(headers))

    def handle_error_response(self, request: OAuth2Request | None, error: OAuth2Error) -> Response:
        """RFC 6749 §5.2: a client that tried the Authorization header gets 401 and a challenge.

        Authlib does so only where Basic is an accepted method; at the token endpoint (assertions
        only) a client sending Basic credentials would otherwise get a plain 400.
        """
        if isinstance(error, InvalidClientError) and request is not None and "authorization" in request.headers:
            error.status_code = 401
        return super().handle_error_response(request, error)  # type: ignore[no-any-return]

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib's hook for framework signals; the sandbox has none."""
