"""The client registry: confidential, public and backend apps, registered once with the EHR.

- confidential: a server-side app or a resource server (the imaging server) with a client secret,
  authenticating with HTTP Basic (`client_secret_basic`);
- public: a browser or native app with no secret (PKCE in the browser launch);
- backend: a SMART Backend Services client that signs JWT assertions (`private_key_jwt`) with a
  key from its JWK Set, registered inline or as a `jwks_uri`.

A client registered through RFC 7591 (`dynamic`) is unapproved until the admin approves it
(`aperture ehr clients approve`): until then it is not on the EHR launch page, cannot be launched
from there, its redirect origins get no CORS, and the consent screen marks it as unverified.
Clients the admin registers are approved by that act.

Client secrets are generated here (256 random bits, `secrets.token_urlsafe(32)`), shown once, and
stored only as a SHA-256 hash. A slow password hash would add nothing: nobody can guess a 256-bit
random value, and the hash only has to keep a copied database from yielding usable secrets.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from authlib.common.security import is_secure_transport
from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Engine, Select, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from aperture.ehr import scopes
from aperture.ehr.errors import InvalidClientMetadata, InvalidScope, UnknownClient
from aperture.ehr.store import (
    access_tokens,
    authorization_codes,
    clients,
    dynamic_clients,
    launches,
    preauthorizations,
    refresh_tokens,
    stored_hash,
)

ClientKind = Literal["confidential", "public", "backend"]
KINDS: tuple[ClientKind, ...] = ("confidential", "public", "backend")

# Which client authentication each kind uses, at which endpoints (Authlib asks per endpoint).
_AUTH_METHODS: dict[ClientKind, dict[str, set[str]]] = {
    "confidential": {"client_secret_basic": {"token", "introspection", "revocation"}},
    "public": {"none": {"token", "revocation"}},  # RFC 7009 §2.1: a public client sends its client_id
    "backend": {"private_key_jwt": {"token", "revocation"}},
}
_GRANT_TYPES: dict[ClientKind, set[str]] = {
    "confidential": {"authorization_code", "refresh_token"},
    "public": {"authorization_code", "refresh_token"},
    "backend": {"client_credentials"},
}
# What a browser app is registered for when its registration names no scopes (the developer page's
# prefilled value, `aperture ehr clients add --kind public` without --scope): what SMART apps commonly
# ask for, read-only, every scope in discovery's scopes_supported or covered by one there.
DEFAULT_APP_SCOPE = "openid fhirUser launch launch/patient offline_access online_access patient/*.rs user/*.rs"
_PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]
    """A registered client, as Authlib's grants and endpoints query it."""

    client_id: str
    kind: ClientKind
    name: str
    scope: str
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    redirect_uris: tuple[str, ...] = ()
    introspect: bool = False
    launch_url: str | None = None  # EHR launch: the app's launch page
    pre_approved: bool = False  # organisational policy: the EHR launch skips the consent screen
    dynamic: bool = False  # registered by itself (RFC 7591), not by the admin
    approved: bool = True  # False for a dynamic registration the admin has not approved yet

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        return str(scopes.grant(scope or "", self.scope))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match (SMART, OAuth 2.1), except the port of a loopback IP redirect (RFC 8252 §7.3).

        A native app (`aperture download`) listens on an ephemeral port the OS picks at sign-in, so it
        registers `http://127.0.0.1/callback` and the request may name any port there; scheme, host,
        path and query must still match exactly.
        """
        if redirect_uri in self.redirect_uris:
            return True
        asked = _loopback_without_port(redirect_uri)
        return asked is not None and any(_loopback_without_port(uri) == asked for uri in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(stored_hash(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint in _AUTH_METHODS[self.kind].get(method, set())

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and self.kind != "backend"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in _GRANT_TYPES[self.kind]

    def describe(self) -> dict[str, Any]:
        """What `aperture ehr clients list` shows: everything but the secret hash."""
        keys = "jwks_uri" if self.jwks_uri else "jwks"
        answer: dict[str, Any] = {"client_id": self.client_id, "kind": self.kind, "name": self.name}
        answer["scope"] = self.scope
        if self.kind == "backend":
            answer[keys] = self.jwks_uri or [k.get("kid") for k in (self.jwks or {}).get("keys", [])]
        if self.redirect_uris:
            answer["redirect_uris"] = list(self.redirect_uris)
        if self.introspect:
            answer["introspect"] = True
        if self.launch_url:
            answer["launch_url"] = self.launch_url
        if self.pre_approved:
            answer["pre_approved"] = True
        if self.dynamic:
            answer["registered"] = "dynamically"
            answer["approved"] = self.approved
        return answer

    def redirect_origins(self) -> set[str]:
        """The origins (scheme://host[:port]) of the registered redirect URIs, as browsers write them."""
        return {origin for uri in self.redirect_uris if (origin := url_origin(uri))}


def register_client(
    engine: Engine,
    *,
    kind: ClientKind,
    name: str,
    scope: str,
    client_id: str | None = None,
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    redirect_uris: tuple[str, ...] = (),
    introspect: bool = False,
    launch_url: str | None = None,
    pre_approved: bool = False,
    dynamic: bool = False,
) -> tuple[Client, str | None]:
    """Validate and store a registration; returns the client and its secret (confidential only, shown once).

    `dynamic`: registered through RFC 7591, so unapproved until the admin approves it.
    """
    client_id = client_id or secrets.token_urlsafe(12)
    _check_registration(kind, scope, jwks, jwks_uri, redirect_uris, introspect)
    if kind == "backend" and (launch_url or pre_approved):
        raise InvalidClientMetadata("A backend client has no browser launch: no launch URL, no pre-approval.")
    if launch_url is not None and (not is_web_url(launch_url) or urlsplit(launch_url).fragment):
        raise InvalidClientMetadata(
            f"Launch URL {launch_url!r} must be https (or http on loopback), without a #fragment."
        )
    secret = secrets.token_urlsafe(32) if kind == "confidential" else None
    client = Client(
        client_id=client_id,
        kind=kind,
        name=name,
        scope=" ".join(dict.fromkeys(scope.split())),
        secret_hash=stored_hash(secret) if secret else None,
        jwks=jwks,
        jwks_uri=jwks_uri,
        redirect_uris=redirect_uris,
        introspect=introspect,
        launch_url=launch_url,
        pre_approved=pre_approved,
        dynamic=dynamic,
        approved=not dynamic,
    )
    row = {
        "client_id": client.client_id,
        "kind": client.kind,
        "name": client.name,
        "scope": client.scope,
        "secret_hash": client.secret_hash,
        "jwks": json.dumps(jwks) if jwks else None,
        "jwks_uri": jwks_uri,
        "redirect_uris": json.dumps(list(redirect_uris)),
        "introspect": introspect,
        "launch_url": launch_url,
        "pre_approved": pre_approved,
        "created_at": int(time.time()),
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(clients).values(**row))
            if dynamic:
                conn.execute(insert(dynamic_clients).values(client_id=client_id, registered_at=row["created_at"]))
    except IntegrityError:
        raise InvalidClientMetadata(f"A client with id {client_id!r} is already registered.") from None
    return client, secret


def _with_approval() -> Select:  # type: ignore[type-arg]
    return select(
        clients, dynamic_clients.c.registered_at.label("dynamic_at"), dynamic_clients.c.approved_at
    ).select_from(clients.outerjoin(dynamic_clients, dynamic_clients.c.client_id == clients.c.client_id))


def get_client(engine: Engine, client_id: str) -> Client | None:
    with engine.connect() as conn:
        row = conn.execute(_with_approval().where(clients.c.client_id == client_id)).mappings().first()
    return _from_row(row) if row else None


def list_clients(engine: Engine) -> list[Client]:
    with engine.connect() as conn:
        rows = conn.execute(_with_approval().order_by(clients.c.created_at, clients.c.client_id)).mappings().all()
    return [_from_row(row) for row in rows]


def approve_client(engine: Engine, client_id: str) -> Client:
    """The admin's approval of a dynamically registered client (a client the admin registered already is)."""
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(
            update(dynamic_clients)
            .where(dynamic_clients.c.client_id == client_id, dynamic_clients.c.approved_at.is_(None))
            .values(approved_at=now)
        )
    client = get_client(engine, client_id)
    if client is None:
        raise UnknownClient(f"No client is registered under the id {client_id!r}; see `aperture ehr clients list`.")
    return client


@dataclass(frozen=True)
class Removal:
    """What removing a client took with it: counts of the rows that referred to it."""

    client: Client
    access_tokens: int
    refresh_tokens: int
    codes: int
    launches: int

    def describe(self) -> dict[str, Any]:
        return {
            "removed": self.client.client_id,
            "name": self.client.name,
            "access_tokens": self.access_tokens,
            "refresh_tokens": self.refresh_tokens,
            "authorization_codes": self.codes,
            "launches": self.launches,
        }


def remove_client(engine: Engine, client_id: str) -> Removal:
    """Delete a client with everything issued to it, in one transaction.

    Tokens are deleted rather than marked revoked: the rows refer to the client, and a token the
    store no longer knows is inactive everywhere (introspection, the FHIR server) at once. Unused
    codes and launches go too, so nothing the client was handed stays redeemable.
    """
    client = get_client(engine, client_id)
    if client is None:
        raise UnknownClient(f"No client is registered under the id {client_id!r}; see `aperture ehr clients list`.")
    counts: list[int] = []
    with engine.begin() as conn:
        for table in (access_tokens, refresh_tokens, authorization_codes, launches):  # launch_uses cascade
            counts.append(conn.execute(delete(table).where(table.c.client_id == client_id)).rowcount)
        for table in (preauthorizations, dynamic_clients, clients):
            conn.execute(delete(table).where(table.c.client_id == client_id))
    return Removal(client, *counts)


def approved_redirect_origins(engine: Engine) -> frozenset[str]:
    """The redirect origins of every approved client: browser apps that may call the sandbox cross-origin."""
    return frozenset(
        origin for client in list_clients(engine) if client.approved for origin in client.redirect_origins()
    )


def url_origin(uri: str) -> str | None:
    """`uri`'s origin as a browser sends it in `Origin` (lower case, default port left out); None if not a web URL."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


_LOOPBACK_IPS = {"127.0.0.1": "127.0.0.1", "::1": "[::1]"}


def _loopback_without_port(uri: str) -> str | None:
    """`uri` without its port when it is an http redirect to a loopback IP literal (RFC 8252 §7.3), else None.

    Only the IP literals count: RFC 8252 §8.3 advises against `localhost`, which a resolver may send elsewhere.
    """
    parts = urlsplit(uri)
    host = _LOOPBACK_IPS.get(parts.hostname or "")
    if parts.scheme != "http" or host is None or "@" in parts.netloc or parts.fragment:
        return None
    try:
        parts.port  # noqa: B018 - a port that is not a number makes it no loopback redirect
    except ValueError:
        return None
    return f"http://{host}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def _from_row(row: Any) -> Client:
    return Client(
        client_id=row["client_id"],
        kind=row["kind"],
        name=row["name"],
        scope=row["scope"],
        secret_hash=row["secret_hash"],
        jwks=json.loads(row["jwks"]) if row["jwks"] else None,
        jwks_uri=row["jwks_uri"],
        redirect_uris=tuple(json.loads(row["redirect_uris"])),
        introspect=bool(row["introspect"]),
        launch_url=row["launch_url"],
        pre_approved=bool(row["pre_approved"]),
        dynamic=row["dynamic_at"] is not None,
        approved=row["dynamic_at"] is None or row["approved_at"] is not None,
    )


def _check_registration(
    kind: ClientKind,
    scope: str,
    jwks: dict[str, Any] | None,
    jwks_uri: str | None,
    redirect_uris: tuple[str, ...],
    introspect: bool,
) -> None:
    if kind not in KINDS:
        raise InvalidClientMetadata(f"Client kind {kind!r} is not one of {', '.join(KINDS)}.")
    try:
        if kind == "backend":
            scopes.validate(scope, contexts=("system",))
            literal = [s for s in scope.split() if scopes.parse(s) is None]
            if literal:
                raise InvalidScope(f"A backend client gets system/ scopes only, not {literal[0]!r}.")
        else:
            scopes.validate(scope, contexts=("patient", "user"))
    except InvalidScope as exc:
        raise InvalidClientMetadata(exc.message) from None
    if kind == "backend":
        if (jwks is None) == (jwks_uri is None):
            raise InvalidClientMetadata("A backend client needs its public keys: give a JWK Set or a jwks_uri, one.")
        if jwks is not None:
            check_public_jwks(jwks)
        if jwks_uri is not None and not is_web_url(jwks_uri):
            raise InvalidClientMetadata(f"jwks_uri {jwks_uri!r} must be https (or http on loopback).")
    elif jwks is not None or jwks_uri is not None:
        raise InvalidClientMetadata("Only backend clients authenticate with keys; this kind does not take a JWK Set.")
    if kind == "public" and not redirect_uris:
        raise InvalidClientMetadata("A public client needs at least one redirect URI.")
    if kind == "backend" and redirect_uris:
        raise InvalidClientMetadata("A backend client has no browser flow, so no redirect URIs.")
    for uri in redirect_uris:
        if not is_web_url(uri) or urlsplit(uri).fragment:
            raise InvalidClientMetadata(
                f"Redirect URI {uri!r} must be https (or http on loopback), without a #fragment."
            )
    if introspect and kind != "confidential":
        raise InvalidClientMetadata("Only a confidential client (a resource server with a secret) may introspect.")


def check_public_jwks(jwks: dict[str, Any]) -> KeySet:
    """Refuse a JWK Set that is not a non-empty set of public RSA/EC signing keys, each with a kid."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidClientMetadata('A JWK Set is a JSON object {"keys": [...]} with at least one key.')
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise InvalidClientMetadata("Each key must be an RSA or EC JWK (RS384 or ES384 signatures).")
        if not key.get("kid"):
            raise InvalidClientMetadata("Each key needs a 'kid': assertions name their key by it.")
        if _PRIVATE_JWK_MEMBERS & key.keys():
            raise InvalidClientMetadata(f"Key {key['kid']!r} holds private parts; register the public key only.")
    try:
        return KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidClientMetadata(f"The JWK Set cannot be read: {exc}") from None


def is_web_url(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and is_secure_transport(uri)
