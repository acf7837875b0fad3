"""A StreamingResponse that answers HEAD with its status and headers only, never starting its body.

Starlette's StreamingResponse runs its body iterator for HEAD too (the server then drops the
bytes), so a HEAD on a study's zip or multipart retrieve would read and send the whole study for
nothing. Routes that serve GET answer HEAD with the same handler, so the handler's checks
(authorization, 404, 406) still decide the status; only the body is left undrawn.
"""

from __future__ import annotations

from starlette import responses
from starlette.types import Receive, Scope, Send


class StreamingResponse(responses.StreamingResponse):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await super().__call__(scope, receive, send)
            return
        closing = getattr(self.body_iterator, "aclose", None)
        if closing is not None:  # never started: closing it runs nothing of the body
            await closing()
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()
