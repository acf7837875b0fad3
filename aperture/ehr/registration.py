"""RFC 7591 dynamic client registration at `{public_url}/register`, on Authlib's endpoint.

Off by default (`dynamic_registration = true` in `[ehr]`, or `--dynamic-registration`): the sandbox
has no initial access tokens, so when it is on anyone who can reach it may register. A registered
client is an ordinary registry entry, made by the same `register_client` as the admin CLI, so it
works with the existing flows and obeys the same rules. It is registered with the EHR once, never
with an imaging server. What the metadata asks for decides the kind of client:

    token_endpoint_auth_method   kind           grant_types
    none                         public         authorization_code, refresh_token (PKCE)
    client_secret_basic          confidential   authorization_code, refresh_token
    private_key_jwt              backend        client_credentials (jwks or jwks_uri)

Anything else (client_secret_post, client_secret_jwt, tls_client_auth, ...) is refused with
`invalid_client_metadata` rather than silently substituted, and so are a redirect URI that is not
https (plain http only on loopback) or has a fragment (`invalid_redirect_uri`), scopes the kind may
not have, a missing scope, and a `jwks_uri` the sandbox would not fetch (not https, or a loopback,
private or reserved address, unless its origin is in `jwks_allowed_origins`; see
`aperture.ehr.assertions`). The admin-only powers (introspection, zero-click pre-approval,
backend pre-authorization) cannot be registered here. `initiate_login_uri` (OpenID Connect
Dynamic Registration) becomes the app's EHR launch URL. A client registered here is unapproved
until the admin runs `aperture ehr clients approve` (see `aperture.ehr.clients`). The client
secret of a confidential client is in the 201 answer only, stored as a hash, and never logged.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.requests import JsonPayload, JsonRequest
from authlib.oauth2.rfc7591 import (
    ClientMetadataClaims,
    ClientRegistrationEndpoint,
    InvalidClientMetadataError,
    InvalidRedirectURIError,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aperture.ehr.assertions import jwks_uri_problem
from aperture.ehr.clients import Client, ClientKind, is_web_url, register_client
from aperture.ehr.errors import InvalidClientMetadata, wire_description

MAX_BODY_BYTES = 64 * 1024

KIND_BY_AUTH_METHOD: dict[str, ClientKind] = {
    "none": "public",
    "client_secret_basic": "confidential",
    "private_key_jwt": "backend",
}
GRANT_TYPES: dict[ClientKind, frozenset[str]] = {
    "public": frozenset({"authorization_code", "refresh_token"}),
    "confidential": frozenset({"authorization_code", "refresh_token"}),
    "backend": frozenset({"client_credentials"}),
}
_LISTS = ("redirect_uris", "grant_types", "response_types", "contacts")
_STRINGS = (
    "token_endpoint_auth_method",
    "client_name",
    "scope",
    "jwks_uri",
    "initiate_login_uri",
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
)  # every string member of RFC 7591 §2: a list or a number in one crashed Authlib's URI checks


class SandboxClientMetadata(ClientMetadataClaims):  # type: ignore[misc]
    """RFC 7591 metadata, plus OpenID Connect's `initiate_login_uri` (the app's EHR launch page)."""

    REGISTERED_CLAIMS = [*ClientMetadataClaims.REGISTERED_CLAIMS, "initiate_login_uri"]


class JsonBody(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class DynamicRegistration(ClientRegistrationEndpoint):  # type: ignore[misc]
    def __init__(self, server: Any) -> None:
        super().__init__(server, claims_classes=[SandboxClientMetadata])
        self.engine = server.engine
        self.secret: str | None = None

    def authenticate_token(self, request: JsonRequest) -> bool:
        """Open registration: the switch in the config is the only gate (no initial access tokens)."""
        return True

    def get_server_metadata(self) -> None:
        """None: Authlib's checks against discovery are replaced by the kind rules in `save_client`."""

    def extract_client_metadata(self, request: JsonRequest) -> dict[str, Any]:
        _check_shapes(request.payload.data)
        jwks_uri = request.payload.data.get("jwks_uri")
        problem = jwks_uri_problem(jwks_uri, self.server.config.jwks_allowed_origins) if jwks_uri else None
        if problem:
            raise InvalidClientMetadataError(f"jwks_uri {problem}.")
        for uri in request.payload.data.get("redirect_uris") or ():
            if not is_web_url(uri) or "#" in uri:
                raise InvalidRedirectURIError(
                    f"Redirect URI {wire_description(uri)} must be https (or http on loopback), without a #fragment."
                )
        return super().extract_client_metadata(request)  # type: ignore[no-any-return]

    def generate_client_info(self, request: JsonRequest) -> dict[str, Any]:
        """The client id and when it was issued; a secret only comes with a confidential client."""
        return {"client_id": secrets.token_urlsafe(16), "client_id_issued_at": int(time.time())}

    def save_client(self, client_info: dict[str, Any], metadata: dict[str, Any], request: JsonRequest) -> Client:
        method = metadata.get("token_endpoint_auth_method", "client_secret_basic")
        kind = KIND_BY_AUTH_METHOD.get(method)
        if kind is None:
            raise InvalidClientMetadataError(
                f"token_endpoint_auth_method {wire_description(str(method))} is not supported; "
                f"use one of: {', '.join(KIND_BY_AUTH_METHOD)}."
            )
        _check_flows(kind, metadata)
        if not str(metadata.get("scope", "")).strip():
            raise InvalidClientMetadataError("Register the scopes the client may ask for (scope).")
        try:
            client, self.secret = register_client(
                self.engine,
                kind=kind,
                name=str(metadata.get("client_name") or "Unnamed app (registered dynamically)"),
                scope=metadata["scope"],
                client_id=client_info["client_id"],
                jwks=metadata.get("jwks"),
                jwks_uri=metadata.get("jwks_uri"),
                redirect_uris=tuple(metadata.get("redirect_uris", ())),
                launch_url=metadata.get("initiate_login_uri"),
                dynamic=True,  # unapproved until the admin approves it (aperture.ehr.clients)
            )
        except InvalidClientMetadata as exc:
            raise InvalidClientMetadataError(wire_description(exc.message)) from None
        return client

    def generate_client_registration_info(self, client: Client, request: JsonRequest) -> dict[str, Any]:
        """What RFC 7591 §3.2.1 adds to the answer: the secret (never expiring) and the values as registered."""
        info: dict[str, Any] = {
            "scope": client.scope,
            "token_endpoint_auth_method": next(m for m, k in KIND_BY_AUTH_METHOD.items() if k == client.kind),
            "grant_types": sorted(GRANT_TYPES[client.kind]) if client.kind == "backend" else _app_grants(request),
        }
        if client.kind != "backend":
            info["response_types"] = ["code"]
        if self.secret is not None:
            info["client_secret"] = self.secret
            info["client_secret_expires_at"] = 0
        return info


