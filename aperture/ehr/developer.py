"""`{base}/sandbox`: the developer page, where an app developer registers, removes and launches apps.

Served only with `developer_page` on (`aperture ehr serve --developer-page`, `aperture demo`): it
needs no sign-in, being the sandbox operator's console as a SMART launcher is, so anyone who can
reach it may register and remove apps. Every post carries the anti-forgery value (a cookie of the
page's own: a sign-in in another tab does not expire its forms).

- Register: a public or confidential app, approved at once (the operator registers it), checked as
  `aperture ehr clients add` checks it; a confidential app's secret is shown once on the answer.
- Remove: `aperture.ehr.clients.remove_client`, after a confirmation step. The sandbox's
  infrastructure (a resource server that introspects, a backend service) is refused here: removing
  the imaging server's registration by a stray click would break the whole demo; the CLI removes it.
- Launch: standalone sends the browser to the app's launch URL with `iss` only; an EHR launch, for a
  seed user and one of the patients they may act for, goes through `launchpage.start_ehr_launch`,
  as the EHR's own launch page does. The user then signs in as that user at `/auth/authorize`.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aperture.ehr.authorization import urlencoded_form
from aperture.ehr.clients import (
    DEFAULT_APP_SCOPE,
    Client,
    ClientKind,
    get_client,
    list_clients,
    register_client,
    remove_client,
)
from aperture.ehr.config import EhrConfig
from aperture.ehr.developer_pages import (
    Console,
    Registration,
    SeedUser,
    confirm_removal_page,
    console_page,
    patient_step_page,
    registered_notice,
    removed_notice,
)
from aperture.ehr.errors import InvalidClientMetadata
from aperture.ehr.launchpage import app_url, start_ehr_launch
from aperture.ehr.logout import LOGOUT_PATH
from aperture.ehr.pages import error_page
from aperture.ehr.people import Directory, User
from aperture.ehr.sessions import csrf_ok, csrf_token, keep_csrf

DEVELOPER_PATH = "/sandbox"
CSRF_COOKIE = "aperture_ehr_developer_csrf"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")  # RFC 3986 unreserved: safe in every URL it appears in


async def developer_page(request: Request) -> Response:
    form = await urlencoded_form(request) if request.method == "POST" else FormData()
    return await run_in_threadpool(_DeveloperPage(request, form).run)


class _DeveloperPage:
    """One request to the page (runs in a worker thread: SQLite blocks)."""

    def __init__(self, request: Request, form: FormData) -> None:
        self.request = request
        self.form = form
        self.engine: Engine = request.app.state.authorization.engine
        self.directory: Directory = request.app.state.directory
        self.config: EhrConfig = request.app.state.config
        self.csrf = csrf_token(request, cookie=CSRF_COOKIE)

    def run(self) -> Response:
        response = self._run()
        keep_csrf(response, self.csrf, secure=self.config.base_url.startswith("https://"), cookie=CSRF_COOKIE)
        return response

    def _run(self) -> Response:
        if self.request.method == "GET":
            return self._console(Registration(scope=DEFAULT_APP_SCOPE))
        if not csrf_ok(self.request, self._field("csrf"), cookie=CSRF_COOKIE):
            return error_page("Please start again", "This form has expired or did not come from this page; "
                              f"reload {self.config.developer_page_url} and try again.")  # fmt: skip
        step = self._field("step")
        if step == "register":
            return self._register()
        if step in ("remove", "remove-confirmed"):
            return self._remove(confirmed=step == "remove-confirmed")
        if step == "launch":
            return self._launch()
        return error_page("Unknown step", "This form asks for something the developer page does not do.")

    def _field(self, name: str) -> str:
        value = self.form.get(name)
        return value.strip() if isinstance(value, str) else ""

    def _console(self, registration: Registration, *, notice: str = "", error: str = "", status: int = 200) -> Response:
        console = Console(
            action=DEVELOPER_PATH, csrf=self.csrf, fhir_base=self.config.fhir_base,
            apps=list_clients(self.engine), users=seed_users(self.directory), logout=LOGOUT_PATH,
        )  # fmt: skip
        return console_page(console, registration, notice=notice, error=error, status=status)

    def _register(self) -> Response:
        values = Registration(
            kind=self._field("kind"), name=self._field("name"), redirect_uris=self._field("redirect_uris"),
            launch_url=self._field("launch_url"), scope=" ".join(self._field("scope").split()),
            client_id=self._field("client_id"),
        )  # fmt: skip
        try:
            client, secret = _register(self.engine, values)
        except InvalidClientMetadata as exc:
            return self._console(values, error=exc.message, status=400)
        return self._console(Registration(scope=DEFAULT_APP_SCOPE), notice=registered_notice(client, secret))

    def _remove(self, *, confirmed: bool) -> Response:
        client = get_client(self.engine, self._field("client_id"))
        if client is None:
            return error_page("Unknown app", "No app is registered under that client id; reload the page.", 404)
        if client.introspect or client.kind == "backend":
            role = "a resource server that introspects tokens" if client.introspect else "a backend service"
            return error_page(
                "Not removable here",
                f"{client.client_id} is {role}, part of the sandbox's infrastructure (in the demo, the imaging "
                f"server's registration); the developer page does not remove it. If you mean it: "
                f"aperture ehr clients remove {client.client_id}",
                403,
            )
        if not confirmed:
            return confirm_removal_page(DEVELOPER_PATH, self.csrf, client)
        removal = remove_client(self.engine, client.client_id)
        return self._console(Registration(scope=DEFAULT_APP_SCOPE), notice=removed_notice(removal))

    def _launch(self) -> Response:
        client = get_client(self.engine, self._field("client_id"))
        if client is None or not client.launch_url or not client.approved:
            return error_page("Cannot launch that app", "Choose an approved app registered with a launch URL.")
        mode = self._field("mode")
        if mode == "standalone":
            return RedirectResponse(app_url(client.launch_url, iss=self.config.fhir_base), status_code=303)
        if mode != "ehr":
            return error_page("Choose a launch", "Choose a standalone launch or an EHR launch.")
        user = self.directory.user(self._field("user"))
        if user is None:
            return error_page("Unknown user", "Choose one of the seed users listed on the developer page.")
        seed = _seed_user(self.directory, user)
        patient = self._field("patient")
        if not patient:
            if not seed.patients:
                return error_page("No patient", f"{user.login} may not act for any patient.", 403)
            return patient_step_page(DEVELOPER_PATH, self.csrf, client, seed)
        if not self.directory.may_see(user, patient):
            allowed = ", ".join(p.id for p in seed.patients) or "nobody"
            return error_page("Not this user's patient", f"{user.login} may not act for {patient!r}; "
                              f"they may open: {allowed}.", 403)  # fmt: skip
        return start_ehr_launch(self.engine, self.directory, self.config.fhir_base, user, self.form)


def _register(engine: Engine, values: Registration) -> tuple[Client, str | None]:
    """Register the form's app (checked as `register_client` checks it, and a little more), or say what to fix."""
    if values.kind not in ("public", "confidential"):
        raise InvalidClientMetadata("Choose the kind of app: public or confidential.")
    if not values.name:
        raise InvalidClientMetadata("Give the app a name: people see it on the consent screen.")
    if len(values.name) > 256:
        raise InvalidClientMetadata("The app's name is longer than 256 characters.")
    redirect_uris = tuple(dict.fromkeys(line.strip() for line in values.redirect_uris.splitlines() if line.strip()))
    if not redirect_uris:
        raise InvalidClientMetadata("Give at least one redirect URI, where the sandbox sends the browser back.")
    if not values.scope:
        raise InvalidClientMetadata("List the scopes the app may be granted, e.g. " + DEFAULT_APP_SCOPE)
    if values.client_id and not _CLIENT_ID.fullmatch(values.client_id):
        raise InvalidClientMetadata(
            f"Client id {values.client_id[:140]!r}: use 1 to 128 letters, digits and . _ ~ - (or leave it empty)."
        )
    kind: ClientKind = "public" if values.kind == "public" else "confidential"
    return register_client(
        engine, kind=kind, name=values.name, scope=values.scope, client_id=values.client_id or None,
        redirect_uris=redirect_uris, launch_url=values.launch_url or None,
    )  # fmt: skip


def seed_users(directory: Directory) -> list[SeedUser]:
    """The seed users with their demo passwords (from the seed file, as `aperture demo` prints them)."""
    return [_seed_user(directory, user) for user in directory.users.values()]


def _seed_user(directory: Directory, user: User) -> SeedUser:
    roles: list[str] = []
    if user.practitioner:
        person = directory.practitioners[user.practitioner]
        name = " ".join((*person.prefix, *person.given, person.family))
        roles.append(f"{name}, clinician (Practitioner/{person.id}), care-team panel")
    if user.patient:
        roles.append(f"{directory.patients[user.patient].display_name}, patient (Patient/{user.patient})")
    for related_id in user.proxy_for:
        related = directory.related_persons[related_id]
        name = " ".join((*related.given, related.family))
        who = "" if roles else f"{name}, "
        roles.append(f"{who}proxy for {directory.patients[related.patient].display_name} (RelatedPerson/{related_id})")
    return SeedUser(user, "; ".join(roles), tuple(directory.patients_for(user)))
