"""The browser launch without a browser: the sign-in, picker and consent pages are plain forms, so httpx can post them.

These tests drive the authorization endpoint as a user with a cookie jar would, then check each
security rule at the token endpoint, in introspection and at the FHIR server.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.ehr.conftest import APP_SCOPE, LAUNCH_URL, REDIRECT_URI, Sandbox, register, start_sandbox

SCOPE = "launch/patient openid fhirUser offline_access patient/Patient.rs patient/ImagingStudy.rs"


@dataclass
class Flow:
    """One authorization request with its PKCE verifier and state."""

    sandbox: Sandbox
    client_id: str = "growth"
    scope: str = SCOPE
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    state: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def challenge(self) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest()).decode().rstrip("=")

    def url(self, **overrides: str | None) -> str:
        params: dict[str, str | None] = {
            "response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT_URI,
            "scope": self.scope, "state": self.state, "aud": f"{self.sandbox.url}/fhir",
            "code_challenge": self.challenge, "code_challenge_method": "S256", **self.extra, **overrides,
        }  # fmt: skip
        return f"{self.sandbox.url}/auth/authorize?{urlencode({k: v for k, v in params.items() if v is not None})}"

    def exchange(self, code: str, **overrides: str | None) -> httpx.Response:
        data: dict[str, str | None] = {
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": self.verifier, "client_id": self.client_id, **overrides,
        }  # fmt: skip
        auth = (
            (self.client_id, self.sandbox.secrets[self.client_id]) if self.client_id in self.sandbox.secrets else None
        )
        body = {k: v for k, v in data.items() if v is not None}
        return httpx.post(self.sandbox.token_endpoint, data=body, auth=auth)  # type: ignore[arg-type]


def field_value(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field in:\n{html}"
    return unescape(match.group(1))


def offered(html: str) -> list[str]:
    return [unescape(v) for v in re.findall(r'type="checkbox" name="scope" value="([^"]*)"', html)]


class User:
    """A person at a browser without JavaScript: a cookie jar that reads and posts forms."""

    def __init__(self, login: str, password: str) -> None:
        self.http = httpx.Client(follow_redirects=False)
        self.login, self.password = login, password

    def post(self, url: str, html: str, **fields: str | list[str]) -> httpx.Response:
        return self.http.post(url, data={"csrf": field_value(html, "csrf"), **fields})

    def start(self, url: str) -> httpx.Response:
        page = self.http.get(url)
        if "Sign in" in page.text and page.status_code == 200:
            page = self.post(url, page.text, step="login", username=self.login, password=self.password)
        return page

    def consent(self, url: str, patient: str | None = None, untick: tuple[str, ...] = (), add: tuple[str, ...] = ()):
        page = self.start(url)
        if "Choose a patient" in page.text:
            assert patient is not None, page.text
            page = self.post(url, page.text, step="patient", patient=patient)
        assert "Allow access?" in page.text, page.text
        ticked = [s for s in offered(page.text) if s not in untick] + list(add)
        fields: dict[str, str | list[str]] = {"step": "consent", "decision": "allow", "scope": ticked}
        if 'name="patient"' in page.text:
            fields["patient"] = field_value(page.text, "patient")
        return self.post(url, page.text, **fields)


def code_from(response: httpx.Response, state: str) -> str:
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI)
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    return query["code"][0]


def error_from(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code in (302, 303), response.text
    assert response.headers["location"].startswith(REDIRECT_URI)
    return parse_qs(urlsplit(response.headers["location"]).query)


def tokens(sandbox: Sandbox, login: str = "walter", password: str = "walter-demo", **kw: object) -> dict:
    flow = Flow(sandbox, **kw)  # type: ignore[arg-type]
    response = flow.exchange(code_from(User(login, password).consent(flow.url()), flow.state))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_parent_gets_a_token_for_her_child_as_related_person(sandbox: Sandbox) -> None:
    flow = Flow(sandbox)
    answer = flow.exchange(
        code_from(User("elena", "elena-demo").consent(flow.url(), patient="maya-alvarez"), flow.state)
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()
    assert token["patient"] == "maya-alvarez"
    assert token["scope"].split() == SCOPE.split()
    assert token["refresh_token"]
    jwks = KeySet.import_key_set(httpx.get(f"{sandbox.url}/.well-known/jwks.json").json())
    claims = jwt.decode(token["id_token"], jwks, algorithms=["RS256"]).claims
    assert claims["iss"] == f"{sandbox.url}/fhir" and claims["aud"] == ["growth"] and claims["sub"] == "elena"
    assert claims["fhirUser"] == f"{sandbox.url}/fhir/RelatedPerson/elena-for-maya"
    info = sandbox.introspect(token["access_token"]).json()
    assert info["active"] and info["patient"] == "maya-alvarez"
    assert info["fhirUser"] == f"{sandbox.url}/fhir/RelatedPerson/elena-for-maya"


def test_picker_offers_only_the_clinicians_panel_and_refuses_another_patient(sandbox: Sandbox) -> None:
    flow, user = Flow(sandbox), User("dr.chen", "chen-demo")
    page = user.start(flow.url())
    assert "Choose a patient" in page.text
    listed = re.findall(r'name="patient" value="([^"]*)"', page.text)
    assert listed == ["walter-nguyen", "priya-raman", "maya-alvarez"]
    forged = user.post(flow.url(), page.text, step="patient", patient="tomas-berg")
    assert "Choose a patient" in forged.text  # asked again, no consent for Tomas
    forged = user.post(flow.url(), page.text, step="consent", decision="allow", patient="tomas-berg", scope="openid")
    assert "location" not in forged.headers


def test_a_user_with_one_patient_sees_no_picker(sandbox: Sandbox) -> None:
    assert tokens(sandbox)["patient"] == "walter-nguyen"


def test_deselected_imaging_is_absent_from_the_token_and_introspection(sandbox: Sandbox) -> None:
    flow = Flow(sandbox)
    response = User("walter", "walter-demo").consent(flow.url(), untick=("patient/ImagingStudy.rs",))
    token = flow.exchange(code_from(response, flow.state)).json()
    assert "patient/ImagingStudy.rs" not in token["scope"].split()
    assert "patient/Patient.rs" in token["scope"].split()
    assert "patient/ImagingStudy.rs" not in sandbox.introspect(token["access_token"]).json()["scope"].split()


def test_scopes_are_never_wider_than_registered_or_offered(sandbox: Sandbox) -> None:
    flow = Flow(sandbox, scope=SCOPE + " patient/Observation.rs patient/*.cruds system/*.rs")
    user = User("walter", "walter-demo")
    page = user.start(flow.url())
    assert "patient/Observation.rs" not in offered(page.text)
    response = user.consent(flow.url(), add=("patient/*.cruds", "user/*.rs"))  # a forged form adds scopes
    token = flow.exchange(code_from(response, flow.state)).json()
    granted = token["scope"].split()
    assert not {"patient/Observation.rs", "patient/*.cruds", "system/*.rs", "user/*.rs"} & set(granted)
    assert set(granted) <= set(APP_SCOPE.split())  # the wildcard narrowed to what is registered


def test_denying_sends_access_denied(sandbox: Sandbox) -> None:
    flow, user = Flow(sandbox), User("walter", "walter-demo")
    page = user.start(flow.url())
    answer = error_from(user.post(flow.url(), page.text, step="consent", decision="deny"))
    assert answer["error"] == ["access_denied"] and answer["state"] == [flow.state]


def test_a_form_without_the_anti_forgery_value_is_refused(sandbox: Sandbox) -> None:
    flow, user = Flow(sandbox), User("walter", "walter-demo")
    user.start(flow.url())
    response = user.http.post(flow.url(), data={"step": "consent", "decision": "allow", "scope": "openid"})
    assert response.status_code == 400 and "location" not in response.headers


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
    ],  # fmt: skip
    ids=["missing", "plain", "method-missing"],
)
def test_authorization_without_s256_pkce_is_refused(sandbox: Sandbox, overrides: dict[str, str | None]) -> None:
    flow = Flow(sandbox)
    response = httpx.get(flow.url(**overrides), follow_redirects=False)
    answer = error_from(response)
    assert answer["error"] == ["invalid_request"] and answer["state"] == [flow.state]


def test_wrong_or_missing_code_verifier_is_refused(sandbox: Sandbox) -> None:
    flow = Flow(sandbox)
    code = code_from(User("walter", "walter-demo").consent(flow.url()), flow.state)
    wrong = flow.exchange(code, code_verifier=secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    flow = Flow(sandbox)
    code = code_from(User("walter", "walter-demo").consent(flow.url()), flow.state)
    missing = flow.exchange(code, code_verifier=None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


def test_redirect_uri_must_match_exactly(sandbox: Sandbox) -> None:
    flow = Flow(sandbox)
    response = httpx.get(flow.url(redirect_uri=REDIRECT_URI + "/"), follow_redirects=False)
    assert response.status_code == 400 and "location" not in response.headers  # never sent to an unknown URI
    code = code_from(User("walter", "walter-demo").consent(flow.url()), flow.state)
    answer = flow.exchange(code, redirect_uri=REDIRECT_URI + "?x=1")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_aud_must_be_this_fhir_server(sandbox: Sandbox) -> None:
    flow = Flow(sandbox)
    answer = error_from(httpx.get(flow.url(aud="https://elsewhere.test/fhir"), follow_redirects=False))
    assert answer["error"] == ["invalid_request"]


def refresh(sandbox: Sandbox, refresh_token: str, client_id: str = "growth", **extra: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    if client_id in sandbox.secrets:
        return httpx.post(sandbox.token_endpoint, data=data, auth=(client_id, sandbox.secrets[client_id]))
    return httpx.post(sandbox.token_endpoint, data={**data, "client_id": client_id})


def test_code_reuse_is_refused_and_revokes_the_tokens_it_gave(sandbox: Sandbox) -> None:
    flow = Flow(sandbox)
    code = code_from(User("walter", "walter-demo").consent(flow.url()), flow.state)
    first = flow.exchange(code).json()
    assert sandbox.introspect(first["access_token"]).json()["active"] is True
    again = flow.exchange(code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert sandbox.introspect(first["access_token"]).json() == {"active": False}
    refresh = httpx.post(sandbox.token_endpoint, data={"grant_type": "refresh_token", "client_id": "growth",
                                                       "refresh_token": first["refresh_token"]})  # fmt: skip
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_refresh_rotates_keeps_the_patient_and_may_only_narrow(sandbox: Sandbox) -> None:
    first = tokens(sandbox)
    wider = httpx.post(sandbox.token_endpoint, data={"grant_type": "refresh_token", "client_id": "growth",
                       "refresh_token": first["refresh_token"], "scope": "patient/*.rs"})  # fmt: skip
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    answer = httpx.post(
        sandbox.token_endpoint,
        data={
            "grant_type": "refresh_token",
            "client_id": "growth",
            "refresh_token": first["refresh_token"],
            "scope": "patient/Patient.rs offline_access",
        },
    )
    assert answer.status_code == 200, answer.text
    second = answer.json()
    assert second["patient"] == "walter-nguyen" and second["scope"] == "patient/Patient.rs offline_access"
    assert second["refresh_token"] != first["refresh_token"]
    old = httpx.post(sandbox.token_endpoint, data={"grant_type": "refresh_token", "client_id": "growth",
                     "refresh_token": first["refresh_token"]})  # fmt: skip
    assert old.status_code == 400  # rotated: the old refresh token is spent


def test_reusing_a_rotated_out_refresh_token_revokes_the_whole_grant(sandbox: Sandbox) -> None:
    """RFC 9700 §4.14.2: a spent refresh token coming back means one of two holders is an attacker."""
    first = tokens(sandbox)
    second = refresh(sandbox, first["refresh_token"]).json()
    third = refresh(sandbox, second["refresh_token"]).json()
    reused = refresh(sandbox, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert refresh(sandbox, third["refresh_token"]).json()["error"] == "invalid_grant"  # the live one is gone too
    for answer in (first, second, third):
        assert sandbox.introspect(answer["access_token"]).json() == {"active": False}
    other = tokens(sandbox)  # another authorization of the same app and user is not touched
    assert sandbox.introspect(other["access_token"]).json()["active"] is True


def test_another_clients_replay_of_a_spent_refresh_token_revokes_nothing(sandbox: Sandbox) -> None:
    """The reuse rule is for the grant's own client: anyone else could otherwise end that grant at will."""
    first = tokens(sandbox)
    second = refresh(sandbox, first["refresh_token"]).json()
    replayed = refresh(sandbox, first["refresh_token"], client_id="trusted-viewer")  # a public client id
    assert replayed.status_code in (400, 401) and replayed.json()["error"] in ("invalid_grant", "invalid_client")
    assert sandbox.introspect(second["access_token"]).json()["active"] is True
    assert refresh(sandbox, second["refresh_token"]).status_code == 200