def _app_grants(request: JsonRequest) -> list[str]:
    return list(request.payload.data.get("grant_types") or ["authorization_code"])


def _check_shapes(data: dict[str, Any]) -> None:
    """Types first, so Authlib's checks never meet a value they would crash on."""
    for name in _LISTS:
        value = data.get(name)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise InvalidClientMetadataError(f"{name} must be an array of strings.")
    for name in _STRINGS:
        if name in data and not isinstance(data[name], str):
            raise InvalidClientMetadataError(f"{name} must be a string.")
    if "jwks" in data and not _is_key_set(data["jwks"]):
        raise InvalidClientMetadataError("jwks must be a JWK Set: an object with a keys array of JWK objects.")


def _check_flows(kind: ClientKind, metadata: dict[str, Any]) -> None:
    """Grant and response types must be ones this kind of client uses (RFC 7591 §2.1)."""
    default = ["client_credentials"] if kind == "backend" else ["authorization_code"]
    grants = set(metadata.get("grant_types") or default)
    if not grants <= GRANT_TYPES[kind]:
        raise InvalidClientMetadataError(
            f"grant_types {', '.join(sorted(grants - GRANT_TYPES[kind]))} not available with "
            f"token_endpoint_auth_method {'private_key_jwt' if kind == 'backend' else 'none or client_secret_basic'}."
        )
    responses = metadata.get("response_types")
    if kind == "backend" and responses:
        raise InvalidClientMetadataError("A client_credentials client has no response_types.")
    if kind != "backend" and responses not in (None, ["code"]):
        raise InvalidClientMetadataError("response_types must be code alone (authorization code with PKCE).")
    if kind != "backend" and not metadata.get("redirect_uris"):
        raise InvalidClientMetadataError("An app using the authorization code needs its redirect_uris.")


async def register(request: Request) -> Response:
    """POST {public_url}/register: an RFC 7591 registration request, JSON in and out."""
    server = request.app.state.authorization
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return _error(server, InvalidClientMetadataError(f"The metadata is larger than {MAX_BODY_BYTES} bytes."))
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: nested past the limit
        data = None
    json_body = request.headers.get("content-type", "").split(";")[0].strip() == "application/json"
    if not json_body or not isinstance(data, dict) or not data:
        return _error(server, InvalidClientMetadataError("Send the client metadata as a JSON object (RFC 7591 3.1)."))
    json_request = JsonRequest(request.method, str(request.url), headers=request.headers)
    json_request.payload = JsonBody(data)
    return await run_in_threadpool(_register, server, json_request)


def _register(server: Any, request: JsonRequest) -> Response:
    endpoint = DynamicRegistration(server)
    try:
        status, body, headers = endpoint(request)
    except OAuth2Error as error:
        return _error(server, error)
    return server.handle_response(status, body, headers)  # type: ignore[no-any-return]


def _is_key_set(value: Any) -> bool:
    """A JWK Set's shape (RFC 7517 §5), checked before joserfc reads it (it raises KeyError on others)."""
    keys = value.get("keys") if isinstance(value, dict) else None
    return isinstance(keys, list) and bool(keys) and all(isinstance(key, dict) for key in keys)


def _error(server: Any, error: OAuth2Error) -> Response:
    return server.handle_error_response(None, error)  # type: ignore[no-any-return]
