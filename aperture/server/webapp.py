"""`/app/`: the app people see their images with, and `/IHEInvokeImageDisplay`, the IHE IID way in to it.

The app's files are `aperture/clients/web_app/`, served like the sample app's (`aperture.server.apps`:
an allow-list, `config.json` naming the EHR this server trusts, a strict Content-Security-Policy),
with one difference: its download form posts to this server (`form-action 'self'`), so a study
streams straight to disk with the token in the request body, never in a URL.

IID (docs/view-download-transmit.md): the request is checked here (`aperture.viewer.iid`); a wrong or unsupported
value gets a 400 page in words; a good one is sent on (303) to the app's launch page with the
checked values only, where the app signs in at the EHR if this tab has no sign-in yet and opens
the viewer on what the authorization reaches. The server shows no patient data here: authorization
happens where the data is read, on every DICOMweb and FHIR request the app makes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from aperture.clients import WEB_APP_CLIENT_ID
from aperture.config import Config
from aperture.server.apps import HTML, SCRIPT, STYLE, StaticApp
from aperture.server.handlers import answer_errors_as_page
from aperture.viewer import iid

WEB_APP = StaticApp(
    prefix="/app",
    folder="web_app",
    files={
        "index.html": HTML,  # the redirect URI: sign-in answer, then the patient's studies
        "launch.html": HTML,  # the launch URL: EHR launch (iss, launch) or standalone; IID requests, checked
        "app.js": SCRIPT,
        "smart.js": SCRIPT,
        "grid.js": SCRIPT,
        "style.css": STYLE,
    },
    client_id=WEB_APP_CLIENT_ID,
    form_action="'self'",
)


async def invoke_image_display(request: Request) -> Response:
    """RAD-106 Invoke Image Display: check the request, then on to the app's launch page."""
    answer_errors_as_page(request)
    config: Config = request.app.state.config
    params = {name: request.query_params.getlist(name) for name in request.query_params}
    shown = iid.parse(params, config.fhir.patient_identifier_systems)
    return RedirectResponse(f"{WEB_APP.prefix}/launch.html?{shown.app_query()}", status_code=303,
                            headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})  # fmt: skip


routes = [*WEB_APP.routes(), Route(iid.PATH, invoke_image_display, methods=["GET"])]