def test_a_narrowed_refresh_narrows_only_the_access_token(sandbox: Sandbox) -> None:
    """RFC 6749 §6: the new refresh token has the scope of the one presented, whatever the request narrows."""
    first = tokens(sandbox)
    granted = first["scope"]
    assert "offline_access" in granted.split()
    narrow = refresh(sandbox, first["refresh_token"], scope="patient/Patient.rs")
    assert narrow.status_code == 200, narrow.text
    assert narrow.json()["scope"] == "patient/Patient.rs"
    assert narrow.json()["refresh_token"]  # without offline_access in the request, the grant goes on
    full = refresh(sandbox, narrow.json()["refresh_token"])
    assert full.status_code == 200 and full.json()["scope"] == granted
    other = refresh(sandbox, full.json()["refresh_token"], scope="patient/ImagingStudy.rs")
    assert other.status_code == 200 and other.json()["scope"] == "patient/ImagingStudy.rs"
    info = sandbox.introspect(other.json()["access_token"]).json()
    assert info["active"] is True and info["scope"] == "patient/ImagingStudy.rs"


def test_confidential_client_authenticates_with_its_secret(sandbox: Sandbox) -> None:
    flow = Flow(sandbox, client_id="portal")
    code = code_from(User("walter", "walter-demo").consent(flow.url()), flow.state)
    anonymous = httpx.post(
        sandbox.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
            "client_id": "portal",
        },
    )
    assert anonymous.status_code in (400, 401) and anonymous.json()["error"] == "invalid_client"
    flow = Flow(sandbox, client_id="portal")
    code = code_from(User("walter", "walter-demo").consent(flow.url()), flow.state)
    assert flow.exchange(code).json()["patient"] == "walter-nguyen"


