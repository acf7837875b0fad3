"""Cross-origin access (CORS) for browser-only SMART apps, as ASGI middleware around the sandbox.

A SMART app served from another origin fetches discovery and the JWKS, exchanges its code at the
token endpoint and reads FHIR with `fetch()`; the browser lets it read the answers only if they
carry `Access-Control-Allow-Origin`, and sends `Authorization` or a JSON `Content-Type` only after
a preflight says so. This layer sits outside Starlette's error handling, so 4xx and 5xx answers
carry the headers too (otherwise the app sees a CORS failure instead of the OAuth or FHIR error).

Only the bearer-token endpoints get CORS: `/fhir/...` (discovery and FHIR), the JWKS, token,
introspection, revocation and registration. The sign-in, consent, launch and sign-out pages work
with cookies and forms and never get it. Allowed origins are `ehr.cors_origins` plus the redirect
URI origins of every approved registered app; `["*"]` allows any origin and is answered
`Access-Control-Allow-Origin: *`. `Access-Control-Allow-Credentials` is never sent: the bearer
endpoints need no cookies. Every answer on those paths has `Vary: Origin`, since whether it carries
the header depends on the request's Origin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOW_METHODS = b"GET, HEAD, POST, OPTIONS"
ALLOW_HEADERS = b"Authorization, Content-Type, Accept, Accept-Language, Prefer, If-None-Match, If-Modified-Since"
EXPOSE_HEADERS = b"WWW-Authenticate, Location, Content-Location, ETag, Last-Modified, Retry-After"
MAX_AGE = b"600"  # seconds a browser may reuse a preflight answer

REGISTERED_SECONDS = 0.25  # approved apps' origins are read from the store at most this often (4 reads/s)

_EXACT_PATHS = frozenset({"/.well-known/jwks.json", "/auth/token", "/auth/introspect", "/auth/revoke", "/register"})


def cors_path(path: str) -> bool:
    """Whether `path` is a bearer-token endpoint that browsers on other origins may call."""
    return path in _EXACT_PATHS or path == "/fhir" or path.startswith("/fhir/")


class CrossOrigin:
    """CORS headers and preflight answers on the bearer-token paths, for the allowed origins only."""

    def __init__(self, app: ASGIApp, origins: Iterable[str], registered: Callable[[], Iterable[str]]) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.any_origin = "*" in self.origins
        self.registered = registered  # blocking: approved apps' redirect origins, read from the store
        self._registered: tuple[float, frozenset[str]] = (-REGISTERED_SECONDS, frozenset())

    async def _allowed(self, origin: str) -> bool:
        if self.any_origin or origin in self.origins:
            return True
        read_at, registered = self._registered
        if time.monotonic() - read_at >= REGISTERED_SECONDS:  # not one store read per request
            registered = frozenset(await run_in_threadpool(self.registered))
            self._registered = (time.monotonic(), registered)
        return origin in registered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not cors_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_origin = headers.get(b"origin")
        origin = raw_origin.decode("latin-1").lower() if raw_origin is not None else None
        allowed = origin is not None and await self._allowed(origin)
        if scope["method"] == "OPTIONS" and origin is not None and b"access-control-request-method" in headers:
            await (self._preflight(origin, send) if allowed else self._refuse(origin, send))
            return
        extra = [(b"vary", b"Origin")]
        if allowed and origin is not None:
            extra += [
                (b"access-control-allow-origin", self._allow_origin(origin)),
                (b"access-control-expose-headers", EXPOSE_HEADERS),
            ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_vary([*message.get("headers", ())], extra)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _allow_origin(self, origin: str) -> bytes:
        return b"*" if self.any_origin else origin.encode("latin-1")

    async def _preflight(self, origin: str, send: Send) -> None:
        headers = [
            (b"access-control-allow-origin", self._allow_origin(origin)),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", MAX_AGE),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, origin: str, send: Send) -> None:
        shown = origin[:200]
        body = json.dumps({
            "error": "invalid_request",
            "error_description": f"Origin {shown!r} may not call the EHR sandbox from a browser. Add it to "
            "ehr.cors_origins, or register the app with a redirect URI on that origin (docs/ehr-sandbox.md).",
        }).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"), (b"vary", b"Origin"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def _with_vary(headers: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` plus `extra`; an existing `Vary` is extended with Origin rather than repeated."""
    for name, value in extra:
        if name == b"vary":
            index = next((i for i, (n, _) in enumerate(headers) if n.lower() == b"vary"), None)
            if index is None:
                headers.append((name, value))
            elif b"origin" not in headers[index][1].lower() and headers[index][1].strip() != b"*":
                headers[index] = (headers[index][0], headers[index][1] + b", " + value)
        else:
            headers.append((name, value))
    return headers
