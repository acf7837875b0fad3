"""Browser sign-in sessions and the anti-forgery token of the sandbox's forms.

A session is a random cookie value (HttpOnly, SameSite=Lax, Path=/), stored only as its SHA-256
hash with the login and the time of sign-in (`auth_time` in id_tokens; `online_access` refresh
tokens end with it). Every form carries an anti-forgery value, so another site cannot post a
sign-in or a consent on the user's behalf. Before sign-in it is a random value that must equal a
cookie of its own (double-submit). From sign-in on it is derived from the session cookie's secret
value (HMAC), so it changes at every sign-in, and a value known before (one an attacker planted in
the CSRF cookie, say) is worth nothing after. Signing out deletes the session row, so the old
cookie signs in to nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select
from starlette.requests import Request
from starlette.responses import Response

from aperture.ehr.store import sessions, stored_hash

SESSION_COOKIE = "aperture_ehr_session"
CSRF_COOKIE = "aperture_ehr_csrf"
SESSION_LIFETIME = 8 * 3600


@dataclass(frozen=True)
class Session:
    session_hash: str
    account: str
    auth_time: int
    csrf: str = ""  # the anti-forgery value of this sign-in's forms (`session_csrf`)


def session_csrf(cookie_value: str) -> str:
    """The anti-forgery value for a signed-in browser: only who holds the (HttpOnly) session cookie knows it."""
    digest = hmac.new(cookie_value.encode(), b"aperture-ehr-csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def current_session(engine: Engine, request: Request) -> Session | None:
    value = request.cookies.get(SESSION_COOKIE)
    if not value:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(sessions).where(sessions.c.session_hash == stored_hash(value))).mappings().first()
    if row is None or row["expires_at"] <= time.time():
        return None
    return Session(row["session_hash"], row["account"], row["auth_time"], session_csrf(value))


def session_alive(engine: Engine, session_hash: str) -> bool:
    with engine.connect() as conn:
        expires = conn.execute(select(sessions.c.expires_at).where(sessions.c.session_hash == session_hash)).scalar()
    return expires is not None and expires > time.time()


def start_session(engine: Engine, account: str) -> tuple[str, Session]:
    """Record a new sign-in; returns the cookie value (set it with `set_session_cookie`) and the session."""
    value = secrets.token_urlsafe(32)
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(delete(sessions).where(sessions.c.expires_at < now))
        conn.execute(
            insert(sessions).values(
                session_hash=stored_hash(value), account=account, auth_time=now, expires_at=now + SESSION_LIFETIME
            )
        )
    return value, Session(stored_hash(value), account, now, session_csrf(value))


def set_session_cookie(response: Response, value: str, *, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE, value, max_age=SESSION_LIFETIME, httponly=True, samesite="lax", secure=secure, path="/"
    )


def end_session(engine: Engine, request: Request, response: Response) -> None:
    value = request.cookies.get(SESSION_COOKIE)
    if value:
        with engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.session_hash == stored_hash(value)))
    response.delete_cookie(SESSION_COOKIE, path="/")


def csrf_token(request: Request, session: Session | None = None, *, cookie: str = CSRF_COOKIE) -> str:
    """The anti-forgery value for forms on this page (set it with `keep_csrf`).

    Signed in: the session's. Not: the `cookie`'s, or a new random one. A page with no sign-in of its
    own (the developer page) passes a cookie of its own, so a sign-in in another tab does not change it.
    """
    if session is not None:
        return session.csrf
    return request.cookies.get(cookie) or new_csrf_token()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def keep_csrf(response: Response, token: str, *, secure: bool, cookie: str = CSRF_COOKIE) -> None:
    response.set_cookie(cookie, token, httponly=True, samesite="lax", secure=secure, path="/")


def csrf_ok(
    request: Request, submitted: str | None, session: Session | None = None, *, cookie: str = CSRF_COOKIE
) -> bool:
    """Whether a form post carries the right anti-forgery value: the session's if signed in, else the cookie's."""
    expected = session.csrf if session is not None else request.cookies.get(cookie)
    if not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())
