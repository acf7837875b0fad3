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
    return Route(path, by_method, methods=list(endpoints))


routes = [
    resource("/studies", GET=qido.search_studies, POST=stow.store_instances),
    resource("/series", GET=qido.search_series),
    resource("/instances", GET=qido.search_instances),
    resource(_STUDY, GET=wado.retrieve, POST=stow.store_instances, DELETE=delete.delete_resource),
    resource(_STUDY + "/metadata", GET=wado.metadata),
    resource(_STUDY + "/series", GET=qido.search_series),
    resource(_STUDY + "/instances", GET=qido.search_instances),
    resource(_STUDY + "/rendered", GET=rendered.rendered_collection),
    resource(_STUDY + "/thumbnail", GET=rendered.thumbnail_route),
    resource(_SERIES, GET=wado.retrieve, DELETE=delete.delete_resource),
    resource(_SERIES + "/metadata", GET=wado.metadata),
    resource(_SERIES + "/instances", GET=qido.search_instances),
    resource(_SERIES + "/rendered", GET=rendered.rendered_collection),
    resource(_SERIES + "/thumbnail", GET=rendered.thumbnail_route),
    resource(_INSTANCE, GET=wado.retrieve, DELETE=delete.delete_resource),
    resource(_INSTANCE + "/metadata", GET=wado.metadata),
    resource(_INSTANCE + "/rendered", GET=rendered.rendered),
    resource(_INSTANCE + "/thumbnail", GET=rendered.thumbnail_route),
    resource(_INSTANCE + "/frames/{frames}", GET=frames.retrieve_frames),
    resource(_INSTANCE + "/frames/{frames}/rendered", GET=rendered.rendered),
    resource(_INSTANCE + "/frames/{frames}/thumbnail", GET=rendered.thumbnail_route),
    resource(_INSTANCE + "/bulkdata/{path:path}", GET=bulkdata.retrieve_bulkdata),
]
