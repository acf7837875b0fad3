"""`{base}/auth/logout`: sign-out, the `end_session_endpoint` in discovery (OpenID Connect RP-Initiated Logout).

Signing out deletes the session row, so the cookie is worthless afterwards even if it was copied,
and `online_access` refresh tokens of that sign-in stop working. A GET never ends a session by
itself (a link or an image on another site could send one): it shows a confirmation form, which
posts back to the same URL with the anti-forgery value; the EHR launch page's Sign out button posts
directly.

An app may send the browser here with `post_logout_redirect_uri` (and `state`) to get it back after
sign-out. That URI is accepted only with `client_id` naming an approved browser app, and only if it
is a web URL with the origin of one of that app's registered redirect URIs; anything else is
refused with a page, never redirected, so the endpoint is not an open redirector. `id_token_hint`
is not used.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aperture.ehr.authorization import urlencoded_form
from aperture.ehr.clients import get_client, is_web_url, url_origin
from aperture.ehr.pages import error_page, logout_page, signed_out_page
from aperture.ehr.sessions import csrf_ok, csrf_token, current_session, end_session, keep_csrf, new_csrf_token

LOGOUT_PATH = "/auth/logout"


class _BadReturn(Exception):
    pass


async def logout(request: Request) -> Response:
    form = await urlencoded_form(request) if request.method == "POST" else FormData()
    return await run_in_threadpool(_logout, request, form)


def _logout(request: Request, form: FormData) -> Response:
    engine = request.app.state.authorization.engine
    secure = request.app.state.config.base_url.startswith("https://")
    session = current_session(engine, request)
    csrf = csrf_token(request, session)
    try:
        back = _return_to(engine, request)
    except _BadReturn as exc:
        return error_page("Cannot sign out from here", str(exc))
    if request.method == "POST":
        if not csrf_ok(request, form.get("csrf"), session):  # type: ignore[arg-type]
            return error_page("Please start again", "This form has expired or did not come from this page.")
        response = RedirectResponse(back, status_code=303) if back else signed_out_page()
        end_session(engine, request, response)
        keep_csrf(response, new_csrf_token(), secure=secure)
        return response
    if session is None:  # nothing to end
        return RedirectResponse(back, status_code=303) if back else signed_out_page()
    action = f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path
    response = logout_page(action, csrf, session.account)
    keep_csrf(response, csrf, secure=secure)
    return response


def _return_to(engine: object, request: Request) -> str | None:
    """Where to send the browser after sign-out: a checked `post_logout_redirect_uri` (with `state`), or None."""
    params = request.query_params
    uri = params.get("post_logout_redirect_uri")
    if uri is None:
        return None
    client_id = params.get("client_id")
    if not client_id:
        raise _BadReturn("Send client_id with post_logout_redirect_uri, so the sandbox can check where you go back.")
    client = get_client(engine, client_id)  # type: ignore[arg-type]
    if client is None or not client.approved or not client.redirect_uris:
        raise _BadReturn("client_id does not name an approved app with redirect URIs.")
    if not is_web_url(uri) or urlsplit(uri).fragment or url_origin(uri) not in client.redirect_origins():
        raise _BadReturn("post_logout_redirect_uri must be on the origin of one of the app's registered redirect URIs.")
    state = params.get("state")
    if state is None:
        return uri
    return f"{uri}{'&' if urlsplit(uri).query else '?'}{urlencode({'state': state})}"
