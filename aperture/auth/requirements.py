"""What each route needs, and the one call that turns a request into an AccessScope.

Routes declare `READ_IMAGING`, `WRITE_IMAGING` or `DELETE_IMAGING`; `authorize` asks the configured
policy and returns the scope every store read requires. With `--auth none` everything is allowed
(the server says so loudly at startup); SMART authorization plugs in here.
"""

from __future__ import annotations

from enum import StrEnum

from starlette.requests import Request

from aperture.auth import policy
from aperture.errors import Unauthorized
from aperture.store.scope import AccessScope


class Action(StrEnum):
    READ_IMAGING = "read"
    WRITE_IMAGING = "write"
    DELETE_IMAGING = "delete"


READ_IMAGING = Action.READ_IMAGING
WRITE_IMAGING = Action.WRITE_IMAGING
DELETE_IMAGING = Action.DELETE_IMAGING


async def authorize(request: Request, action: Action) -> AccessScope:
    mode = request.app.state.config.server.auth
    if mode == "none":
        return policy.allow_everything()
    raise Unauthorized("SMART authorization is not configured on this server; no request is allowed.")
