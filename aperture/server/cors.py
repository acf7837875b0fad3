"""Cross-origin access for browser apps (CORS), as ASGI middleware around the whole application.

A viewer served from another origin (a SMART app, OHIF) can only read Aperture's answers if they
carry `Access-Control-Allow-Origin`, and can only send `Authorization` or `Range` after a preflight
says so. This layer sits outside Starlette's error middleware so that 4xx and 5xx answers carry the
headers too: otherwise the browser hides the JSON error from the app and reports a CORS failure.
Only origins listed in `server.cors_origins` are answered; with none listed this layer is not used.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aperture.server.handlers import error_response

ALLOW_METHODS = b"GET, HEAD, POST, DELETE, OPTIONS"
ALLOW_HEADERS = b"Authorization, Accept, Content-Type, If-None-Match, If-Modified-Since, Range"
# Response headers a page may read besides the Fetch Standard's CORS-safelisted ones: Retry-After so that an app
# can wait as a 503 (EHR unreachable) asks, WWW-Authenticate so that it can tell a bad token from missing scopes.
EXPOSE_HEADERS = b"ETag, Content-Length, Content-Range, Content-Type, WWW-Authenticate, Warning, Location, Retry-After"
MAX_AGE = b"600"


class CrossOrigin:
    """Adds CORS headers for allowed origins and answers preflight requests on every path."""

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.any_origin = "*" in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = None
        preflight = False
        if scope["method"] == "OPTIONS":
            for name, value in scope["headers"]:
                if name == b"origin":
                    origin = value
                elif name == b"access-control-request-method":
                    preflight = True
        else:
            for name, value in scope["headers"]:
                if name == b"origin":
                    origin = value
                    break
        allowed = origin is not None and (self.any_origin or origin.decode("latin-1") in self.origins)
        if preflight and origin is not None:
            if allowed:
                await self._preflight(origin, send)
            else:
                await self._refuse(origin, scope, receive, send)
            return
        # Every answer varies with Origin once CORS is on, even one to a request without it: a cache
        # must not hand an answer without Access-Control-Allow-Origin to a cross-origin request.
        extra = self._headers(origin) if allowed else [(b"vary", b"Origin")]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _merged(message.get("headers", ()), extra)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-origin", b"*" if self.any_origin else origin or b""),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
            (b"vary", b"Origin"),
        ]

    async def _preflight(self, origin: bytes, send: Send) -> None:
        headers = [
            *self._headers(origin),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", MAX_AGE),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, origin: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        shown = origin.decode("latin-1")[:200]
        message = (
            f"Origin {shown!r} may not call this server from a browser. To allow it, add it to "
            "server.cors_origins in the config file (docs/configuration.md)."
        )
        await error_response(403, message, {"Vary": "Origin"})(scope, receive, send)


def _merged(headers: Iterable[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response headers plus `extra`; a `Vary` the response already has is extended, not repeated."""
    out = list(headers)
    for name, value in extra:
        if name == b"vary":
            for index, (existing, current) in enumerate(out):
                if existing.lower() == b"vary":
                    if current.strip() != b"*" and b"origin" not in current.lower():
                        out[index] = (existing, current + b", " + value)
                    break
            else:
                out.append((name, value))
        else:
            out.append((name, value))
    return out
