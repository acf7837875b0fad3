"""The HTML of the developer page (`aperture.ehr.developer`): register, list, remove and launch apps.

Plain forms posting back to the page, as every sandbox page; everything shown is escaped, and no
secret is ever shown but a new confidential client's, once, on the answer to its registration.
Element ids, field names and button texts are stable: browser tests and people's scripts use them
(docs/ehr-sandbox.md lists them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from starlette.responses import HTMLResponse

from aperture.ehr.clients import Client, Removal
from aperture.ehr.launches import LAUNCH_LIFETIME
from aperture.ehr.pages import form, page
from aperture.ehr.people import Patient, User

TITLE = "EHR sandbox: developer page"


@dataclass(frozen=True)
class SeedUser:
    """A seed user as the page shows them (`user.password` is the seed's demo password) and whom they may open."""

    user: User
    who: str
    patients: tuple[Patient, ...]


@dataclass(frozen=True)
class Registration:
    """The registration form's values, kept when it is shown again with an error."""

    kind: str = "public"
    name: str = ""
    redirect_uris: str = ""
    launch_url: str = ""
    scope: str = ""
    client_id: str = ""


@dataclass(frozen=True)
class Console:
    """What every rendering of the page needs."""

    action: str
    csrf: str
    fhir_base: str
    apps: Sequence[Client]
    users: Sequence[SeedUser]
    logout: str


def _alert(element_id: str, message: str) -> str:
    return f'<p class="error" role="alert" id="{element_id}">{escape(message)}</p>'


def console_page(
    console: Console, registration: Registration, *, notice: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    intro = (
        f'<p>Apps use the FHIR base <code id="fhir-base">{escape(console.fhir_base)}</code> as <code>iss</code>; '
        f"discovery is at <code>{escape(console.fhir_base)}/.well-known/smart-configuration</code>. This page needs "
        "no sign-in: it is the sandbox operator's console, served only with <code>developer_page</code> on.</p>"
    )
    body = intro + notice + _register(console, registration, error) + _apps(console) + _launch(console)
    return page(TITLE, body + _users(console.users), status, wide=True)


def _register(console: Console, values: Registration, error: str) -> str:
    kinds = "".join(
        f'<label class="inline" for="kind-{kind}"><input type="radio" id="kind-{kind}" name="kind" value="{kind}"'
        f"{' checked' if values.kind == kind else ''}> {text}</label>"
        for kind, text in (("public", "Public (browser or native app, PKCE, no secret)"),
                           ("confidential", "Confidential (server-side app with a client secret)"))
    )  # fmt: skip
    inner = (
        f"<fieldset><legend>Kind</legend>{kinds}</fieldset>"
        f'<label for="app-name">App name</label><input type="text" id="app-name" name="name" '
        f'value="{escape(values.name)}" required>'
        '<label for="app-redirect-uris">Redirect URIs (one per line, matched exactly)</label>'
        f'<textarea id="app-redirect-uris" name="redirect_uris" rows="2" required>{escape(values.redirect_uris)}'
        "</textarea>"
        '<label for="app-launch-url">Launch URL (optional: where an EHR launch sends the browser)</label>'
        f'<input type="url" id="app-launch-url" name="launch_url" value="{escape(values.launch_url)}">'
        '<label for="app-scope">Scopes the app may be granted (space-separated)</label>'
        f'<textarea id="app-scope" name="scope" rows="2" required>{escape(values.scope)}</textarea>'
        '<label for="app-client-id">Client id (optional: a random one if empty)</label>'
        f'<input type="text" id="app-client-id" name="client_id" value="{escape(values.client_id)}">'
        '<p><button type="submit" id="register-button">Register app</button></p>'
    )
    notice = _alert("register-error", error) if error else ""
    return (
        '<section id="register"><h2>Register an app</h2>'
        "<p>Registered here, an app is approved at once, as by <code>aperture ehr clients add</code>.</p>"
        f"{notice}{form(console.action, console.csrf, 'register', inner, form_id='register-form')}"
        "</section>"
    )


def _protected(client: Client) -> bool:
    """The sandbox's infrastructure (a resource server that introspects, a backend service): CLI only."""
    return client.introspect or client.kind == "backend"


def _apps(console: Console) -> str:
    rows = ""
    for client in console.apps:
        if _protected(client):
            action = "CLI only (<code>aperture ehr clients remove</code>): infrastructure"
        else:
            button = (
                f'<input type="hidden" name="client_id" value="{escape(client.client_id)}">'
                f'<button type="submit" aria-label="Remove {escape(client.client_id)}">Remove</button>'
            )
            action = form(console.action, console.csrf, "remove", button)
        uris = "<br>".join(escape(u) for u in client.redirect_uris)
        status = "approved" if client.approved else "awaiting approval"
        rows += (
            f'<tr data-client-id="{escape(client.client_id)}"><td><code>{escape(client.client_id)}</code></td>'
            f"<td>{client.kind}</td><td>{escape(client.name)}</td><td>{uris}</td>"
            f"<td>{escape(client.launch_url or '')}</td><td><code>{escape(client.scope)}</code></td>"
            f"<td>{status}</td><td>{action}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Client id", "Kind", "Name", "Redirect URIs", "Launch URL", "Scopes", "Status", "Remove")
    )
    return (
        '<section id="apps"><h2>Registered apps</h2>'
        "<p>Removing an app deletes its registration and everything issued to it: its access and refresh "
        "tokens stop working at once, its unused codes and launches too.</p>"
        f'<table id="apps-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>'
    )


def _launch(console: Console) -> str:
    launchable = [c for c in console.apps if c.launch_url and c.approved]
    if not launchable:
        return (
            '<section id="launch"><h2>Launch an app</h2>'
            "<p>No approved app has a launch URL: register one above with a launch URL.</p></section>"
        )
    apps = "".join(
        f'<option value="{escape(c.client_id)}">{escape(c.name)} ({escape(c.client_id)})</option>' for c in launchable
    )
    users = "".join(
        f'<option value="{escape(u.user.login)}">{escape(u.user.login)}: {escape(u.who)}</option>'
        for u in console.users
    )
    modes = (
        '<label class="inline" for="mode-standalone"><input type="radio" id="mode-standalone" name="mode" '
        'value="standalone" checked> Standalone launch (the app gets only <code>iss</code>)</label>'
        '<label class="inline" for="mode-ehr"><input type="radio" id="mode-ehr" name="mode" value="ehr"> '
        "EHR launch (<code>iss</code> and <code>launch</code> for a user and patient)</label>"
    )
    inner = (
        f'<label for="launch-app">App</label><select id="launch-app" name="client_id">{apps}</select>'
        f"<fieldset><legend>Launch</legend>{modes}</fieldset>"
        f'<label for="launch-user">User (EHR launch: who launches; the next step lists their patients)</label>'
        f'<select id="launch-user" name="user">{users}</select>'
        '<p><button type="submit" id="launch-button">Launch</button></p>'
    )
    launch_form = form(console.action, console.csrf, "launch", inner, form_id="launch-form")
    return (
        '<section id="launch"><h2>Launch an app</h2>'
        "<p>Like an EHR would: the browser goes to the app's launch URL. The app then sends you to the "
        "sandbox's sign-in page; for an EHR launch, sign in there as the user chosen here (the launch is "
        f"good only for them). If this browser is signed in to the sandbox as someone else, "
        f'<a href="{escape(console.logout)}">sign out</a> first.</p>{launch_form}</section>'
    )


def _users(users: Iterable[SeedUser]) -> str:
    rows = "".join(
        f'<tr data-login="{escape(u.user.login)}"><td><code>{escape(u.user.login)}</code></td>'
        f"<td><code>{escape(u.user.password)}</code></td><td>{escape(u.who)}</td>"
        f"<td>{', '.join(escape(p.display_name) for p in u.patients)}</td></tr>"
        for u in users
    )
    return (
        '<section id="users"><h2>Seed users</h2><p>Demo credentials from the sandbox\'s seed file; '
        "nothing in it is real.</p>"
        '<table id="seed-users"><thead><tr><th>Login</th><th>Password</th><th>Who</th><th>May open</th></tr>'
        f"</thead><tbody>{rows}</tbody></table></section>"
    )


def registered_notice(client: Client, secret: str | None) -> str:
    secret_part = (
        f"<p>Client secret, <strong>shown only now</strong> (the sandbox keeps only its hash): "
        f'<code id="registered-client-secret">{escape(secret)}</code></p>'
        if secret
        else "<p>A public app has no secret: it proves itself with PKCE.</p>"
    )
    return (
        f'<section id="registered" role="status"><h2>App registered</h2><p>{escape(client.name)}: client id '
        f'<code id="registered-client-id">{escape(client.client_id)}</code></p>{secret_part}</section>'
    )


def removed_notice(removal: Removal) -> str:
    return (
        f'<section id="removed" role="status"><h2>App removed</h2><p>{escape(removal.client.name)} '
        f"(<code>{escape(removal.client.client_id)}</code>) is no longer registered. Removed with it: "
        f"{removal.access_tokens} access token(s), {removal.refresh_tokens} refresh token(s), "
        f"{removal.codes} authorization code(s), {removal.launches} launch(es).</p></section>"
    )


def confirm_removal_page(action: str, csrf: str, client: Client) -> HTMLResponse:
    inner = (
        f'<input type="hidden" name="client_id" value="{escape(client.client_id)}">'
        '<button type="submit" id="confirm-remove">Remove app</button>'
        f'<a href="{escape(action)}" id="cancel-remove">Cancel</a>'
    )
    text = (
        f"<p>Remove <strong>{escape(client.name)}</strong> (<code>{escape(client.client_id)}</code>)? Its "
        "registration is deleted, its access and refresh tokens stop working at once, and its unused codes "
        "and launches too. This cannot be undone.</p>"
    )
    return page("Remove this app?", text + form(action, csrf, "remove-confirmed", inner))


def patient_step_page(action: str, csrf: str, client: Client, seed: SeedUser) -> HTMLResponse:
    choices = "".join(
        f'<label for="patient-{escape(p.id)}"><input type="radio" id="patient-{escape(p.id)}" name="patient" '
        f'value="{escape(p.id)}" required> {escape(p.display_name)} (MRN {escape(p.mrn)})</label>'
        for p in seed.patients
    )
    inner = (
        f'<input type="hidden" name="client_id" value="{escape(client.client_id)}">'
        f'<input type="hidden" name="user" value="{escape(seed.user.login)}">'
        '<input type="hidden" name="mode" value="ehr">'
        f"<fieldset><legend>Patient</legend>{choices}</fieldset>"
        '<button type="submit" id="launch-button">Launch</button>'
    )
    text = (
        f"<p><strong>{escape(client.name)}</strong> opens one of the records {escape(seed.user.login)} "
        f"({escape(seed.who)}) may open.</p>"
        f'<p id="sign-in-as">When the app sends you to the sandbox\'s sign-in page, sign in as '
        f"<code>{escape(seed.user.login)}</code> (password <code>{escape(seed.user.password)}</code>): "
        "the launch is good only for that user, for one authorization request, "
        f"within {LAUNCH_LIFETIME // 60} minutes.</p>"
    )
    return page("Choose a patient to launch for", text + form(action, csrf, "launch", inner))
