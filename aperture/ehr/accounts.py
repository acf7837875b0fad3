"""Sign-in for the seed users: their demo passwords, kept only as scrypt hashes.

Unlike tokens and client secrets (256 random bits, where SHA-256 is enough), passwords are chosen by
people and guessable, so they get a slow, salted hash: the standard library's scrypt (RFC 7914).
The stored form is `scrypt$n$r$p$salt$hash` so the cost can change without a schema change.
Accounts are written from the seed file at startup; a login that is not in the seed file does not
exist. The sign-in pages go through `attempt_sign_in`, which applies the throttle
(`aperture.ehr.throttle`) before any password is checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.dialects.sqlite import insert
from starlette.requests import Request

from aperture.ehr.people import Directory, User
from aperture.ehr.store import accounts
from aperture.ehr.throttle import SignInThrottle

_N, _R, _P = 2**14, 8, 1  # about 16 MiB and a few tens of ms: fine for a sandbox's sign-ins


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.urlsafe_b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.urlsafe_b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


def seed_accounts(engine: Engine, directory: Directory) -> None:
    """Store a password hash for every seed user that has none yet (existing hashes are kept)."""
    with engine.connect() as conn:
        known = set(conn.execute(select(accounts.c.login)).scalars())
    missing = [user for user in directory.users.values() if user.login not in known]
    if not missing:
        return
    with engine.begin() as conn:
        for user in missing:
            row = {"login": user.login, "password_hash": hash_password(user.password)}
            conn.execute(insert(accounts).values(**row).on_conflict_do_nothing())


def sign_in(engine: Engine, directory: Directory, login: str, password: str) -> User | None:
    """The user whose login and password these are, or None (the same None for either mistake)."""
    with engine.connect() as conn:
        stored = conn.execute(select(accounts.c.password_hash).where(accounts.c.login == login)).scalar()
    if stored is None:
        hash_password(password)  # spend the same time as for a known login
        return None
    if not password_matches(password, stored):
        return None
    return directory.user(login)


@dataclass(frozen=True)
class SignInAttempt:
    user: User | None  # None: refused
    retry_after: int = 0  # > 0: refused unchecked, the user name or the address is locked for so many seconds


def attempt_sign_in(request: Request, login: str, password: str) -> SignInAttempt:
    """A sign-in from one of the pages, through the app's throttle; a locked name or address is not checked."""
    throttle: SignInThrottle = request.app.state.sign_in_throttle
    address = request.client.host if request.client else "unknown"
    wait = throttle.begin(login, address)
    if wait:
        return SignInAttempt(None, wait)
    try:
        user = sign_in(request.app.state.authorization.engine, request.app.state.directory, login, password)
    except BaseException:
        throttle.failed(login, address)
        raise
    if user is None:
        throttle.failed(login, address)
        return SignInAttempt(None)
    throttle.succeeded(login, address)
    return SignInAttempt(user)