def ehr_launch(sandbox: Sandbox, user: User, client_id: str, patient: str) -> str:
    page = user.start(f"{sandbox.url}/ehr/launch")
    response = user.post(f"{sandbox.url}/ehr/launch", page.text, step="launch", client_id=client_id, patient=patient)
    assert response.status_code == 303 and response.headers["location"].startswith(LAUNCH_URL)
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["iss"] == [f"{sandbox.url}/fhir"]
    return query["launch"][0]


def test_ehr_launch_of_a_pre_approved_app_is_zero_click(sandbox: Sandbox) -> None:
    user = User("dr.chen", "chen-demo")
    launch = ehr_launch(sandbox, user, "trusted-viewer", "priya-raman")
    flow = Flow(sandbox, client_id="trusted-viewer", scope="launch openid fhirUser patient/ImagingStudy.rs",
                extra={"launch": launch})  # fmt: skip
    response = user.http.get(flow.url())  # no sign-in page, no consent page: straight back to the app
    token = flow.exchange(code_from(response, flow.state)).json()
    assert token["patient"] == "priya-raman"
    info = sandbox.introspect(token["access_token"]).json()
    assert info["fhirUser"] == f"{sandbox.url}/fhir/Practitioner/dr-chen"


def test_a_launch_binds_only_its_own_app_and_user(sandbox: Sandbox) -> None:
    launch = ehr_launch(sandbox, User("dr.chen", "chen-demo"), "growth", "walter-nguyen")
    other_app = Flow(sandbox, client_id="trusted-viewer", scope="launch patient/Patient.rs", extra={"launch": launch})
    assert error_from(httpx.get(other_app.url(), follow_redirects=False))["error"] == ["invalid_request"]
    same_app = Flow(sandbox, scope="launch patient/Patient.rs", extra={"launch": launch})
    response = User("walter", "walter-demo").start(same_app.url())
    assert response.status_code == 403 and "location" not in response.headers


