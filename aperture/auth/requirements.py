"""What each route needs, and the one call that turns a request into an AccessScope.

The route tables declare, per method, `reads`, `writes` or `deletes` around each endpoint
(`aperture/dicomweb/routes.py`, `aperture/server/app.py`), so a reader of the table sees what every
URL requires. `authorize` takes the action the route declared, asks the configured policy and
returns the scope every store read requires; a route that declares nothing is refused (fail
closed). With `--auth none` everything is allowed for the declared action (the server says so
loudly at startup); SMART authorization plugs in here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from enum import StrEnum

from starlette.requests import Request
from starlette.responses import Response

from aperture.auth import policy
from aperture.errors import ApertureError, Unauthorized
from aperture.store.scope import AccessScope

Endpoint = Callable[[Request], Awaitable[Response]]
ROUTE_ACTION = "aperture.action"  # where the declared action travels in the ASGI scope


class Action(StrEnum):
    READ_IMAGING = "read"
    WRITE_IMAGING = "write"
    DELETE_IMAGING = "delete"


READ_IMAGING = Action.READ_IMAGING
WRITE_IMAGING = Action.WRITE_IMAGING
DELETE_IMAGING = Action.DELETE_IMAGING


def needs(action: Action, endpoint: Endpoint) -> Endpoint:
    """`endpoint`, declared to need `action`; `authorize` reads the declaration from the request."""

    @functools.wraps(endpoint)
    async def declared(request: Request) -> Response:
        request.scope[ROUTE_ACTION] = action
        return await endpoint(request)

    declared.action = action  # type: ignore[attr-defined]  # read by the route table's checks
    return declared


def reads(endpoint: Endpoint) -> Endpoint:
    return needs(READ_IMAGING, endpoint)


def writes(endpoint: Endpoint) -> Endpoint:
    return needs(WRITE_IMAGING, endpoint)


def deletes(endpoint: Endpoint) -> Endpoint:
    return needs(DELETE_IMAGING, endpoint)


async def authorize(request: Request, action: Action | None = None) -> AccessScope:
    """The AccessScope for this request, for the action its route declared.

    `action`, when given, must be the declared one (a handler that names another action than its
    route is a bug, answered 500 rather than guessed); with no declaration it is used alone. No
    action at all is refused.
    """
    declared: Action | None = request.scope.get(ROUTE_ACTION)
    if declared is not None and action is not None and declared != action:
        raise ApertureError(f"The route declares {declared.value} but its handler asked for {action.value}.")
    wanted = declared or action
    if wanted is None:
        raise ApertureError("This route declares no required action, so no request to it is allowed.")
    mode = request.app.state.config.server.auth
    if mode == "none":
        return policy.allow_everything(may_write=wanted is WRITE_IMAGING, may_delete=wanted is DELETE_IMAGING)
    raise Unauthorized("SMART authorization is not configured on this server; no request is allowed.")
