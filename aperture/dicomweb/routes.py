"""The /dicom-web URL table in one place (PS3.18 §10.4-10.6 resources).

Each path is one `Route` with every method it serves, so a method it does not serve is answered
405 with an `Allow` header that lists them all (two Routes for one path would each name only
their own methods, and the first one would answer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aperture.auth.requirements import deletes, reads, searches, writes
from aperture.dicomweb import bulkdata, delete, frames, qido, rendered, stow, wado

Endpoint = Callable[[Request], Awaitable[Response]]

_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{instance}"


def resource(path: str, **endpoints: Endpoint) -> Route:
    """One Route for `path` that hands each method (GET also answers HEAD) to its endpoint."""
    if len(endpoints) == 1:
        ((method, endpoint),) = endpoints.items()
        return Route(path, endpoint, methods=[method])

    async def by_method(request: Request) -> Response:
        return await endpoints["GET" if request.method == "HEAD" else request.method](request)

    by_method.__name__ = by_method.__qualname__ = "_".join(e.__name__ for e in endpoints.values())
    by_method.actions = {m: getattr(e, "action", None) for m, e in endpoints.items()}  # type: ignore[attr-defined]
    return Route(path, by_method, methods=list(endpoints))


routes = [
    resource("/studies", GET=searches(qido.search_studies), POST=writes(stow.store_instances)),
    resource("/series", GET=searches(qido.search_series)),
    resource("/instances", GET=searches(qido.search_instances)),
    resource(
        _STUDY, GET=reads(wado.retrieve), POST=writes(stow.store_instances), DELETE=deletes(delete.delete_resource)
    ),
    resource(_STUDY + "/metadata", GET=reads(wado.metadata)),
    resource(_STUDY + "/series", GET=searches(qido.search_series)),
    resource(_STUDY + "/instances", GET=searches(qido.search_instances)),
    resource(_STUDY + "/rendered", GET=reads(rendered.rendered_collection)),
    resource(_STUDY + "/thumbnail", GET=reads(rendered.thumbnail_route)),
    resource(_SERIES, GET=reads(wado.retrieve), DELETE=deletes(delete.delete_resource)),
    resource(_SERIES + "/metadata", GET=reads(wado.metadata)),
    resource(_SERIES + "/instances", GET=searches(qido.search_instances)),
    resource(_SERIES + "/rendered", GET=reads(rendered.rendered_collection)),
    resource(_SERIES + "/thumbnail", GET=reads(rendered.thumbnail_route)),
    resource(_INSTANCE, GET=reads(wado.retrieve), DELETE=deletes(delete.delete_resource)),
    resource(_INSTANCE + "/metadata", GET=reads(wado.metadata)),
    resource(_INSTANCE + "/rendered", GET=reads(rendered.rendered)),
    resource(_INSTANCE + "/thumbnail", GET=reads(rendered.thumbnail_route)),
    resource(_INSTANCE + "/frames/{frames}", GET=reads(frames.retrieve_frames)),
    resource(_INSTANCE + "/frames/{frames}/rendered", GET=reads(rendered.rendered)),
    resource(_INSTANCE + "/frames/{frames}/thumbnail", GET=reads(rendered.thumbnail_route)),
    resource(_INSTANCE + "/bulkdata/{path:path}", GET=reads(bulkdata.retrieve_bulkdata)),
]
"""Each method's endpoint is wrapped in what it needs (`reads`, `writes`, `deletes`):
`aperture.auth.requirements.authorize` takes that declaration, and a route without one is refused."""
