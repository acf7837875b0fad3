"""Browser sign-in sessions and the anti-forgery token of the sandbox's forms.

A session is a random cookie value (HttpOnly, SameSite=Lax, Path=/), stored only as its SHA-256
hash with the login and the time of sign-in (`auth_time` in id_tokens; `online_access` refresh
tokens end with it). Every form carries a second random value that must equal a cookie of its own
(double-submit), so another site cannot post a sign-in or a consent on the user's behalf.
"""

from __future__ import annotations

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


def current_session(engine: Engine, request: Request) -> Session | None:
    value = request.cookies.get(SESSION_COOKIE)
    if not value:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(sessions).where(sessions.c.session_hash == stored_hash(value))).mappings().first()
    if row is None or row["expires_at"] <= time.time():
        return None
    return Session(row["session_hash"], row["account"], row["auth_time"])


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
    return value, Session(stored_hash(value), account, now)


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


def csrf_token(request: Request) -> str:
    """The anti-forgery value for forms on this page: the cookie's, or a new one (set it with `keep_csrf`)."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)


def keep_csrf(response: Response, token: str, *, secure: bool) -> None:
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="lax", secure=secure, path="/")


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and submitted) and hmac.compare_digest(cookie.encode(), (submitted or "").encode())
