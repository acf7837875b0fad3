"""The demo's sample SMART imaging app, clicked through in chromium against the running demo stack.

Standalone launch from the URL `aperture demo` prints, and EHR launch from the sandbox's launch page:
each time the app does the authorization code flow with PKCE at the EHR sandbox (another origin,
so its token endpoint must answer CORS), lists the patient's studies from the imaging FHIR endpoint
and reads images from DICOMweb with the token.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pydicom
import pytest

from aperture.ehr.people import load_directory
from tests.browser.conftest import PageLog
from tests.ehr.test_browser_launch import sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.stack import DemoStack

READY = 'body[data-state="ready"], body[data-state="error"]'
PREVIEWS_LOADED = (
    "n => { const drawn = [...document.querySelectorAll('canvas.preview')];"
    " return drawn.length === n && drawn.every(c => c.dataset.drawn === 'true' && c.width > 0); }"
)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30000)
    yield page
    context.close()


def printed_app_url(stack: DemoStack) -> str:
    (line,) = [line for line in stack.console.splitlines() if "Sample imaging app:" in line]
    return line.split(":", 1)[1].split()[0]


def listed_studies(page: Page) -> dict[str, list[str]]:
    """Wait until the app has listed the studies; {StudyInstanceUID: the row's cells}."""
    page.wait_for_selector(READY, state="attached")
    assert page.locator("body").get_attribute("data-state") == "ready", page.locator("#error").text_content()
    rows = page.locator("tr[data-study-uid]")
    return {
        str(rows.nth(i).get_attribute("data-study-uid")): rows.nth(i).locator("td").all_text_contents()
        for i in range(rows.count())
    }


def assert_token_kept_private(page: Page, log: PageLog) -> None:
    assert "code=" not in page.url and "state=" not in page.url  # the callback's query left the address bar
    session: dict[str, Any] = page.evaluate("JSON.parse(sessionStorage.getItem('aperture-sample.session'))")
    token = session["token"]
    assert page.evaluate("localStorage.length") == 0
    assert not any(token in line for line in log.console), log.report()


def test_standalone_launch_lists_the_patients_studies_previews_and_downloads(demo_stack: DemoStack, page: Page) -> None:
    log = PageLog()
    log.watch(page)
    page.goto(printed_app_url(demo_stack))
    sign_in(page, "priya", "priya-demo")  # a patient for herself: no patient picker
    assert page.get_by_role("heading", name="Allow access?").is_visible()
    assert "Sample imaging viewer" in page.content()
    page.get_by_role("button", name="Allow").click()
    studies = listed_studies(page)
    expected = demo_stack.patient("priya-raman")["studies"]
    assert sorted(studies) == sorted(expected), log.report()
    assert "Priya" in str(page.locator("#patient").text_content())  # read from the EHR's FHIR server with the token
    assert_token_kept_private(page, log)
    page.wait_for_function(PREVIEWS_LOADED, arg=len(expected))

    uid = expected[0]
    row = page.locator(f'tr[data-study-uid="{uid}"]')
    with page.expect_download() as started:
        row.get_by_role("button", name="Download zip").click()
    download = started.value
    assert download.suggested_filename == f"{uid}.zip"
    with zipfile.ZipFile(download.path()) as archive:
        names = archive.namelist()
        assert names and archive.testzip() is None
        for name in names:
            dataset = pydicom.dcmread(io.BytesIO(archive.read(name)))  # a DICOM file: preamble and DICM prefix
            assert dataset.StudyInstanceUID == uid
    instances = row.locator("td").nth(4).text_content()
    assert str(len(names)) == instances
    assert log.problems(demo_stack.ehr) == [] and log.problems(demo_stack.imaging_fhir) == [], log.report()


def test_ehr_launch_by_a_clinician_lists_the_panel_patients_studies(demo_stack: DemoStack, page: Page) -> None:
    log = PageLog()
    log.watch(page)
    page.goto(f"{demo_stack.ehr}/ehr/launch")
    sign_in(page, "dr.chen", "chen-demo")
    page.get_by_label("Walter Minh Nguyen", exact=False).check()
    page.get_by_label("Sample imaging viewer").check()
    page.get_by_role("button", name="Launch").click()
    # the app's launch page sends the browser back to the EHR: signed in already, only the consent is asked
    page.get_by_role("button", name="Allow").click()
    studies = listed_studies(page)
    assert sorted(studies) == sorted(demo_stack.patient("walter-nguyen")["studies"]), log.report()
    assert "Nguyen" in str(page.locator("#patient").text_content())
    assert_token_kept_private(page, log)


def test_a_parent_acting_for_her_daughter_does_not_see_the_withheld_study(demo_stack: DemoStack, page: Page) -> None:
    """The EHR's policy reaches the app through the imaging server: Elena's proxy access omits Maya's US pelvis."""
    page.goto(printed_app_url(demo_stack))
    sign_in(page, "elena", "elena-demo")
    page.get_by_label("Maya Alvarez", exact=False).check()
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Allow").click()
    maya = load_directory().patients["maya-alvarez"]
    visible = [s.uid for s in maya.studies if "RelatedPerson/elena-for-maya" not in s.withheld_from]
    assert visible and len(visible) < len(maya.studies)
    assert sorted(listed_studies(page)) == sorted(visible)


def test_a_launch_from_another_ehr_is_refused_before_any_sign_in(demo_stack: DemoStack, page: Page) -> None:
    """The app trusts the EHR its imaging server names; an `iss` pointing elsewhere gets no redirect and no token."""
    page.goto(printed_app_url(demo_stack) + "?iss=https://ehr.example.org/fhir&launch=abc")
    page.wait_for_selector('body[data-state="error"]', state="attached")
    message = str(page.get_by_role("alert").text_content())
    assert "https://ehr.example.org/fhir" in message and demo_stack.ehr_fhir in message
    assert page.url.startswith(printed_app_url(demo_stack))


def test_refusals_are_shown_as_readable_messages(demo_stack: DemoStack, page: Page) -> None:
    """403 when the user did not allow imaging, 401 for a token the EHR does not know: said in words, in an alert."""
    page.goto(printed_app_url(demo_stack))
    sign_in(page, "tomas", "tomas-demo")
    page.locator('input[name="scope"][value="patient/ImagingStudy.rs"]').uncheck()  # allow the Patient read only
    page.get_by_role("button", name="Allow").click()
    page.wait_for_selector(READY, state="attached")
    message = str(page.get_by_role("alert").text_content())
    assert message.startswith("Searching the imaging server: access was refused for this sign-in (HTTP 403)."), message
    assert "Tomas" in str(page.locator("#patient").text_content())  # what was allowed still works

    page.evaluate(
        "const s = JSON.parse(sessionStorage.getItem('aperture-sample.session'));"
        "s.token = 'not-' + s.token; sessionStorage.setItem('aperture-sample.session', JSON.stringify(s));"
    )
    page.reload()
    page.wait_for_selector(READY, state="attached")
    message = str(page.get_by_role("alert").text_content())
    assert "(HTTP 401)" in message and "sign in again" in message, message
