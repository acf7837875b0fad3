"""DELETE of a study, series or instance (not in PS3.18; off unless `dicomweb.allow_delete`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from aperture.auth.requirements import DELETE_IMAGING, authorize
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.urls import optional_uid, path_uid
from aperture.dicomweb.wado import not_found
from aperture.errors import MethodNotAllowed
from aperture.store.delete import delete_instances


async def delete_resource(request: Request) -> Response:
    study = path_uid(request, "study")
    series = optional_uid(request, "series")
    instance = optional_uid(request, "instance")
    state = request.app.state
    if not state.config.dicomweb.allow_delete:
        raise MethodNotAllowed(
            "Deletion is disabled on this server; an administrator can enable it with "
            "dicomweb.allow_delete = true in the config file."
        )
    scope = await authorize(request, DELETE_IMAGING)
    count = await off_loop(delete_instances, state.engine, state.blobs, scope, study, series, instance)
    if not count:
        raise not_found(study, series, instance)
    return Response(status_code=204)
