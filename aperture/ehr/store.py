"""The sandbox's own SQLite database in its `--data` folder: clients, tokens, codes, sign-ins, launches.

The sandbox is a separate party from the imaging server, so it keeps its own file (`ehr.sqlite3`)
and never opens the imaging index. SQLite is set up as the imaging server sets up its index (WAL,
`synchronous=FULL`, a busy timeout) so the admin CLI can write while the server runs. The schema is
created at open with `create_all`: sandbox data is disposable test and development state, so it
has no migrations; a changed schema means a fresh `--data` folder.

Secrets never reach this file in clear: client secrets, access and refresh tokens, authorization
codes, session cookies and launch ids are random values stored as SHA-256 hashes (see
`aperture.ehr.clients` and `aperture.ehr.tokens` for why a fast hash is enough); the seed users'
passwords, which people choose, get scrypt (`aperture.ehr.accounts`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
)

DATABASE_FILE = "ehr.sqlite3"

metadata = MetaData()


def stored_hash(secret: str) -> str:
    """What this file keeps of a random secret (token, code, client secret, cookie, launch id)."""
    return hashlib.sha256(secret.encode()).hexdigest()


clients = Table(
    "clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # confidential | public | backend
    Column("name", String(256), nullable=False),
    Column("scope", Text, nullable=False),  # registered scopes, space-separated
    Column("secret_hash", String(64)),  # SHA-256 hex of the client secret (confidential clients)
    Column("jwks", Text),  # inline public JWK Set as JSON (backend clients)
    Column("jwks_uri", Text),  # or where to fetch it (backend clients)
    Column("redirect_uris", Text, nullable=False, default="[]"),  # JSON list, matched exactly
    Column("introspect", Boolean, nullable=False, default=False),  # a resource server that may introspect
    Column("launch_url", Text),  # where the EHR launch page sends the browser (?iss=...&launch=...)
    Column("pre_approved", Boolean, nullable=False, default=False),  # organisational policy: no consent screen
    Column("created_at", Integer, nullable=False),
)

preauthorizations = Table(
    "preauthorizations",
    metadata,
    Column("client_id", String(128), ForeignKey("clients.client_id"), nullable=False),
    Column("patient", String(128), nullable=False),  # the patient's logical id
    Column("study", String(128), nullable=False, default=""),  # a StudyInstanceUID; "": every study of the patient
    PrimaryKeyConstraint("client_id", "patient", "study"),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 hex of the opaque token
    Column("client_id", String(128), ForeignKey("clients.client_id"), nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient", String(128)),  # launch context: the patient's logical id
    Column("user", String(256)),  # the signed-in user as a FHIR reference, e.g. Practitioner/123
    Column("audience", Text, nullable=False),  # JSON list of resource-server base URLs
    Column("issued_at", Integer, nullable=False),
    Column("expires_at", Integer, nullable=False),
    Column("revoked_at", Integer),
    Column("grant_id", String(64), index=True),  # the authorization code's hash it descends from
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 hex of the opaque refresh token
    Column("client_id", String(128), ForeignKey("clients.client_id"), nullable=False),
    Column("scope", Text, nullable=False),
    Column("account", String(128), nullable=False),  # login of the user who granted it
    Column("user", String(256)),
    Column("patient", String(128)),
    Column("session_hash", String(64)),  # online_access: valid only while this sign-in lasts
    Column("grant_id", String(64), nullable=False, index=True),
    Column("issued_at", Integer, nullable=False),
    Column("expires_at", Integer, nullable=False),
    Column("revoked_at", Integer),
)

authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),  # SHA-256 hex of the code
    Column("client_id", String(128), ForeignKey("clients.client_id"), nullable=False),
    Column("redirect_uri", Text),  # as sent in the authorization request (None: the registered default)
    Column("scope", Text, nullable=False),  # what the user granted
    Column("account", String(128), nullable=False),
    Column("user", String(256)),  # FHIR reference the user acts as
    Column("patient", String(128)),
    Column("session_hash", String(64)),
    Column("nonce", String(256)),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    Column("auth_time", Integer, nullable=False),
    Column("expires_at", Integer, nullable=False),
    Column("used_at", Integer),  # set by the first exchange; a second one revokes what the first got
)

accounts = Table(
    "accounts",
    metadata,
    Column("login", String(128), primary_key=True),
    Column("password_hash", String(256), nullable=False),  # scrypt, see aperture.ehr.accounts
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),  # SHA-256 hex of the cookie value
    Column("account", String(128), nullable=False),
    Column("auth_time", Integer, nullable=False),
    Column("expires_at", Integer, nullable=False),
)

launches = Table(
    "launches",
    metadata,
    Column("launch_hash", String(64), primary_key=True),  # SHA-256 hex of the launch parameter
    Column("client_id", String(128), ForeignKey("clients.client_id"), nullable=False),
    Column("account", String(128), nullable=False),  # who launched: only they can bind it
    Column("patient", String(128), nullable=False),
    Column("expires_at", Integer, nullable=False),
)

# Tables added after the first release are separate tables rather than new columns, so `create_all`
# adds them to an existing data folder instead of leaving it with a schema it cannot read.

dynamic_clients = Table(
    "dynamic_clients",
    metadata,
    Column("client_id", String(128), ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True),
    Column("registered_at", Integer, nullable=False),
    Column("approved_at", Integer),  # set by `aperture ehr clients approve`; None: not yet approved
)

launch_uses = Table(
    "launch_uses",
    metadata,
    Column("launch_hash", String(64), ForeignKey("launches.launch_hash", ondelete="CASCADE"), primary_key=True),
    Column("code_challenge", String(128), nullable=False),  # the one authorization request the launch serves
    Column("used_at", Integer),  # that request has ended (code issued or access denied): the launch is spent
)

assertion_ids = Table(
    "assertion_ids",
    metadata,
    Column("client_id", String(128), nullable=False),
    Column("jti", String(256), nullable=False),
    Column("expires_at", Integer, nullable=False),  # kept until the assertion itself has expired
    PrimaryKeyConstraint("client_id", "jti"),
)


def open_store(data: Path) -> Engine:
    """Open (creating if needed) the sandbox database in `data`."""
    data.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{data / DATABASE_FILE}",
        connect_args={"check_same_thread": False, "timeout": 30},
        hide_parameters=True,  # error messages reach the log; parameters are hashes, logins, patient ids
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    metadata.create_all(engine)
    return engine
