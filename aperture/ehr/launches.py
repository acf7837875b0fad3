"""EHR launch contexts: what the `launch` parameter stands for.

When a signed-in user launches an app from the EHR launch page, the sandbox records the app, the
user and the patient under a random value, and sends the browser to the app's launch URL with
`iss` and `launch`. The app passes `launch` back to the authorization endpoint, which binds the
patient from here, never from anything the app says. A launch is only good for the app it was made
for, for the user who made it, for a few minutes (`LAUNCH_LIFETIME`), and for one authorization
request: the first one its user signs in to binds it (by that request's PKCE `code_challenge`, which
is new for every request), so every step of that request may repost it, and when that request ends
(a code is issued, or the user denies) the launch is spent. Any other request with it is refused.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from aperture.ehr.store import launch_uses, launches, stored_hash

LAUNCH_LIFETIME = 300  # seconds from the click to the authorization request
LAUNCH_USED = "This 'launch' was already used by another authorization request; launch the app again from the EHR."


@dataclass(frozen=True)
class Launch:
    client_id: str
    account: str
    patient: str
    launch_hash: str = ""
    request: str | None = None  # the code_challenge of the authorization request it is bound to
    spent: bool = False

    def serves(self, code_challenge: str | None) -> bool:
        """Whether the authorization request with this `code_challenge` may still use the launch."""
        return not self.spent and self.request in (None, code_challenge)


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
    """The launch recorded under `value`, if it has not expired (spent or not: see `Launch.serves`)."""
    query = select(launches, launch_uses.c.code_challenge, launch_uses.c.used_at).select_from(
        launches.outerjoin(launch_uses, launch_uses.c.launch_hash == launches.c.launch_hash)
    )
    with engine.connect() as conn:
        row = conn.execute(query.where(launches.c.launch_hash == stored_hash(value))).mappings().first()
    if row is None or row["expires_at"] < time.time():
        return None
    return Launch(row["client_id"], row["account"], row["patient"], row["launch_hash"], row["code_challenge"],
                  row["used_at"] is not None)  # fmt: skip


def bind_launch(engine: Engine, launch: Launch, code_challenge: str) -> bool:
    """Bind the launch to one authorization request; False if another request has it, or it is spent."""
    with engine.begin() as conn:
        conn.execute(
            sqlite_insert(launch_uses)
            .values(launch_hash=launch.launch_hash, code_challenge=code_challenge)
            .on_conflict_do_nothing()
        )
        row = conn.execute(select(launch_uses).where(launch_uses.c.launch_hash == launch.launch_hash)).mappings().one()
    return row["code_challenge"] == code_challenge and row["used_at"] is None


def spend_launch(engine: Engine, launch: Launch, code_challenge: str) -> bool:
    """Mark the launch used by the request it is bound to; False if it was not that request's, or already spent."""
    with engine.begin() as conn:
        result = conn.execute(
            update(launch_uses)
            .where(
                launch_uses.c.launch_hash == launch.launch_hash,
                launch_uses.c.code_challenge == code_challenge,
                launch_uses.c.used_at.is_(None),
            )  # fmt: skip
            .values(used_at=int(time.time()))
        )
    return result.rowcount == 1
