"""An app developer's SMART app on its own origin, against the demo, changed in nothing but its config.

The sample app's files (`aperture/clients/sample_app/`) are served here by a thread of the test on
a port of its own, with a `config.json` naming the demo's EHR and a client id registered for that
origin: the situation of a published browser-only app pointed at `aperture demo`. Every call the
app makes (discovery, token, the EHR's FHIR, the imaging server's FHIR and DICOMweb) is then a
cross-origin `fetch()`, most with a preflight, so each works only if the server answers CORS for
that origin, on errors too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.browser.conftest import PageLog, StaticHandler, StaticServer, StaticSite
from tests.ehr.test_browser_launch import sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.stack import DemoStack

APP_FILES = str(files("aperture") / "clients" / "sample_app")
CLINICAL = ("AllergyIntolerance", "Condition", "MedicationRequest")
READY = 'body[data-state="ready"], body[data-state="error"]'
# What chromium writes to the console when CORS stops a fetch ("... has been blocked by CORS policy: ...").
CORS_WORDS = ("cors", "access-control-allow-origin", "preflight")


class AppOrigin(StaticSite):
    """The sample app at the root of http://127.0.0.1:<its own port>, with the config.json this test writes."""

    def configure(self, issuer: str, client_id: str) -> None:
        self.httpd.generated = json.dumps({"issuer": issuer, "clientId": client_id})


@pytest.fixture
def app_origin() -> Iterator[AppOrigin]:
    app = AppOrigin(StaticServer(("127.0.0.1", 0), partial(StaticHandler, directory=APP_FILES)))
    yield app
    app.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30000)
    yield page
    context.close()


def register_with_the_cli(stack: DemoStack, app: AppOrigin, client_id: str) -> None:
    """`aperture ehr clients add`, as the developer would type it, on the demo's folder (the default app scope)."""
    command = [sys.executable, "-m", "aperture", "ehr", "clients", "add", "--data", str(stack.data),
               "--kind", "public", "--name", "Cross-origin test app", "--client-id", client_id,
               "--redirect-uri", f"{app.origin}/", "--launch-url", f"{app.origin}/launch.html"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def cors_complaints(log: PageLog) -> list[str]:
    return [line for line in log.console if any(word in line.lower() for word in CORS_WORDS)]


def drawn_previews(page: Page) -> list[dict[str, Any]]:
    """Each preview canvas's size and whether its pixels vary (a drawn image, not a blank or uniform box)."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => [...document.querySelectorAll('canvas.preview')].map((canvas) => {
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let low = 255, high = 0;
            for (let i = 0; i < data.length; i += 4) { low = Math.min(low, data[i]); high = Math.max(high, data[i]); }
            return { width: canvas.width, height: canvas.height, varies: high > low, drawn: canvas.dataset.drawn };
        })"""
    )


def assert_the_app_ran_cross_origin(stack: DemoStack, page: Page, log: PageLog, app: AppOrigin, patient: str) -> None:
    """Discovery to drawn image: studies listed, every preview drawn, clinical searches 200, no CORS complaint."""
    page.wait_for_selector(READY, state="attached")
    assert page.locator("body").get_attribute("data-state") == "ready", log.report()
    rows = page.locator("tr[data-study-uid]")
    listed = sorted(str(rows.nth(i).get_attribute("data-study-uid")) for i in range(rows.count()))
    assert listed == sorted(stack.patient(patient)["studies"]), log.report()
    page.wait_for_function("n => document.querySelectorAll('canvas.preview[data-drawn]').length === n", arg=len(listed))
    previews = drawn_previews(page)
    assert len(previews) == len(listed)
    assert all(p["width"] > 0 and p["height"] > 0 and p["varies"] for p in previews), previews

    for resource_type in CLINICAL:
        section = page.locator(f'#clinical section[data-type="{resource_type}"]')
        assert section.get_attribute("data-state") == "ready", section.text_content()
        answers = [status for status, url in log.answers if url.startswith(f"{stack.ehr_fhir}/{resource_type}?")]
        assert answers == [200], (resource_type, log.report())
    assert any(url == f"{stack.ehr_fhir}/.well-known/smart-configuration" for _, url in log.answers)
    assert page.url.startswith(app.origin)  # the app, not a page of the EHR or the imaging server, drew it all
    imaging_origin = stack.dicomweb.split("/dicom-web")[0]
    assert log.problems(stack.ehr) == [] and log.problems(imaging_origin) == [], log.report()
    assert log.failed == [] and cors_complaints(log) == [], log.report()


def signed_in_from_the_cli_registration(
    stack: DemoStack, page: Page, app: AppOrigin, client_id: str, login: str, password: str
) -> PageLog:
    """Register with the CLI, configure the app, open it and sign in: the consent screen is next."""
    register_with_the_cli(stack, app, client_id)
    app.configure(stack.ehr_fhir, client_id)
    log = PageLog()
    log.watch(page)
    page.goto(f"{app.origin}/launch.html")
    sign_in(page, login, password)
    return log