def test_fhir_patient_read_follows_the_token(sandbox: Sandbox) -> None:
    token = tokens(sandbox)["access_token"]
    fhir = f"{sandbox.url}/fhir"
    own = httpx.get(f"{fhir}/Patient/walter-nguyen", headers={"Authorization": f"Bearer {token}"})
    assert own.status_code == 200 and own.headers["content-type"].startswith("application/fhir+json")
    assert own.json()["identifier"][0] == {
        "use": "usual",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "system": "http://aperture.example.org/fhir/sid/mrn",
        "value": "AGH-100377",
    }
    other = httpx.get(f"{fhir}/Patient/tomas-berg", headers={"Authorization": f"Bearer {token}"})
    assert other.status_code == 403 and other.json()["resourceType"] == "OperationOutcome"
    anonymous = httpx.get(f"{fhir}/Patient/walter-nguyen")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    bogus = httpx.get(f"{fhir}/Patient/walter-nguyen", headers={"Authorization": "Bearer nope"})
    assert bogus.status_code == 401 and 'error="invalid_token"' in bogus.headers["www-authenticate"]
    metadata = httpx.get(f"{fhir}/metadata").json()
    assert metadata["resourceType"] == "CapabilityStatement" and metadata["fhirVersion"] == "4.0.1"


