"""Read the rest of a request body the answer did not need, so the client gets to read the answer.

A STOW-RS upload refused early (413 from its Content-Length, 401 before any part is read, 400 at
a malformed part) is answered while the client is still sending. If the server then closes the
connection with unread bytes in its receive buffer, the kernel resets it, and a reset can destroy
the answer before the client reads it: the client sees "server disconnected" instead of the
reason. Web servers avoid this with a lingering close (nginx `lingering_close`); granian has none,
so this layer does it at the ASGI level: after the app has answered, it reads and drops what is
left of the body, within a byte and a time bound so that a client sending gigabytes cannot hold a
worker. Only requests that carry a body are wrapped: GETs, the hot read path, pass straight through.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_DRAIN_BYTES = 64 * 1024 * 1024  # past this the client is sending far more than was allowed: let it reset
MAX_DRAIN_SECONDS = 5.0


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return bool(value != b"0")
        if name == b"transfer-encoding":
            return True
    return False


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 20 else None
    return None


class LingeringClose:
    """ASGI middleware: after the answer, drain an unread request body (bounded), then let the server close."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_DRAIN_BYTES, max_seconds: float = MAX_DRAIN_SECONDS) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD") or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        read = 0
        ended = False

        async def tracked() -> Message:
            nonlocal read, ended
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                ended = not message.get("more_body", False)
            else:  # http.disconnect: nothing more will come
                ended = True
            return message

        await self.app(scope, tracked, send)
        if ended:
            return
        declared = _declared_length(scope)
        if declared is not None and declared - read > self.max_bytes:
            return

        async def drain() -> None:
            while not ended and read <= self.max_bytes:
                await tracked()

        try:
            await asyncio.wait_for(drain(), self.max_seconds)
        except TimeoutError:
            pass