def test_a_standalone_launch_from_another_origin_goes_from_discovery_to_a_drawn_image(
    demo_stack: DemoStack, page: Page, app_origin: AppOrigin
) -> None:
    log = signed_in_from_the_cli_registration(demo_stack, page, app_origin, "cross-origin-cli", "priya", "priya-demo")
    page.get_by_role("button", name="Allow").click()
    assert_the_app_ran_cross_origin(demo_stack, page, log, app_origin, "priya-raman")
    assert "Priya" in str(page.locator("#patient").text_content())


def test_refusals_reach_an_app_on_another_origin_as_readable_answers(
    demo_stack: DemoStack, page: Page, app_origin: AppOrigin
) -> None:
    """A 403 from the EHR's FHIR and from the imaging server carries CORS too: the app reads it, not a network error."""
    log = signed_in_from_the_cli_registration(demo_stack, page, app_origin, "cross-origin-403", "tomas", "tomas-demo")
    page.locator('input[name="scope"][value="patient/Condition.rs"]').uncheck()
    page.locator('input[name="scope"][value="patient/ImagingStudy.rs"]').uncheck()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_selector(READY, state="attached")
    message = str(page.get_by_role("alert").text_content())
    assert message.startswith("Searching the imaging server: access was refused for this sign-in (HTTP 403)."), message
    condition = page.locator('#clinical section[data-type="Condition"]')
    assert condition.get_attribute("data-state") == "error"
    assert "(HTTP 403)" in str(condition.text_content())
    allergies = page.locator('#clinical section[data-type="AllergyIntolerance"]')
    assert allergies.get_attribute("data-state") == "ready"  # what was allowed still works
    assert cors_complaints(log) == [] and log.failed == [], log.report()


def register_on_the_page(page: Page, stack: DemoStack, app: AppOrigin, name: str) -> str:
    """The developer page's register form, as printed by the demo; the client id the sandbox chose."""
    page.goto(stack.manifest["ehr"]["developer_page"])
    page.get_by_label("Public (browser", exact=False).check()
    page.get_by_label("App name").fill(name)
    page.get_by_label("Redirect URIs", exact=False).fill(f"{app.origin}/")
    page.get_by_label("Launch URL", exact=False).fill(f"{app.origin}/launch.html")
    page.get_by_role("button", name="Register app").click()  # the scope field keeps its prefilled default
    client_id = page.locator("#registered-client-id").inner_text()
    assert client_id and page.locator(f'tr[data-client-id="{client_id}"]').is_visible()
    return client_id


def test_registered_and_launched_from_the_developer_page_without_the_cli(
    demo_stack: DemoStack, page: Page, app_origin: AppOrigin
) -> None:
    """Register on the page, start a standalone launch there, and the app on its own origin draws Priya's studies."""
    client_id = register_on_the_page(page, demo_stack, app_origin, "Page-registered app")
    app_origin.configure(demo_stack.ehr_fhir, client_id)
    log = PageLog()
    log.watch(page)
    page.get_by_label("App", exact=True).select_option(client_id)
    page.locator("#mode-standalone").check()
    with page.expect_request(f"{app_origin.origin}/launch.html?**") as launched:
        page.locator("#launch-button").click()
    assert launched.value.url == f"{app_origin.origin}/launch.html?" + urlencode({"iss": demo_stack.ehr_fhir})
    sign_in(page, "priya", "priya-demo")
    page.get_by_role("button", name="Allow").click()
    assert_the_app_ran_cross_origin(demo_stack, page, log, app_origin, "priya-raman")


def test_an_ehr_launch_from_the_developer_page_opens_the_chosen_patient(
    demo_stack: DemoStack, page: Page, app_origin: AppOrigin
) -> None:
    """The page's EHR launch for dr.chen and Walter: the app on its own origin gets Walter, bound by `launch`."""
    client_id = register_on_the_page(page, demo_stack, app_origin, "Page-launched app")
    app_origin.configure(demo_stack.ehr_fhir, client_id)
    page.get_by_label("App", exact=True).select_option(client_id)
    page.locator("#mode-ehr").check()
    page.get_by_label("User (EHR launch", exact=False).select_option("dr.chen")
    page.locator("#launch-button").click()
    page.get_by_label("Walter Minh Nguyen", exact=False).check()
    log = PageLog()
    log.watch(page)
    with page.expect_request(f"{app_origin.origin}/launch.html?**") as launched:
        page.get_by_role("button", name="Launch").click()
    query = parse_qs(urlsplit(launched.value.url).query)
    assert query["iss"] == [demo_stack.ehr_fhir] and query["launch"]
    sign_in(page, "dr.chen", "chen-demo")
    page.get_by_role("button", name="Allow").click()
    assert_the_app_ran_cross_origin(demo_stack, page, log, app_origin, "walter-nguyen")
    assert "Nguyen" in str(page.locator("#patient").text_content())
