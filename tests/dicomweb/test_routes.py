"""A method a DICOMweb path does not serve is 405, and `Allow` lists every method the path serves."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from aperture.auth.requirements import authorize, needs
from aperture.server.handlers import EXCEPTION_HANDLERS

UIDS = "/studies/1.2.3/series/1.2.4/instances/1.2.5"
SERVED = {
    "/studies": {"GET", "HEAD", "POST"},
    "/series": {"GET", "HEAD"},
    "/instances": {"GET", "HEAD"},
    "/studies/1.2.3": {"GET", "HEAD", "POST", "DELETE"},
    "/studies/1.2.3/metadata": {"GET", "HEAD"},
    "/studies/1.2.3/series": {"GET", "HEAD"},
    "/studies/1.2.3/instances": {"GET", "HEAD"},
    "/studies/1.2.3/rendered": {"GET", "HEAD"},
    "/studies/1.2.3/thumbnail": {"GET", "HEAD"},
    "/studies/1.2.3/series/1.2.4": {"GET", "HEAD", "DELETE"},
    "/studies/1.2.3/series/1.2.4/metadata": {"GET", "HEAD"},
    "/studies/1.2.3/series/1.2.4/instances": {"GET", "HEAD"},
    "/studies/1.2.3/series/1.2.4/rendered": {"GET", "HEAD"},
    "/studies/1.2.3/series/1.2.4/thumbnail": {"GET", "HEAD"},
    UIDS: {"GET", "HEAD", "DELETE"},
    f"{UIDS}/metadata": {"GET", "HEAD"},
    f"{UIDS}/rendered": {"GET", "HEAD"},
    f"{UIDS}/thumbnail": {"GET", "HEAD"},
    f"{UIDS}/frames/1": {"GET", "HEAD"},
    f"{UIDS}/frames/1/rendered": {"GET", "HEAD"},
    f"{UIDS}/frames/1/thumbnail": {"GET", "HEAD"},
    f"{UIDS}/bulkdata/7FE00010": {"GET", "HEAD"},
}


@pytest.mark.parametrize("path", SERVED)
def test_allow_lists_every_method_the_path_serves(client: httpx.Client, path: str) -> None:
    for method in {"PUT", "PATCH", "POST", "DELETE"} - SERVED[path]:
        answer = client.request(method, path)
        assert answer.status_code == 405, (method, answer.text)
        allowed = {m.strip() for m in answer.headers["allow"].split(",")}
        assert allowed == SERVED[path], (method, answer.headers["allow"])
        assert answer.json()["status"] == 405


def test_post_and_delete_still_reach_their_endpoints(client: httpx.Client) -> None:
    answer = client.post("/studies", content=b"x", headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415, answer.text
    assert client.head("/studies").status_code == 200
    assert client.delete("/studies/1.2.3").status_code == 404  # the shared server allows delete


# --- What each route needs ------------------------------------------------------------------------


def _declared(route: Route) -> dict[str, object]:
    endpoint = route.endpoint
    actions = getattr(endpoint, "actions", None)
    if actions is None:
        (method,) = sorted((route.methods or set()) - {"HEAD"})
        actions = {method: getattr(endpoint, "action", None)}
    return dict(actions)


def test_every_route_declares_what_each_method_needs() -> None:
    """The route tables say, per method, what it needs: GET reads, POST writes, DELETE deletes.

    The one exception is the audit trail, which needs its own scope (AuditEvent), not an imaging one.
    """
    from aperture.auth.requirements import DELETE_IMAGING, READ_AUDIT, READ_IMAGING, WRITE_IMAGING
    from aperture.config import Config
    from aperture.server.app import create_app

    expected = {"GET": READ_IMAGING, "POST": WRITE_IMAGING, "DELETE": DELETE_IMAGING}
    app = create_app(Config())
    found: dict[str, dict[str, object]] = {}
    for route in app.routes:
        if isinstance(route, Mount):
            for inner in route.routes:
                assert isinstance(inner, Route)
                if route.path + inner.path not in {"/fhir/{rest:path}"}:
                    found[route.path + inner.path] = _declared(inner)
        elif isinstance(route, Route):
            found[route.path] = _declared(route)
    # Public, reading nothing of the store: health, and what a FHIR client asks before it has a token.
    public = {"/healthz", "/fhir/metadata", "/fhir/.well-known/smart-configuration", "/fhir/{rest:path}",
              # the sample SMART app's static files (aperture/server/apps.py): the app fetches data with its token
              "/apps/sample/", "/apps/sample/{name}",
              # the app at /app/ and IHE Invoke Image Display, which only checks a request and sends it on
              "/app/", "/app/{name}", "/IHEInvokeImageDisplay",
              # OHIF's static files; every DICOMweb request the viewer makes carries the token
              "/viewer", "/viewer/{path:path}"}  # fmt: skip
    found = {path: actions for path, actions in found.items() if path not in public}
    assert {"/wado", "/dicom-web/studies/{study}/rendered", "/fhir/ImagingStudy"} <= set(found)
    assert found.pop("/fhir/AuditEvent") == {"GET": READ_AUDIT}
    for media in ("/media/studies", "/media/studies/{study}"):  # POST only carries a form token (RFC 6750 §2.2)
        assert found.pop(media) == {"GET": READ_IMAGING, "POST": READ_IMAGING}
    assert found.pop("/transmit") == {"POST": READ_IMAGING}  # reads a study to send it elsewhere; stores nothing
    wrong = {path: actions for path, actions in found.items() if actions != {m: expected[m] for m in actions}}
    assert wrong == {}


def _tiny_app(handler_action: object, route_action: object) -> Starlette:
    async def handler(request: Request) -> JSONResponse:
        scope = await authorize(request, handler_action)  # type: ignore[arg-type]
        return JSONResponse({"write": scope.may_write, "delete": scope.may_delete})

    endpoint = needs(route_action, handler) if route_action is not None else handler  # type: ignore[arg-type]
    app = Starlette(routes=[Route("/x", endpoint, methods=["GET"])], exception_handlers=EXCEPTION_HANDLERS)
    app.state.config = SimpleNamespace(server=SimpleNamespace(auth="none"))
    return app


@pytest.mark.parametrize(
    ("handler_action", "route_action", "status", "body"),
    [
        ("read", "read", 200, {"write": False, "delete": False}),  # a read may not write, even with --auth none
        ("write", "write", 200, {"write": True, "delete": False}),
        (None, "delete", 200, {"write": False, "delete": True}),  # the declaration alone is enough
        ("read", "write", 500, None),  # a handler naming another action than its route: a bug, refused
        (None, None, 500, None),  # nothing declared: fail closed
    ],
)
def test_authorize_uses_the_declared_action_and_fails_closed(
    handler_action: str | None, route_action: str | None, status: int, body: dict[str, bool] | None
) -> None:
    from aperture.auth.requirements import Action

    app = _tiny_app(Action(handler_action) if handler_action else None, Action(route_action) if route_action else None)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/x")

    response = asyncio.run(get())
    assert response.status_code == status
    if body is not None:
        assert response.json() == body
