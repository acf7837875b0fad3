"""One log line per request on `aperture.access`, with secrets in the query string redacted.

granian's own access log is off because it writes query strings as they came, and OAuth-style
parameters (`access_token`, `code`, ...) carry credentials. This layer logs what an operator needs
(client, method, path, query, status, bytes sent, duration) and replaces the values of those
parameters with `REDACTED`. Headers are never logged, so neither is `Authorization`. It wraps the
whole application, so answers made by Starlette's error middleware (500) are logged too.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("aperture.access")

SECRET_PARAMETERS = frozenset(
    {"token", "access_token", "code", "id_token", "refresh_token", "client_secret", "password"}
)
# Cheap test before any parsing: every secret name contains one of these (lower case), and a name
# written with %-escapes or '+' could hide one.
_NEEDLES = ("token", "code", "secret", "password", "%", "+")


class AccessLog:
    """Logs `client method path?query status bytes duration` after each HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0
        declared = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent, declared
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-length" and value.isdigit():
                        declared = int(value)
            elif kind == "http.response.pathsend":  # the server sends the file itself
                sent += declared
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            duration = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s %s %d %d %.1fms",
                client_address(scope),
                scope["method"],
                target(scope),
                status or 500,  # nothing was sent: the request failed before any answer
                sent,
                duration,
            )


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def target(scope: Scope) -> str:
    """The path (still %-encoded when the server gives it) and the redacted query, safe for one log line."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    text = f"{path}?{redact(query)}" if query else path
    if not text.isprintable():  # a decoded %0A must not start a forged log line
        text = text.encode("unicode_escape").decode("ascii")
    return text


def redact(query: str) -> str:
    """`query` with the value of every secret parameter replaced by REDACTED (names match case-insensitively)."""
    lowered = query.lower()
    if not any(needle in lowered for needle in _NEEDLES):
        return query
    pairs = query.split("&")
    for index, pair in enumerate(pairs):
        name, equals, _value = pair.partition("=")
        if equals and unquote_plus(name).lower() in SECRET_PARAMETERS:
            pairs[index] = f"{name}=REDACTED"
    return "&".join(pairs)