def test_wrong_password_is_refused_without_saying_which_part(sandbox: Sandbox) -> None:
    flow, user = Flow(sandbox), User("walter", "nope")
    page = user.start(flow.url())
    assert page.status_code == 401 and "Wrong user name or password" in page.text


SESSION_COOKIE = "aperture_ehr_session"


@pytest.fixture
def fresh_sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox of its own, so sign-in lockouts cannot spill into other tests' accounts or address."""
    register(tmp_path / "data", "--kind", "public", "--name", "Growth Chart", "--client-id", "growth",
             "--scope", APP_SCOPE, "--redirect-uri", REDIRECT_URI)  # fmt: skip
    server = start_sandbox(tmp_path / "data")
    yield Sandbox(server, {})
    server.stop()


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(fresh_sandbox: Sandbox) -> None:
    launch_page, flow = f"{fresh_sandbox.url}/ehr/launch", Flow(fresh_sandbox)
    for url in (launch_page, flow.url(), launch_page, flow.url(), launch_page):  # both sign-in pages count
        assert User("tomas", "guess").start(url).status_code == 401
    for url in (launch_page, flow.url()):
        locked = User("tomas", "tomas-demo").start(url)
        assert locked.status_code == 429, locked.text
        assert int(locked.headers["retry-after"]) > 0
        assert "Too many failed sign-ins" in locked.text
        assert SESSION_COOKIE not in locked.cookies
    other = User("walter", "walter-demo").start(launch_page)  # other accounts from the same address are fine
    assert other.status_code == 200 and "Launch an app" in other.text


def test_twenty_failed_sign_ins_from_one_address_lock_it(fresh_sandbox: Sandbox) -> None:
    launch_page = f"{fresh_sandbox.url}/ehr/launch"
    for n in range(20):  # logins that do not exist: nothing is kept per name, the address is throttled
        assert User(f"nobody-{n}", "guess").start(launch_page).status_code == 401
    locked = User("walter", "walter-demo").start(launch_page)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert SESSION_COOKIE not in locked.cookies


