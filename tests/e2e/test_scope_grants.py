"""The scopes apps commonly ask for, granted as the sandbox's rules say, and accepted by the imaging server as granted.

Each case is a real launch in chromium (fhirclient as the app) at the demo's EHR, by a public app
registered with the default app scope (`aperture.ehr.clients.DEFAULT_APP_SCOPE`, what the developer
page and `clients add --kind public` register), then the token at the imaging server: the
patient's ImagingStudy search and a WADO-RS metadata read answer 200, another patient's study does
not exist for it. The rules (docs/ehr-sandbox.md, "Which scopes are granted"): what was asked, narrowed to
what is registered; wildcards and v1 words kept as written; a patient is bound whenever a patient/
scope or `launch/patient` is asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from fhirclient import client as smart

from aperture.ehr.clients import DEFAULT_APP_SCOPE
from tests.browser.launch import access_token, allow, app_page, ehr_launch, sign_in
from tests.e2e.conftest import APP, LAUNCH_URL, REDIRECT_URI
from tests.e2e.imaging import bearer, find_studies, studies_of

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from tests.stack import DemoStack

BROAD = "e2e-scopes-default"
NARROW = "e2e-scopes-narrow"
PRIYA = "priya-raman"


@pytest.fixture(scope="module")
def apps(demo_stack: DemoStack) -> None:
    demo_stack.register(kind="public", name="Scope test app", client_id=BROAD, scope=DEFAULT_APP_SCOPE,
                        redirect_uris=(REDIRECT_URI,), launch_url=LAUNCH_URL)  # fmt: skip
    demo_stack.register(kind="public", name="Narrow scope test app", client_id=NARROW,
                        scope="launch/patient patient/ImagingStudy.rs", redirect_uris=(REDIRECT_URI,))  # fmt: skip


def launched(browser: Browser, demo_stack: DemoStack, client_id: str, scope: str) -> smart.FHIRClient:
    """A standalone launch asking exactly `scope` (fhirclient would add `launch/patient` of its own)."""
    app = smart.FHIRClient(settings={"app_id": client_id, "api_base": demo_stack.ehr_fhir,
                                     "redirect_uri": REDIRECT_URI, "scope": scope})  # fmt: skip
    app.wants_patient = False
    assert app.desired_scope == scope
    with app_page(browser, APP) as page:
        page.goto(app.authorize_url)
        sign_in(page, "priya", "priya-demo")
        allow(page, app, REDIRECT_URI)
    return app


def assert_imaging_accepts(demo_stack: DemoStack, token: str, patient: str, other: str = "walter-nguyen") -> None:
    with httpx.Client(timeout=30) as http:
        found = find_studies(http, demo_stack.imaging_fhir, patient, token)
        assert studies_of(patient) <= set(found.studies)  # the seed studies; other e2e tests may store more
        assert {s["subject"]["reference"] for s in found.studies.values()} == {
            f"{demo_stack.ehr_fhir}/Patient/{patient}"
        }
        uid = sorted(found.studies)[0]
        assert http.get(f"{demo_stack.dicomweb}/studies/{uid}/metadata", headers=bearer(token)).status_code == 200
        foreign = sorted(studies_of(other))[0]
        assert http.get(f"{demo_stack.dicomweb}/studies/{foreign}/metadata", headers=bearer(token)).status_code == 404


@pytest.mark.parametrize(
    ("client_id", "asked", "granted"),
    [
        (BROAD, "launch/patient patient/*.rs", "launch/patient patient/*.rs"),
        (BROAD, "launch/patient openid fhirUser patient/*.rs", "launch/patient openid fhirUser patient/*.rs"),
        (BROAD, "launch launch/patient patient/*.rs", "launch launch/patient patient/*.rs"),
        (BROAD, "patient/ImagingStudy.rs", "patient/ImagingStudy.rs"),  # no launch/patient: a patient is bound anyway
        (BROAD, "launch/patient patient/*.read", "launch/patient patient/*.read"),  # v1
        (BROAD, "launch/patient patient/ImagingStudy.read patient/Patient.read",
         "launch/patient patient/ImagingStudy.read patient/Patient.read"),
        (NARROW, "launch/patient patient/*.rs", "launch/patient patient/ImagingStudy.rs"),  # narrowed: the registration
    ],
)  # fmt: skip
def test_the_scope_asked_is_granted_by_the_rules_and_accepted_by_the_imaging_server(
    demo_stack: DemoStack, browser: Browser, apps: None, client_id: str, asked: str, granted: str
) -> None:
    app = launched(browser, demo_stack, client_id, asked)
    answer = app.launch_context
    assert answer is not None
    assert sorted(answer["scope"].split()) == sorted(granted.split())
    assert answer["patient"] == PRIYA
    assert ("id_token" in answer) == ("openid" in granted.split())
    assert_imaging_accepts(demo_stack, access_token(app), PRIYA)


def test_a_token_without_imaging_scopes_is_refused_by_the_imaging_server(
    demo_stack: DemoStack, browser: Browser, apps: None
) -> None:
    app = launched(browser, demo_stack, BROAD, "launch/patient patient/Patient.rs")
    assert app.launch_context is not None and app.launch_context["scope"] == "launch/patient patient/Patient.rs"
    answer = httpx.get(f"{demo_stack.imaging_fhir}/ImagingStudy", params={"patient": PRIYA},
                       headers=bearer(access_token(app)), timeout=30)  # fmt: skip
    assert answer.status_code == 403 and "insufficient_scope" in answer.headers["www-authenticate"], answer.text


def test_a_refreshed_token_is_accepted_like_the_first(demo_stack: DemoStack, browser: Browser, apps: None) -> None:
    app = launched(browser, demo_stack, BROAD, "launch/patient offline_access patient/*.rs")
    assert app.server is not None and app.server.auth is not None and app.server.auth.refresh_token
    first = access_token(app)
    app.reauthorize()
    assert access_token(app) != first
    assert_imaging_accepts(demo_stack, access_token(app), PRIYA)


def test_a_clinicians_user_wildcard_reaches_the_launch_patient_at_the_imaging_server(
    demo_stack: DemoStack, browser: Browser, apps: None
) -> None:
    with app_page(browser, APP) as page:
        app = ehr_launch(page, ehr=demo_stack.ehr, client_id=BROAD, app_name="Scope test app", launch_url=LAUNCH_URL,
                         redirect_uri=REDIRECT_URI, scope="launch user/*.rs", login="dr.chen", password="chen-demo",
                         patient_name="Walter Minh Nguyen")  # fmt: skip
    assert app.launch_context is not None and app.launch_context["scope"] == "launch user/*.rs"
    assert app.launch_context["patient"] == "walter-nguyen"
    assert_imaging_accepts(demo_stack, access_token(app), "walter-nguyen", other="tomas-berg")
