"""The developer page at /sandbox, driven as a browser without JavaScript would: read a form, post it back.

A sandbox of its own (the `developer` fixture: the page registers and removes apps), with `developer_page = true`;
apps registered here are then run through the real authorization flow of `test_launch`.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from aperture.ehr.clients import DEFAULT_APP_SCOPE
from aperture.ehr.people import load_directory
from tests.ehr.conftest import LAUNCH_URL, REDIRECT_URI, Sandbox, ehr, register
from tests.ehr.test_launch import Flow, User, code_from, field_value

SCOPE = "launch launch/patient openid fhirUser offline_access patient/Patient.rs patient/ImagingStudy.rs"
STANDALONE = SCOPE.removeprefix("launch ")  # what a standalone launch asks for


class Console:
    """A browser on the developer page: a cookie jar that posts the page's forms with their anti-forgery value."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.url = f"{sandbox.url}/sandbox"
        self.http = httpx.Client(follow_redirects=False, timeout=30)

    def get(self) -> httpx.Response:
        response = self.http.get(self.url)
        assert response.status_code == 200, response.text
        return response

    def post(self, **fields: str) -> httpx.Response:
        return self.http.post(self.url, data={"csrf": field_value(self.get().text, "csrf"), **fields})

    def register(self, **fields: str) -> httpx.Response:
        values = {"kind": "public", "name": "My app", "redirect_uris": REDIRECT_URI, "launch_url": LAUNCH_URL,
                  "scope": SCOPE, "client_id": "", **fields}  # fmt: skip
        return self.post(step="register", **values)

    def remove(self, client_id: str) -> httpx.Response:
        confirm = self.post(step="remove", client_id=client_id)
        assert confirm.status_code == 200 and "Remove this app?" in confirm.text, confirm.text
        return self.http.post(
            self.url,
            data={"csrf": field_value(confirm.text, "csrf"), "step": "remove-confirmed", "client_id": client_id},
        )


def registered_id(html: str) -> str:
    match = re.search(r'id="registered-client-id">([^<]*)<', html)
    assert match, html
    return unescape(match.group(1))


def secret_in(html: str) -> str | None:
    match = re.search(r'id="registered-client-secret">([^<]*)<', html)
    return unescape(match.group(1)) if match else None


def test_the_page_is_404_unless_switched_on(sandbox: Sandbox) -> None:
    assert httpx.get(f"{sandbox.url}/sandbox").status_code == 404
    assert httpx.post(f"{sandbox.url}/sandbox", data={"step": "register"}).status_code == 404


def test_the_page_shows_the_default_scope_the_seed_users_and_keeps_the_page_headers(developer: Sandbox) -> None:
    page = Console(developer).get()
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script at all
    assert page.headers["cache-control"] == "no-store"
    assert f">{DEFAULT_APP_SCOPE}</textarea>" in page.text
    for user in load_directory().users.values():  # the demo credentials, from the seed
        assert f'data-login="{user.login}"' in page.text and f"<code>{user.password}</code>" in page.text
    assert 'aria-label="Remove imaging"' not in page.text  # infrastructure: no Remove button
    assert '<label for="app-name">' in page.text and 'id="register-form"' in page.text


def test_registering_a_public_app_lists_it_and_it_completes_a_launch(developer: Sandbox) -> None:
    console = Console(developer)
    answer = console.register(name="Public <app>", client_id="dev-public")
    assert answer.status_code == 200, answer.text
    assert registered_id(answer.text) == "dev-public" and secret_in(answer.text) is None
    row = re.search(r'<tr data-client-id="dev-public">(.*?)</tr>', console.get().text)
    assert row, "not listed"
    assert "Public &lt;app&gt;" in row.group(1) and REDIRECT_URI in row.group(1) and LAUNCH_URL in row.group(1)
    assert "approved" in row.group(1) and "awaiting" not in row.group(1)
    assert 'aria-label="Remove dev-public"' in row.group(1)
    flow = Flow(developer, client_id="dev-public", scope=STANDALONE)
    token = flow.exchange(code_from(User("walter", "walter-demo").consent(flow.url()), flow.state))
    assert token.status_code == 200, token.text


def test_a_confidential_apps_secret_is_shown_once_and_works_at_the_token_endpoint(developer: Sandbox) -> None:
    console = Console(developer)
    answer = console.register(kind="confidential", name="Server app")
    client_id, secret = registered_id(answer.text), secret_in(answer.text)
    assert secret and len(secret) >= 40
    assert secret not in console.get().text  # the list never shows it
    developer.secrets[client_id] = secret
    flow = Flow(developer, client_id=client_id, scope=STANDALONE)
    code = code_from(User("walter", "walter-demo").consent(flow.url()), flow.state)
    assert flow.exchange(code).status_code == 200
    assert secret not in developer.server.log.read_text()