def test_the_sign_in_throttle_keeps_a_bounded_number_of_records() -> None:
    from aperture.ehr.throttle import SignInThrottle

    throttle = SignInThrottle(known={"walter"}, capacity=100)
    for n in range(1000):
        throttle.failed(f"attacker-chosen-{n}", f"10.0.{n // 250}.{n % 250}")
    assert throttle.size() <= 2 * 100
    for _ in range(5):
        throttle.failed("walter", "192.0.2.1")
    for n in range(1000):  # a flood of other names and addresses does not push the account's lock out
        throttle.failed(f"other-{n}", f"198.51.{n // 250}.{n % 250}")
    assert throttle.retry_after("walter", "203.0.113.9") > 0


def test_a_lockout_ends_after_its_period_and_failures_age_out_of_the_window() -> None:
    from aperture.ehr.throttle import ACCOUNT_FAILURES, LOCKOUT, WINDOW, SignInThrottle

    now = [1000.0]
    throttle = SignInThrottle(known={"walter"}, clock=lambda: now[0])  # a clock the test moves, not waits for
    for _ in range(ACCOUNT_FAILURES):
        throttle.failed("walter", "192.0.2.1")
    assert throttle.retry_after("walter", "192.0.2.1") == LOCKOUT
    now[0] += LOCKOUT
    assert throttle.retry_after("walter", "192.0.2.1") == 0
    for _ in range(ACCOUNT_FAILURES - 1):  # spread over more than the window: never locked
        throttle.failed("walter", "192.0.2.1")
        now[0] += WINDOW / 2 + 1
    throttle.failed("walter", "192.0.2.1")
    assert throttle.retry_after("walter", "192.0.2.1") == 0


def test_the_anti_forgery_value_changes_at_sign_in(sandbox: Sandbox) -> None:
    flow, user = Flow(sandbox), User("walter", "walter-demo")
    login = user.http.get(flow.url())
    before = field_value(login.text, "csrf")
    consent = user.post(flow.url(), login.text, step="login", username="walter", password="walter-demo")
    assert "Allow access?" in consent.text
    assert field_value(consent.text, "csrf") != before
    forged = user.http.post(
        flow.url(), data={"csrf": before, "step": "consent", "decision": "allow", "scope": "openid"}
    )
    assert forged.status_code == 400 and "location" not in forged.headers
    user.http.cookies.set("aperture_ehr_csrf", before)  # even with the old value planted back in the cookie
    forged = user.http.post(
        flow.url(), data={"csrf": before, "step": "consent", "decision": "allow", "scope": "openid"}
    )
    assert forged.status_code == 400 and "location" not in forged.headers


def test_logout_ends_the_session_on_the_server(sandbox: Sandbox) -> None:
    user = User("walter", "walter-demo")
    page = user.start(f"{sandbox.url}/ehr/launch")
    assert "Launch an app" in page.text
    old = user.http.cookies[SESSION_COOKIE]
    done = user.post(f"{sandbox.url}/auth/logout", page.text)
    assert done.status_code == 200 and "You are signed out" in done.text
    replay = httpx.get(Flow(sandbox).url(), cookies={SESSION_COOKIE: old})
    assert replay.status_code == 200 and "Sign in" in replay.text and "Allow access?" not in replay.text


def test_logout_returns_only_to_a_registered_redirect_origin(sandbox: Sandbox) -> None:
    user = User("walter", "walter-demo")
    user.start(f"{sandbox.url}/ehr/launch")
    query = {"post_logout_redirect_uri": f"{LAUNCH_URL}?bye=1", "client_id": "growth", "state": "s-1"}
    url = f"{sandbox.url}/auth/logout?{urlencode(query)}"
    confirm = user.http.get(url)  # a GET changes nothing: the user confirms with a form
    assert confirm.status_code == 200 and "Sign out" in confirm.text
    assert user.http.get(f"{sandbox.url}/ehr/launch").status_code == 200
    done = user.post(url, confirm.text)
    assert done.status_code == 303 and done.headers["location"] == f"{LAUNCH_URL}?bye=1&state=s-1"
    for bad in ({**query, "post_logout_redirect_uri": "https://evil.example/"}, {**query, "client_id": "nobody"},
                {"post_logout_redirect_uri": LAUNCH_URL}):  # fmt: skip
        refused = user.http.get(f"{sandbox.url}/auth/logout?{urlencode(bad)}")
        assert refused.status_code == 400 and "location" not in refused.headers


