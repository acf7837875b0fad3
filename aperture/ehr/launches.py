"""EHR launch contexts: what the `launch` parameter stands for.

When a signed-in user launches an app from the EHR launch page, the sandbox records the app, the
user and the patient under a random value, and sends the browser to the app's launch URL with
`iss` and `launch`. The app passes `launch` back to the authorization endpoint, which binds the
patient from here, never from anything the app says. A launch is only good for the app it was made
for, for the user who made it, and for a few minutes.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from aperture.ehr.store import launches, stored_hash

LAUNCH_LIFETIME = 300  # seconds from the click to the authorization request


@dataclass(frozen=True)
class Launch:
    client_id: str
    account: str
    patient: str


def create_launch(engine: Engine, *, client_id: str, account: str, patient: str) -> str:
    """Record a launch and return the opaque value for the app's `launch` parameter."""
    value = secrets.token_urlsafe(24)
    now = int(time.time())
    with engine.begin() as conn:
        conn.execute(delete(launches).where(launches.c.expires_at < now))
        conn.execute(
            insert(launches).values(
                launch_hash=stored_hash(value),
                client_id=client_id,
                account=account,
                patient=patient,
                expires_at=now + LAUNCH_LIFETIME,
            )  # fmt: skip
        )
    return value


def find_launch(engine: Engine, value: str) -> Launch | None:
    """The launch recorded under `value`, if it has not expired."""
    with engine.connect() as conn:
        row = conn.execute(select(launches).where(launches.c.launch_hash == stored_hash(value))).mappings().first()
    if row is None or row["expires_at"] < time.time():
        return None
    return Launch(row["client_id"], row["account"], row["patient"])
