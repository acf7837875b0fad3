"""The /dicom-web URL table in one place (PS3.18 §10.4-10.6 resources)."""

from __future__ import annotations

from starlette.routing import Route

from aperture.dicomweb import bulkdata, delete, frames, qido, rendered, stow, wado

_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{instance}"

routes = [
    Route("/studies", qido.search_studies, methods=["GET"]),
    Route("/studies", stow.store_instances, methods=["POST"]),
    Route("/series", qido.search_series, methods=["GET"]),
    Route("/instances", qido.search_instances, methods=["GET"]),
    Route(_STUDY, wado.retrieve, methods=["GET"]),
    Route(_STUDY, stow.store_instances, methods=["POST"]),
    Route(_STUDY, delete.delete_resource, methods=["DELETE"]),
    Route(_STUDY + "/metadata", wado.metadata, methods=["GET"]),
    Route(_STUDY + "/series", qido.search_series, methods=["GET"]),
    Route(_STUDY + "/instances", qido.search_instances, methods=["GET"]),
    Route(_STUDY + "/thumbnail", rendered.thumbnail_route, methods=["GET"]),
    Route(_SERIES, wado.retrieve, methods=["GET"]),
    Route(_SERIES, delete.delete_resource, methods=["DELETE"]),
    Route(_SERIES + "/metadata", wado.metadata, methods=["GET"]),
    Route(_SERIES + "/instances", qido.search_instances, methods=["GET"]),
    Route(_SERIES + "/thumbnail", rendered.thumbnail_route, methods=["GET"]),
    Route(_INSTANCE, wado.retrieve, methods=["GET"]),
    Route(_INSTANCE, delete.delete_resource, methods=["DELETE"]),
    Route(_INSTANCE + "/metadata", wado.metadata, methods=["GET"]),
    Route(_INSTANCE + "/rendered", rendered.rendered, methods=["GET"]),
    Route(_INSTANCE + "/thumbnail", rendered.thumbnail_route, methods=["GET"]),
    Route(_INSTANCE + "/frames/{frames}", frames.retrieve_frames, methods=["GET"]),
    Route(_INSTANCE + "/frames/{frames}/rendered", rendered.rendered, methods=["GET"]),
    Route(_INSTANCE + "/frames/{frames}/thumbnail", rendered.thumbnail_route, methods=["GET"]),
    Route(_INSTANCE + "/bulkdata/{path:path}", bulkdata.retrieve_bulkdata, methods=["GET"]),
]