def test_a_launch_value_serves_one_authorization_request(sandbox: Sandbox) -> None:
    user = User("dr.chen", "chen-demo")
    launch = ehr_launch(sandbox, user, "growth", "walter-nguyen")
    first = Flow(sandbox, scope="launch patient/Patient.rs", extra={"launch": launch})
    page = user.http.get(first.url())
    assert "Allow access?" in page.text
    second = Flow(sandbox, scope="launch patient/Patient.rs", extra={"launch": launch})
    answer = error_from(user.http.get(second.url()))
    assert answer["error"] == ["invalid_request"] and "already used" in answer["error_description"][0]
    allowed = user.post(first.url(), page.text, step="consent", decision="allow", scope=offered(page.text),
                        patient=field_value(page.text, "patient"))  # fmt: skip
    assert first.exchange(code_from(allowed, first.state)).json()["patient"] == "walter-nguyen"
    again = error_from(user.http.get(first.url()))  # the same request once more: the launch is spent
    assert again["error"] == ["invalid_request"] and "already used" in again["error_description"][0]


def test_authorization_responses_name_the_issuer(sandbox: Sandbox) -> None:
    issuer = f"{sandbox.url}/fhir"
    flow = Flow(sandbox)
    success = User("walter", "walter-demo").consent(flow.url())
    assert parse_qs(urlsplit(success.headers["location"]).query)["iss"] == [issuer]
    assert error_from(httpx.get(flow.url(aud="https://elsewhere.test/fhir")))["iss"] == [issuer]
    assert error_from(httpx.get(flow.url(code_challenge_method="plain")))["iss"] == [issuer]
    user = User("walter", "walter-demo")
    page = user.start(flow.url())
    assert error_from(user.post(flow.url(), page.text, step="consent", decision="deny"))["iss"] == [issuer]


@pytest.mark.parametrize(
    "params, expected",
    [
        ([("response_type", "code"), ("response_type", "\x00")], "more than once"),  # was a 500 (fuzz test)
        ([("response_type", "\x00")], "control character"),  # Authlib cannot echo it: was a 500
        ([("response_type", "code"), ("state", "a\nb")], "control character"),
    ],
)
def test_a_repeated_parameter_or_a_control_character_is_a_clear_400(
    sandbox: Sandbox, params: list[tuple[str, str]], expected: str
) -> None:
    answer = httpx.get(f"{sandbox.url}/auth/authorize", params=[*params, ("client_id", "viewer")])
    assert answer.status_code == 400 and expected in unescape(answer.text), answer.text


def test_parallel_guesses_cannot_pass_the_throttle_before_their_failures_are_counted() -> None:
    """A password check takes tens of ms: guesses under way count until they end (5 + N guesses otherwise)."""
    from aperture.ehr.throttle import ACCOUNT_FAILURES, SignInThrottle

    throttle = SignInThrottle(known={"walter"})
    addresses = [f"192.0.2.{n}" for n in range(ACCOUNT_FAILURES + 3)]
    started = [throttle.begin("walter", address) for address in addresses]  # all at once, none ended yet
    assert started[:ACCOUNT_FAILURES] == [0] * ACCOUNT_FAILURES
    assert all(wait > 0 for wait in started[ACCOUNT_FAILURES:]), started
    for address in addresses[:ACCOUNT_FAILURES]:
        throttle.failed("walter", address)
    assert throttle.begin("walter", "198.51.100.1") > 0  # locked now
    fresh = SignInThrottle(known={"walter"})
    assert fresh.begin("walter", "192.0.2.1") == 0
    fresh.succeeded("walter", "192.0.2.1")  # a sign-in that ends well leaves nothing counted
    assert fresh.pending == {} and fresh.begin("walter", "192.0.2.1") == 0
