"""Access tokens: opaque random strings, known to the database only by their SHA-256 hash.

A token is `secrets.token_urlsafe(32)` (256 random bits), so it means nothing by itself: a resource
server learns what it allows only by asking the sandbox (RFC 7662 introspection), and revoking it
takes effect at once. The database keeps the hash with the client, scope, launch context (patient,
user), audience and times; a copy of the database therefore yields no usable token. SHA-256 rather
than a slow hash for the same reason as client secrets: the values are random, not chosen.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin
from sqlalchemy import Engine, insert, select, update

from aperture.ehr.store import access_tokens, refresh_tokens, stored_hash

REFRESH_SCOPES = ("offline_access", "online_access")
OFFLINE_LIFETIME = 30 * 86400  # seconds an offline_access refresh token lasts; online_access ends with the sign-in


class _StoredToken(TokenMixin):  # type: ignore[misc]
    """What every stored token answers Authlib: whose it is, its scope, and whether it still counts."""

    client_id: str
    scope: str
    expires_at: int
    revoked_at: int | None

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class AccessToken(_StoredToken):
    """A stored token as Authlib's introspection and revocation endpoints see it."""

    token_hash: str
    client_id: str
    scope: str
    audience: tuple[str, ...]
    issued_at: int
    expires_at: int
    patient: str | None = None
    user: str | None = None
    revoked_at: int | None = None

    def get_expires_in(self) -> int:
        return self.expires_at - self.issued_at

    def get_user(self) -> str | None:
        return self.user


@dataclass(frozen=True)
class Grantee:
    """Who granted a browser-launch token, and for which patient: what Authlib calls the token's user."""

    account: str  # the login (the id_token's stable `sub`)
    user: str  # the FHIR reference they act as (fhirUser), e.g. RelatedPerson/elena-for-maya
    patient: str | None  # launch context
    scope: str  # what they granted (after the consent screen)
    session_hash: str | None = None  # their sign-in, which online_access refresh tokens live with
    auth_time: int = 0


def new_token_response(
    scope: str, lifetime: int, *, refresh: bool = False, grant_scope: str | None = None
) -> dict[str, Any]:
    """A fresh RFC 6749 §5.1 token response, before it is stored (Authlib's generate/save split).

    A refresh token comes only when asked for (`refresh`) and the grant's scope (`grant_scope`,
    by default the token's `scope`) has offline_access or online_access, as SMART 2.2 says.
    """
    response = {
        "access_token": secrets.token_urlsafe(32),
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": scope,
    }
    if refresh and any(s in REFRESH_SCOPES for s in (grant_scope or scope).split()):
        response["refresh_token"] = secrets.token_urlsafe(32)
    return response


def store_token(
    engine: Engine,
    response: dict[str, Any],
    *,
    client_id: str,
    audience: Sequence[str],
    patient: str | None = None,
    user: str | None = None,
    grant_id: str | None = None,
) -> None:
    """Record the token of `response` by its hash; `response` gains the SMART launch context fields.

    `grant_id` names the authorization code the token descends from (directly or by refresh), so
    that all of them can be revoked if that code is presented twice.
    """
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(
            insert(access_tokens).values(
                token_hash=stored_hash(response["access_token"]),
                client_id=client_id,
                scope=response["scope"],
                patient=patient,
                user=user,
                audience=json.dumps(list(audience)),
                issued_at=now,
                expires_at=now + int(response["expires_in"]),
                grant_id=grant_id,
            )
        )
    if patient is not None:
        response["patient"] = patient


def find_token(engine: Engine, token: str) -> AccessToken | None:
    with engine.connect() as conn:
        row = (
            conn.execute(select(access_tokens).where(access_tokens.c.token_hash == stored_hash(token)))
            .mappings()
            .first()
        )
    if row is None:
        return None
    return AccessToken(
        token_hash=row["token_hash"],
        client_id=row["client_id"],
        scope=row["scope"],
        audience=tuple(json.loads(row["audience"])),
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        patient=row["patient"],
        user=row["user"],
        revoked_at=row["revoked_at"],
    )


def revoke_token(engine: Engine, token: AccessToken) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(access_tokens)
            .where(access_tokens.c.token_hash == token.token_hash, access_tokens.c.revoked_at.is_(None))
            .values(revoked_at=int(time.time()))
        )


@dataclass(frozen=True)
class RefreshToken(_StoredToken):
    """A stored refresh token as Authlib's refresh_token grant sees it."""

    token_hash: str
    client_id: str
    scope: str
    grantee: Grantee
    grant_id: str
    expires_at: int
    revoked_at: int | None = None

    def get_expires_in(self) -> int:
        return self.expires_at - int(time.time())


def store_refresh_token(engine: Engine, token: str, *, client_id: str, grantee: Grantee, grant_id: str) -> None:
    """Record a refresh token by its hash; online_access ones are tied to the grantee's sign-in."""
    now = int(time.time())
    online = "offline_access" not in grantee.scope.split()
    with engine.begin() as conn:
        conn.execute(
            insert(refresh_tokens).values(
                token_hash=stored_hash(token),
                client_id=client_id,
                scope=grantee.scope,
                account=grantee.account,
                user=grantee.user,
                patient=grantee.patient,
                session_hash=grantee.session_hash if online else None,
                grant_id=grant_id,
                issued_at=now,
                expires_at=now + OFFLINE_LIFETIME,
            )  # fmt: skip
        )


def find_refresh_token(engine: Engine, token: str) -> RefreshToken | None:
    with engine.connect() as conn:
        row = (
            conn.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == stored_hash(token)))
            .mappings()
            .first()
        )
    if row is None:
        return None
    grantee = Grantee(row["account"], row["user"], row["patient"], row["scope"], row["session_hash"])
    return RefreshToken(
        row["token_hash"],
        row["client_id"],
        row["scope"],
        grantee,
        row["grant_id"],
        row["expires_at"],
        row["revoked_at"],
    )


def spend_refresh_token(engine: Engine, token_hash: str) -> bool:
    """Revoke a live refresh token in one statement; False if it was not live (spent by someone else first)."""
    with engine.begin() as conn:
        spent = conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.token_hash == token_hash, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=int(time.time()))
        ).rowcount
    return bool(spent)


def revoke_grant(engine: Engine, grant_id: str) -> None:
    """Revoke every access and refresh token descending from one authorization code.

    For a reused code (RFC 6749 §4.1.2), a reused refresh token (RFC 9700 §4.14.2) and a revoked
    refresh token (RFC 7009 §2.1).
    """
    now = int(time.time())
    with engine.begin() as conn:
        for table in (access_tokens, refresh_tokens):
            conn.execute(
                update(table).where(table.c.grant_id == grant_id, table.c.revoked_at.is_(None)).values(revoked_at=now)
            )
