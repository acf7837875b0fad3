"""`{base}/ehr/launch`: the EHR's launch page, where a signed-in user opens a registered app for a patient.

The page lists the patients the user may act for (a clinician's care-team panel) and the approved
apps registered with a launch URL (an app that registered itself is listed once the admin approves
it). Launching records the context (`aperture.ehr.launches`) and sends the
browser to `{launch_url}?iss={fhir base}&launch={value}`; the app then starts an authorization
request carrying `launch`, which binds that patient.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aperture.ehr.accounts import attempt_sign_in
from aperture.ehr.authorization import urlencoded_form
from aperture.ehr.clients import get_client, list_clients
from aperture.ehr.launches import create_launch
from aperture.ehr.logout import LOGOUT_PATH
from aperture.ehr.pages import error_page, launch_page, login_page
from aperture.ehr.people import Directory, User
from aperture.ehr.sessions import csrf_ok, csrf_token, current_session, keep_csrf, set_session_cookie, start_session


async def ehr_launch(request: Request) -> Response:
    form = await urlencoded_form(request) if request.method == "POST" else FormData()
    return await run_in_threadpool(_launch, request, form)


def _launch(request: Request, form: FormData) -> Response:
    engine = request.app.state.authorization.engine
    directory: Directory = request.app.state.directory
    config = request.app.state.config
    secure = config.base_url.startswith("https://")
    action = request.url.path
    session = current_session(engine, request)
    csrf = csrf_token(request, session)
    user: User | None = directory.user(session.account) if session else None
    cookie: str | None = None
    response: Response
    if request.method == "POST" and not csrf_ok(request, form.get("csrf"), session):  # type: ignore[arg-type]
        response = error_page("Please start again", "This form has expired or did not come from this page.")
    elif request.method == "POST" and form.get("step") == "login":
        attempt = attempt_sign_in(request, str(form.get("username", "")), str(form.get("password", "")))
        user = attempt.user
        if user is None:
            error = "Wrong user name or password."
            response = login_page(action, csrf, "Sign in to launch an app.", error, attempt.retry_after)
        else:
            cookie, session = start_session(engine, user.login)
            csrf = session.csrf  # a new anti-forgery value from sign-in on
            response = _page(engine, directory, action, csrf, user)
    elif user is None:
        response = login_page(action, csrf, "Sign in to launch an app.")
    elif request.method == "POST" and form.get("step") == "launch":
        response = start_ehr_launch(engine, directory, config.fhir_base, user, form)
    else:
        response = _page(engine, directory, action, csrf, user)
    keep_csrf(response, csrf, secure=secure)
    if cookie is not None:
        set_session_cookie(response, cookie, secure=secure)
    return response


def _page(engine: object, directory: Directory, action: str, csrf: str, user: User) -> Response:
    apps = [(c.client_id, c.name) for c in list_clients(engine) if c.launch_url and c.approved]  # type: ignore[arg-type]
    who = directory.acting_as(user, None)
    return launch_page(action, csrf, f"{user.login} ({who})", directory.patients_for(user), apps, LOGOUT_PATH)


def start_ehr_launch(engine: Engine, directory: Directory, fhir_base: str, user: User, form: FormData) -> Response:
    """Record a launch of the form's `client_id` for its `patient` by `user`, and send the browser to the app.

    The developer page (`aperture.ehr.developer`) starts its EHR launches here too.
    """
    patient, client_id = str(form.get("patient", "")), str(form.get("client_id", ""))
    client = get_client(engine, client_id)
    if client is None or not client.launch_url:
        return error_page("Unknown app", "That app is not registered with a launch URL.")
    if not client.approved:
        return error_page("App not approved", "That app registered itself and the EHR's administrator has not "
                          "approved it yet (aperture ehr clients approve).", 403)  # fmt: skip
    if not directory.may_see(user, patient):
        return error_page("Not your patient", "You may not open that patient's record.", 403)
    value = create_launch(engine, client_id=client.client_id, account=user.login, patient=patient)
    return RedirectResponse(app_url(client.launch_url, iss=fhir_base, launch=value), status_code=303)


def app_url(launch_url: str, **params: str) -> str:
    """`launch_url` with `params` added to any query it already has (`?iss=...&launch=...`)."""
    parts = urlsplit(launch_url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))