BAD_REGISTRATIONS = {  # id: (field, value, what the message says)
    "http": ("redirect_uris", "http://example.com/cb", "must be https (or http on loopback)"),
    "fragment": ("redirect_uris", "https://app.test/cb#frag", "without a #fragment"),
    "no-redirect": ("redirect_uris", "", "at least one redirect URI"),
    "no-name": ("name", "  ", "Give the app a name"),
    "bad-scope": ("scope", "patient/Patient.sr", "letters from 'cruds'"),
    "system-scope": ("scope", "system/*.rs", "is not allowed here"),
    "launch-url": ("launch_url", "ftp://app.test/launch", "Launch URL"),
    "client-id": ("client_id", "has space", "letters, digits"),
    "taken-id": ("client_id", "imaging", "already registered"),
    "backend": ("kind", "backend", "public or confidential"),
}


@pytest.mark.parametrize(("field", "value", "message"), list(BAD_REGISTRATIONS.values()), ids=list(BAD_REGISTRATIONS))
def test_a_bad_registration_shows_the_form_again_with_the_message(
    developer: Sandbox, field: str, value: str, message: str
) -> None:
    console = Console(developer)
    answer = console.register(**{"name": "Kept name", field: value})
    assert answer.status_code == 400
    error = re.search(r'id="register-error">([^<]*)<', answer.text)
    assert error and message in unescape(error.group(1)), answer.text
    if "Kept name" in answer.text:
        assert 'value="Kept name"' in answer.text  # the values are kept
    assert 'id="registered"' not in answer.text


def test_a_post_without_the_anti_forgery_value_is_refused(developer: Sandbox) -> None:
    console = Console(developer)
    console.get()  # the cookie is set; the form value is missing
    answer = console.http.post(console.url, data={"step": "register", "kind": "public", "name": "Forged",
                                                  "redirect_uris": REDIRECT_URI, "scope": SCOPE,
                                                  "client_id": "forged"})  # fmt: skip
    assert answer.status_code == 400 and "Please start again" in answer.text
    stranger = httpx.post(console.url, data={"step": "remove", "csrf": "guessed", "client_id": "imaging"})
    assert stranger.status_code == 400
    assert 'data-client-id="forged"' not in console.get().text


def test_removing_an_app_ends_its_tokens_and_the_app(developer: Sandbox) -> None:
    console = Console(developer)
    client_id = registered_id(console.register(name="Doomed").text)
    flow = Flow(developer, client_id=client_id, scope=STANDALONE)
    token = flow.exchange(code_from(User("walter", "walter-demo").consent(flow.url()), flow.state)).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert developer.introspect(token["access_token"]).json()["active"] is True
    assert httpx.get(f"{developer.url}/fhir/Patient/walter-nguyen", headers=bearer).status_code == 200
    launched = console.post(step="launch", client_id=client_id, mode="ehr", user="walter", patient="walter-nguyen")
    launch = parse_qs(urlsplit(launched.headers["location"]).query)["launch"][0]  # made, never used

    removed = console.remove(client_id)
    assert removed.status_code == 200
    assert "1 access token(s), 1 refresh token(s)" in removed.text and "1 launch(es)" in removed.text
    assert f'data-client-id="{client_id}"' not in removed.text
    assert developer.introspect(token["access_token"]).json() == {"active": False}
    assert httpx.get(f"{developer.url}/fhir/Patient/walter-nguyen", headers=bearer).status_code == 401
    refreshed = httpx.post(developer.token_endpoint, data={"grant_type": "refresh_token", "client_id": client_id,
                                                          "refresh_token": token["refresh_token"]})  # fmt: skip
    assert refreshed.status_code in (400, 401) and refreshed.json()["error"] == "invalid_client"
    again = Flow(developer, client_id=client_id, scope=SCOPE, extra={"launch": launch})
    refused = User("walter", "walter-demo").http.get(again.url())
    assert refused.status_code == 400 and "location" not in refused.headers  # unknown client: a page, no redirect


