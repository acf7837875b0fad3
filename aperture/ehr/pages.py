"""The sandbox's HTML pages: sign-in, patient picker, consent, EHR launch, errors.

Server-rendered and usable without JavaScript: every step is a plain form posting back to the URL
it came from. Everything shown is escaped; every form carries the anti-forgery value. Responses
forbid framing (no clickjacking of the consent button) and caching.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from starlette.responses import HTMLResponse

from aperture.ehr.consent import ScopeItem
from aperture.ehr.people import Patient

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.4}"
    "fieldset{margin:1rem 0}label{display:block;margin:.3rem 0}.error{color:#a00}"
    "button{margin-right:.5rem;padding:.4rem 1rem}"
)
_TABLE_STYLE = (
    "table{border-collapse:collapse;margin:1rem 0;width:100%}th,td{border:1px solid #bbb;padding:.25rem .5rem;"
    "overflow-wrap:anywhere;"
    "text-align:left;vertical-align:top}input[type=text],input[type=url],textarea{width:100%;max-width:50rem}"
    "label.inline{display:inline;margin-right:1rem}"
)


def page(
    title: str, body: str, status: int = 200, headers: dict[str, str] | None = None, *, wide: bool = False
) -> HTMLResponse:
    """A whole page with the sandbox's headers; `wide`: room for tables (the developer page)."""
    style = _STYLE + ("body{max-width:80rem}" + _TABLE_STYLE if wide else "")
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width"><style>{style}</style></head>'
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={**_HEADERS, **(headers or {})})


def form(action: str, csrf: str, step: str, inner: str, *, form_id: str = "") -> str:
    named = f' id="{escape(form_id)}"' if form_id else ""
    return (
        f'<form method="post" action="{escape(action)}"{named}>'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<input type="hidden" name="step" value="{escape(step)}">{inner}</form>'
    )


def login_page(action: str, csrf: str, purpose: str, error: str | None = None, retry_after: int = 0) -> HTMLResponse:
    """The sign-in form; with `error`, 401; with `retry_after` (the throttle's lockout), 429 and Retry-After."""
    if retry_after:
        minutes = max(1, -(-retry_after // 60))
        error = (
            "Too many failed sign-ins for this user name or from this address. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )
    notice = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    inner = (
        '<label>User name <input name="username" autocomplete="username" required autofocus></label>'
        '<label>Password <input name="password" type="password" autocomplete="current-password" required></label>'
        '<button type="submit">Sign in</button>'
    )
    status = 429 if retry_after else 401 if error else 200
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return page("Sign in to the EHR sandbox", f"<p>{escape(purpose)}</p>{notice}{form(action, csrf, 'login', inner)}",
                status, headers)  # fmt: skip


def patient_picker(action: str, csrf: str, app_name: str, patients: Iterable[Patient]) -> HTMLResponse:
    choices = "".join(
        f'<label><input type="radio" name="patient" value="{escape(p.id)}" required> '
        f"{escape(p.display_name)} (born {escape(p.birth_date)}, MRN {escape(p.mrn)})</label>"
        for p in patients
    )
    inner = f'<fieldset><legend>Patient</legend>{choices}</fieldset><button type="submit">Continue</button>'
    intro = f"<p><strong>{escape(app_name)}</strong> will open one patient's record. Whose?</p>"
    return page("Choose a patient", intro + form(action, csrf, "patient", inner))


def consent_page(
    action: str,
    csrf: str,
    app_name: str,
    patient: Patient | None,
    groups: dict[str, list[ScopeItem]],
    unverified: bool = False,
) -> HTMLResponse:
    titles = {"imaging": "Imaging", "clinical": "Other clinical data", "access": "Sign-in and access"}
    sections = ""
    for group, items in groups.items():
        if not items:
            continue
        rows = ""
        for item in items:
            if item.choosable:
                rows += (
                    f'<label><input type="checkbox" name="scope" value="{escape(item.scope)}" checked> '
                    f"{escape(item.text)} <code>{escape(item.scope)}</code></label>"
                )
            else:
                rows += f"<p>{escape(item.text)} <code>{escape(item.scope)}</code></p>"
        sections += f"<fieldset><legend>{titles[group]}</legend>{rows}</fieldset>"
    about = f" for <strong>{escape(patient.display_name)}</strong>" if patient else ""
    hidden = f'<input type="hidden" name="patient" value="{escape(patient.id)}">' if patient else ""
    intro = (
        f"<p><strong>{escape(app_name)}</strong> asks to do the following{about}. "
        "Untick anything you do not want to allow.</p>"
    )
    if unverified:
        intro = (
            '<p class="error" role="alert"><strong>Unverified app.</strong> It registered itself and has not '
            "been approved by the EHR's administrator: its name is only what it says about itself. "
            "Allow access only if you know and trust it.</p>" + intro
        )
    buttons = '<button type="submit" name="decision" value="allow">Allow</button>'
    buttons += '<button type="submit" name="decision" value="deny">Deny</button>'
    return page("Allow access?", intro + form(action, csrf, "consent", hidden + sections + buttons))


def launch_page(
    action: str, csrf: str, who: str, patients: Iterable[Patient], apps: Iterable[tuple[str, str]], logout: str
) -> HTMLResponse:
    patient_choices = "".join(
        f'<label><input type="radio" name="patient" value="{escape(p.id)}" required> '
        f"{escape(p.display_name)} (MRN {escape(p.mrn)})</label>"
        for p in patients
    )
    app_choices = "".join(
        f'<label><input type="radio" name="client_id" value="{escape(client_id)}" required> {escape(name)}</label>'
        for client_id, name in apps
    )
    if not app_choices:
        app_choices = "<p>No app is registered with a launch URL (aperture ehr clients add --launch-url ...).</p>"
    inner = (
        f"<fieldset><legend>Patient</legend>{patient_choices}</fieldset>"
        f'<fieldset><legend>App</legend>{app_choices}</fieldset><button type="submit">Launch</button>'
    )
    sign_out = form(logout, csrf, "logout", '<button type="submit">Sign out</button>')
    return page("Launch an app", f"<p>Signed in as {escape(who)}.</p>" + form(action, csrf, "launch", inner) + sign_out)


def logout_page(action: str, csrf: str, who: str) -> HTMLResponse:
    """Sign-out asks first: a GET (a link, an app's redirect) never ends a session by itself."""
    inner = '<button type="submit">Sign out</button>'
    return page("Sign out?", f"<p>Signed in as {escape(who)}.</p>" + form(action, csrf, "logout", inner))


def signed_out_page() -> HTMLResponse:
    return page("Signed out", "<p>You are signed out of the EHR sandbox.</p>")


def error_page(title: str, message: str, status: int = 400) -> HTMLResponse:
    return page(title, f'<p class="error" role="alert">{escape(message)}</p>', status)
