"""fhirclient (the Python SMART on FHIR client) completes a standalone and an EHR launch, clicked through in chromium.

The last test starts from the developer page (`/sandbox`): register an app, EHR-launch it, remove it.

The app is fhirclient in the test process; the user is Debian's chromium driven by Playwright. The
app's redirect and launch URLs are intercepted in the browser (nothing listens there): the test
hands the callback URL to fhirclient, which exchanges the code and reads the patient.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from fhirclient import client as smart

from tests.browser.launch import allow, app_page, chromium, sign_in
from tests.ehr.conftest import APP, LAUNCH_URL, REDIRECT_URI, Sandbox

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SCOPE = "openid fhirUser patient/Patient.rs patient/ImagingStudy.rs"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with app_page(browser, APP) as page:
        yield page


def test_standalone_launch_parent_picks_child_and_reads_her(sandbox: Sandbox, page: Page) -> None:
    app = smart.FHIRClient(
        settings={"app_id": "growth", "api_base": f"{sandbox.url}/fhir", "redirect_uri": REDIRECT_URI, "scope": SCOPE}
    )
    page.goto(app.authorize_url)
    sign_in(page, "elena", "elena-demo")
    assert page.get_by_role("heading", name="Choose a patient").is_visible()
    page.get_by_label("Maya Alvarez", exact=False).check()
    page.get_by_role("button", name="Continue").click()
    assert page.get_by_role("heading", name="Allow access?").is_visible()
    assert "Maya Alvarez" in page.content()
    with page.expect_request(f"{REDIRECT_URI}**") as callback:
        page.get_by_role("button", name="Allow").click()
    app.handle_callback(callback.value.url)
    assert app.patient_id == "maya-alvarez"
    assert app.launch_context["scope"].split() == ["launch/patient", *SCOPE.split()]
    patient = app.patient
    assert patient is not None and patient.name[0].given == ["Maya"] and patient.name[0].family == "Alvarez"
    assert patient.identifier[0].value == "AGH-100234"
    assert "id_token" in app.launch_context


def test_ehr_launch_clinician_launches_app_for_panel_patient(sandbox: Sandbox, page: Page) -> None:
    page.goto(f"{sandbox.url}/ehr/launch")
    sign_in(page, "dr.chen", "chen-demo")
    assert "Tomas Berg" not in page.content()  # not on Dr. Chen's panel
    page.get_by_label("Walter Minh Nguyen", exact=False).check()
    page.get_by_label("Growth Chart").check()
    with page.expect_request(f"{LAUNCH_URL}**") as launched:
        page.get_by_role("button", name="Launch").click()
    page.wait_for_url(f"{LAUNCH_URL}**")  # the app's launch page has loaded before the app redirects
    launch_url = launched.value.url
    query = parse_qs(urlsplit(launch_url).query)
    assert query["iss"] == [f"{sandbox.url}/fhir"]
    app = smart.FHIRClient(
        settings={
            "app_id": "growth",
            "api_base": query["iss"][0],
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "launch_token": query["launch"][0],
        }  # fmt: skip
    )
    page.goto(app.authorize_url)
    assert page.get_by_role("heading", name="Allow access?").is_visible()  # already signed in: no second sign-in
    with page.expect_request(f"{REDIRECT_URI}**") as callback:
        page.get_by_role("button", name="Allow").click()
    app.handle_callback(callback.value.url)
    assert app.patient_id == "walter-nguyen"
    assert app.patient is not None and app.patient.name[0].family == "Nguyen"


DEVELOPER_SCOPE = "openid fhirUser patient/Patient.rs patient/ImagingStudy.rs"  # fhirclient adds `launch`


def test_register_launch_and_remove_an_app_from_the_page(developer: Sandbox, page: Page) -> None:
    page.goto(f"{developer.url}/sandbox")
    page.get_by_label("Public (browser", exact=False).check()
    page.get_by_label("App name").fill("Browser-registered app")
    page.get_by_label("Redirect URIs", exact=False).fill(REDIRECT_URI)
    page.get_by_label("Launch URL", exact=False).fill(LAUNCH_URL)
    page.get_by_label("Client id", exact=False).fill("browser-app")
    page.get_by_role("button", name="Register app").click()
    assert page.locator("#registered-client-id").inner_text() == "browser-app"
    assert page.locator('tr[data-client-id="browser-app"]').is_visible()

    page.get_by_label("App", exact=True).select_option("browser-app")
    page.locator("#mode-ehr").check()
    page.get_by_label("User (EHR launch", exact=False).select_option("dr.chen")
    page.locator("#launch-button").click()
    assert page.get_by_role("heading", name="Choose a patient to launch for").is_visible()
    assert "Tomas Berg" not in page.content()  # not on Dr. Chen's panel
    assert "dr.chen" in page.locator("#sign-in-as").inner_text()
    page.get_by_label("Walter Minh Nguyen", exact=False).check()
    with page.expect_request(f"{LAUNCH_URL}**") as launched:
        page.get_by_role("button", name="Launch").click()
    page.wait_for_url(f"{LAUNCH_URL}**")  # the app's launch page has loaded before the app redirects
    query = parse_qs(urlsplit(launched.value.url).query)
    assert query["iss"] == [f"{developer.url}/fhir"]
    app = smart.FHIRClient(settings={"app_id": "browser-app", "api_base": query["iss"][0], "redirect_uri": REDIRECT_URI,
                                     "scope": DEVELOPER_SCOPE, "launch_token": query["launch"][0]})  # fmt: skip
    page.goto(app.authorize_url)
    sign_in(page, "dr.chen", "chen-demo")
    allow(page, app, REDIRECT_URI)
    assert app.patient_id == "walter-nguyen"

    page.wait_for_url(f"{REDIRECT_URI}**")  # the app's callback page has loaded: no navigation left in flight
    page.goto(f"{developer.url}/sandbox")
    page.get_by_role("button", name="Remove browser-app", exact=True).click()
    assert page.get_by_role("heading", name="Remove this app?").is_visible()
    page.get_by_role("button", name="Remove app").click()
    assert "1 access token(s)" in page.locator("#removed").inner_text()
    assert page.locator('tr[data-client-id="browser-app"]').count() == 0