def test_infrastructure_and_unknown_apps_are_not_removed_from_the_page(developer: Sandbox) -> None:
    console = Console(developer)
    refused = console.post(step="remove-confirmed", client_id="imaging")
    assert refused.status_code == 403 and "aperture ehr clients remove imaging" in refused.text
    assert console.post(step="remove", client_id="nobody").status_code == 404
    assert 'data-client-id="imaging"' in console.get().text


def test_ehr_launch_goes_to_the_launch_url_with_a_launch_the_authorization_endpoint_takes(developer: Sandbox) -> None:
    console = Console(developer)
    client_id = registered_id(console.register(name="Launched", client_id="dev-launch").text)
    step = console.post(step="launch", client_id=client_id, mode="ehr", user="dr.chen")
    assert step.status_code == 200 and 'id="sign-in-as"' in step.text and "<code>chen-demo</code>" in step.text
    listed = re.findall(r'name="patient" value="([^"]*)"', step.text)
    assert listed == [p.id for p in load_directory().patients_for(load_directory().users["dr.chen"])]
    launched = console.http.post(console.url, data={"csrf": field_value(step.text, "csrf"), "step": "launch",
                                                    "client_id": client_id, "mode": "ehr", "user": "dr.chen",
                                                    "patient": "priya-raman"})  # fmt: skip
    assert launched.status_code == 303
    location = urlsplit(launched.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == LAUNCH_URL
    query = parse_qs(location.query)
    assert query["iss"] == [f"{developer.url}/fhir"] and set(query) == {"iss", "launch"}
    flow = Flow(developer, client_id=client_id, scope=SCOPE, extra={"launch": query["launch"][0]})
    token = flow.exchange(code_from(User("dr.chen", "chen-demo").consent(flow.url()), flow.state)).json()
    assert token["patient"] == "priya-raman"
    assert developer.introspect(token["access_token"]).json()["fhirUser"].endswith("/Practitioner/dr-chen")


def test_the_launch_is_only_for_the_user_chosen(developer: Sandbox) -> None:
    console = Console(developer)
    launched = console.post(step="launch", client_id="dev-launch", mode="ehr", user="dr.chen", patient="walter-nguyen")
    flow = Flow(developer, client_id="dev-launch", scope=SCOPE,
                extra={"launch": parse_qs(urlsplit(launched.headers["location"]).query)["launch"][0]})  # fmt: skip
    assert User("walter", "walter-demo").start(flow.url()).status_code == 403  # someone else signs in


def test_standalone_launch_sends_only_iss(developer: Sandbox) -> None:
    console = Console(developer)
    console.register(name="Standalone", client_id="dev-standalone", launch_url=f"{LAUNCH_URL}?app=1")
    launched = console.post(step="launch", client_id="dev-standalone", mode="standalone", user="dr.chen")
    assert launched.status_code == 303
    assert launched.headers["location"] == f"{LAUNCH_URL}?app=1&" + urlencode({"iss": f"{developer.url}/fhir"})


def test_a_patient_the_user_may_not_open_is_refused(developer: Sandbox) -> None:
    console = Console(developer)
    refused = console.post(step="launch", client_id="dev-launch", mode="ehr", user="dr.chen", patient="tomas-berg")
    assert refused.status_code == 403 and "dr.chen may not act for 'tomas-berg'" in unescape(refused.text)
    assert "location" not in refused.headers
    assert console.post(step="launch", client_id="dev-launch", mode="ehr", user="nobody").status_code == 400


def test_cli_removes_a_client_with_its_tokens(developer: Sandbox, tmp_path: Path) -> None:
    data = str(developer.server.data)
    added = register(developer.server.data, "--kind", "public", "--name", "CLI app", "--client-id", "cli-app",
                     "--redirect-uri", REDIRECT_URI)  # fmt: skip
    assert added["scope"] == DEFAULT_APP_SCOPE  # --kind public without --scope
    minted = ehr("token", "--data", data, "--client-id", "cli-app", "--scope", "patient/Patient.rs launch/patient",
                 "--patient", "walter-nguyen")  # fmt: skip
    access_token = re.search(r'"access_token": "([^"]+)"', minted.stdout)
    assert access_token
    removed = ehr("clients", "remove", "--data", data, "cli-app")
    assert '"removed": "cli-app"' in removed.stdout and '"access_tokens": 1' in removed.stdout
    assert access_token.group(1) not in removed.stdout
    assert developer.introspect(access_token.group(1)).json() == {"active": False}
    unknown = ehr("clients", "remove", "--data", data, "cli-app", check=False)
    assert unknown.returncode == 2 and "No client is registered under the id 'cli-app'" in unknown.stderr
