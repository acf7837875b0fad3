"""`private_key_jwt`: backend clients authenticate with a JWT they sign (RFC 7523 §2.2, SMART Backend Services).

Authlib's `JWTBearerClientAssertion` does the RFC 7523 work (find the client by `sub`, check
`iss == sub`, `aud`, `exp`, `jti`) with joserfc. This subclass adds what SMART Backend Services
asks on top, each refusal an RFC 6749 `invalid_client`:

- only RS384 and ES384 signatures (joserfc refuses `none` and HS* because they are not listed; it
  also treats RS384/ES384 as "not recommended" unless listed, which is why the decode is overridden);
- the header names its key by `kid`, found in the client's registered JWK Set, inline or fetched
  from its `jwks_uri` (refetched once when the kid is new, for key rotation); a `jku` header must
  equal the registered `jwks_uri`, so the sandbox never fetches a URL a caller chose;
- `aud` is exactly the token endpoint URL;
- `exp` is at most five minutes ahead, and not past (a small leeway for clock skew);
- each `jti` is accepted once per client while its assertion could still be valid, and an
  assertion that leaked (sent in a query string, which logs keep) is spent unused (`spend`).

A `jwks_uri` is a URL an anonymous client may choose (dynamic registration), so fetching it is
fenced (`fetch_jwks`): only https to a host whose every address is public (not loopback, private,
link-local, multicast or reserved), connecting to the address that was checked (so DNS cannot
change it between check and fetch); plain http or a non-public host only for an origin the admin
listed in `jwks_allowed_origins`. No redirects, no proxies from the environment, JWKS_TIMEOUT
seconds to connect and between reads, JWKS_DEADLINE seconds from connecting to the end of the body
(checked after each read, so a fetch ends within JWKS_DEADLINE + JWKS_TIMEOUT of connecting), at
most MAX_JWKS_BYTES. Name resolution is the system resolver's, with its own timeouts. Whatever
goes wrong, the client reads the same JWKS_FAILURE (so the sandbox is no oracle for which ports
answer inside its network); the log says what it was. A failed fetch is retried at most every
JWKS_REFRESH_SECONDS.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, Key, KeySet
from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from aperture.ehr.clients import Client, check_public_jwks, get_client
from aperture.ehr.config import origin
from aperture.ehr.errors import InvalidClientMetadata, wire_description
from aperture.ehr.store import assertion_ids

log = logging.getLogger("aperture.ehr")

ALGORITHMS = ["RS384", "ES384"]
MAX_LIFETIME = 300  # seconds an assertion may be valid for: SMART Backend Services says five minutes
CLOCK_SKEW = 10  # seconds of leeway on exp (and on the five-minute horizon)
JWKS_CACHE_SECONDS = 300
JWKS_REFRESH_SECONDS = 5  # an unknown kid (or a failed fetch) refetches at most this often per URI
JWKS_TIMEOUT = 3.0  # seconds to connect, and between two reads of the answer
JWKS_DEADLINE = 5.0  # seconds for the whole answer
MAX_JWKS_BYTES = 64 * 1024  # a JWK Set of a few keys is a few kB
MAX_JWKS_URI_LENGTH = 2048
JWKS_FAILURE = "Could not get a usable JWK Set from the client's jwks_uri."
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*", re.ASCII)


def invalid_client(description: str) -> InvalidClientError:
    """An RFC 6749 invalid_client whose description is kept to the characters §5.2 allows."""
    return InvalidClientError(description=wire_description(description))


class PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, engine: Engine, token_endpoint: str, jwks: RemoteJWKS) -> None:
        super().__init__(validate_jti=True, leeway=CLOCK_SKEW)
        self.engine = engine
        self.token_endpoint = token_endpoint
        self.remote_jwks = jwks

    def get_audiences(self) -> list[str]:
        return [self.token_endpoint]

    def resolve_client_public_key(self, client: Client) -> Callable[[GuestProtocol], Key]:
        """A key resolver joserfc calls with the assertion's header (Authlib passes only the client)."""

        def resolve(token: GuestProtocol) -> Key:
            header = token.headers()
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise invalid_client("The assertion header has no 'kid' naming the signing key.")
            jku = header.get("jku")
            if jku is not None and jku != client.jwks_uri:
                raise invalid_client("The assertion's 'jku' is not the jwks_uri registered for this client.")
            if client.kind != "backend" or (client.jwks is None and client.jwks_uri is None):
                raise invalid_client(f"Client {client.client_id!r} has no registered keys: it cannot sign assertions.")
            if client.jwks is not None:
                return _key_by_kid(KeySet.import_key_set(client.jwks), kid)  # type: ignore[arg-type]
            assert client.jwks_uri is not None
            keys = self.remote_jwks.get(client.jwks_uri)
            if not _has_kid(keys, kid):
                keys = self.remote_jwks.get(client.jwks_uri, refresh=True)
            return _key_by_kid(keys, kid)

        return resolve

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """As Authlib's, but JSON nested past Python's recursion limit is invalid_client, not a 500."""
        try:
            return super().extract_assertion(assertion)  # type: ignore[no-any-return]
        except RecursionError:
            raise invalid_client("The client assertion's payload is not a JSON object.") from None

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ALGORITHMS)
        except RecursionError:
            raise invalid_client("The client assertion is not acceptable: JSON nested too deep.") from None
        except JoseError as exc:
            raise invalid_client(f"The client assertion is not acceptable: {exc.description or exc.error}") from exc
        self.verify_claims(token.claims)
        return dict(token.claims)

    def verify_claims(self, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if isinstance(exp, bool) or (isinstance(exp, float) and not math.isfinite(exp)):
            raise invalid_client("The assertion's 'exp' must be a number of seconds since 1970.")
        if isinstance(exp, int | float) and exp > time.time() + MAX_LIFETIME + CLOCK_SKEW:
            raise invalid_client("The assertion's 'exp' is more than five minutes ahead.")
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise invalid_client("The assertion's 'jti' must be a string.")
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Remember `jti` for this client until its assertion expires; False if already seen."""
        now = int(time.time())
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(assertion_ids).where(assertion_ids.c.expires_at < now - CLOCK_SKEW))
                conn.execute(
                    insert(assertion_ids).values(client_id=claims["sub"], jti=jti, expires_at=int(claims["exp"]))
                )
        except IntegrityError:
            return False
        return True

    def spend(self, assertion: str) -> None:
        """Use up the `jti` of an assertion that leaked, so that it can never authenticate.

        Only an assertion whose signature verifies with its client's registered key is recorded
        (anything else could never authenticate anyway, and recording it would let anyone fill the
        table), until its own `exp` however far ahead, since it would become acceptable once within
        five minutes of it. Refusals are silent: the caller refuses the request regardless.
        """
        try:
            claims = json.loads(jws.extract_compact(assertion.encode()).payload)
            client = get_client(self.engine, claims["sub"]) if isinstance(claims.get("sub"), str) else None
            if client is None:
                return
            token = jwt.decode(assertion, self.resolve_client_public_key(client), algorithms=ALGORITHMS)
        except (JoseError, InvalidClientError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return
        jti, exp = token.claims.get("jti"), token.claims.get("exp")
        if not isinstance(jti, str) or isinstance(exp, bool) or not isinstance(exp, int | float):
            return
        if not math.isfinite(exp) or exp < time.time() - CLOCK_SKEW:
            return  # expired: it can never be accepted
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(assertion_ids).values(client_id=client.client_id, jti=jti, expires_at=int(min(exp, 2**62)))
                )
        except IntegrityError:
            pass  # already used or spent


class RemoteJWKS:
    """JWK Sets fetched from clients' `jwks_uri` (see `fetch_jwks`), cached for a few minutes.

    Only registered URIs are ever fetched (the caller passes `client.jwks_uri`). A failed fetch is
    the client's problem, so it is an invalid_client, always with the same JWKS_FAILURE text.
    """

    def __init__(self, allowed_origins: tuple[str, ...] = ()) -> None:
        self.allowed_origins = allowed_origins
        # uri -> (when last fetched or tried, the last good JWK Set or None): a failed refetch keeps the keys
        self._cache: dict[str, tuple[float, KeySet | None]] = {}
        self._fetching: dict[str, threading.Lock] = {}  # one fetch per URI at a time; the others wait for it
        self._lock = threading.Lock()

    def get(self, uri: str, *, refresh: bool = False) -> KeySet:
        keys = self._cached(uri, refresh)
        if keys is not None:
            return keys
        with self._lock:
            fetching = self._fetching.setdefault(uri, threading.Lock())
        with fetching:
            keys = self._cached(uri, refresh)  # fetched by another request while this one waited
            if keys is not None:
                return keys
            try:
                found: KeySet | None = fetch_jwks(uri, self.allowed_origins)
            except JwksUnavailable as exc:
                log.info("jwks_uri %s not used: %s", _for_log(uri), exc)
                found = None
            with self._lock:
                previous = self._cache.get(uri, (0.0, None))[1]
                self._cache[uri] = (time.monotonic(), found or previous)
        if found is None and previous is None:
            raise invalid_client(JWKS_FAILURE)
        return found or previous  # type: ignore[return-value]

    def _cached(self, uri: str, refresh: bool) -> KeySet | None:
        """The cached keys while they may be used, None when a fetch is due; raises while a failure stands."""
        with self._lock:
            cached = self._cache.get(uri)
        if not cached:
            return None
        tried_at, keys = cached
        if time.monotonic() - tried_at < (JWKS_REFRESH_SECONDS if refresh or keys is None else JWKS_CACHE_SECONDS):
            if keys is None:
                raise invalid_client(JWKS_FAILURE)
            return keys
        return None


class JwksUnavailable(Exception):
    """Why a jwks_uri gave no JWK Set: for the log only, never for the client."""


def jwks_uri_problem(uri: str, allowed_origins: tuple[str, ...]) -> str | None:
    """What makes `uri` a jwks_uri the sandbox will not fetch, judged without the network; None if fine."""
    if len(uri) > MAX_JWKS_URI_LENGTH:
        return f"is longer than {MAX_JWKS_URI_LENGTH} characters"
    if origin(uri) in allowed_origins:
        return None
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "is not a URL"
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https URL (http only for an origin in the sandbox's jwks_allowed_origins)"
    if parts.username is not None or parts.password is not None or parts.fragment or "#" in uri:
        return "must have no user name, password or #fragment"
    host = parts.hostname.rstrip(".")
    if not _HOST_NAME.fullmatch(host) and not host.count(":"):
        return "must name its host in ASCII letters, digits, '-' and '.' (an IDN in its xn-- form)"
    if host == "localhost" or host.endswith(".localhost"):
        return "must name a public host, not localhost"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: its addresses are checked when it is fetched
    if not _public(address):
        return "must name a public host, not a loopback, private, link-local or reserved address"
    return None


def fetch_jwks(uri: str, allowed_origins: tuple[str, ...]) -> KeySet:
    """The JWK Set at `uri`, under the rules in this module's docstring; JwksUnavailable otherwise."""
    problem = jwks_uri_problem(uri, allowed_origins)
    if problem:
        raise JwksUnavailable(f"it {problem}")
    parts = urlsplit(uri)
    assert parts.hostname is not None
    url, headers, extensions = uri, {"Accept-Encoding": "identity"}, {}
    if origin(uri) not in allowed_origins:
        address = _public_address(parts.hostname, parts.port or 443)
        host = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = parts._replace(netloc=netloc).geturl()
        headers["Host"] = parts.netloc  # the name, as the server expects it
        extensions = {"sni_hostname": parts.hostname}  # and TLS checks the certificate against the name
    deadline = time.monotonic() + JWKS_DEADLINE
    try:
        with (
            httpx.Client(timeout=JWKS_TIMEOUT, follow_redirects=False, trust_env=False) as client,
            client.stream("GET", url, headers=headers, extensions=extensions) as response,
        ):
            if response.status_code != 200:
                raise JwksUnavailable(f"it answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable(f"its answer is larger than {MAX_JWKS_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise JwksUnavailable(f"its answer took longer than {JWKS_DEADLINE} s")
    except httpx.HTTPError as exc:
        raise JwksUnavailable(f"{type(exc).__name__}: {exc}") from None
    try:
        return check_public_jwks(json.loads(body))
    except (ValueError, RecursionError, InvalidClientMetadata) as exc:
        raise JwksUnavailable(f"its answer is not a usable JWK Set: {getattr(exc, 'message', exc)}") from None


def _for_log(uri: str) -> str:
    """`uri` without a user name, password or query, which might hold a secret."""
    try:
        parts = urlsplit(uri)
        return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()
    except ValueError:
        return "(not a URL)"


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _public_address(host: str, port: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address to connect to: the first of `host`'s, if every one of them is public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise JwksUnavailable(f"its host does not resolve: {exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or not all(_public(a) for a in addresses):
        raise JwksUnavailable("its host has a loopback, private, link-local or reserved address")
    return addresses[0]


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _key_by_kid(keys: KeySet, kid: str) -> Key:
    for key in keys.keys:
        if key.kid == kid:
            return key
    raise invalid_client(f"No key with kid {kid!r} is registered for this client.")
