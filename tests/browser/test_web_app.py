"""The app at /app/, clicked through in chromium against the demo stack (`aperture demo`, tests/stack.py).

A patient signs in from the URL the demo prints first and sees their studies with the EHR's report;
the preview grid draws the study's pictures; View opens OHIF at /viewer/, which draws the CT with the
token handed over, and a renewed token reaches the open viewer window; Download posts the token in a
form body to /media/ and the browser saves a zip that is valid PDI media; a proxy does not see the
withheld study; a clinician opens the app from the EHR launch page; and an IHE Invoke Image Display
link with no sign-in in the tab goes through the SMART sign-in and lands in OHIF, drawing the study;
Send to… sends the CT to the demo's receiver and says so in the card's live region.
Screenshots at phone and desktop widths go to docs/images/ (docs/view-download-transmit.md).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from aperture.ehr.people import load_directory
from tests.browser.conftest import PageLog
from tests.browser.launch import sign_in
from tests.browser.test_viewer import PICTURE, TOUR
from tests.e2e.imaging import instances_of
from tests.interop.test_transmit_orthanc import data_set
from tests.media.checks import assert_pdi_valid

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.stack import DemoStack

IMAGES = Path(__file__).parents[2] / "docs" / "images"
READY = 'body[data-state="ready"], body[data-state="error"]'
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
WALTER, CT = "walter-nguyen", load_directory().patients["walter-nguyen"].studies[0]
# Each preview picture's size, and whether its pixels vary (an image, not a blank or uniform box).
DRAWN = """() => [...document.querySelectorAll('img[data-drawn="true"]')].map((img) => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let low = 255, high = 0;
    for (let i = 0; i < data.length; i += 4) { low = Math.min(low, data[i]); high = Math.max(high, data[i]); }
    return {width: canvas.width, height: canvas.height, varies: high - low > 20};
})"""


@pytest.fixture(params=["desktop", "phone"])
def screen(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, DESKTOP if request.param == "desktop" else PHONE


def fresh_page(browser: Browser, settings: dict[str, Any]) -> Page:
    page = browser.new_context(**settings).new_page()
    page.set_default_timeout(30000)
    return page


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    made = fresh_page(browser, DESKTOP)
    yield made
    made.context.close()


def app_url(stack: DemoStack) -> str:
    """The URL `aperture demo` prints first."""
    lines = [line for line in stack.console.splitlines() if "http://" in line]
    assert "Open your images:" in lines[0], lines[:3]
    return lines[0].split(":", 1)[1].split()[0]


def listed(page: Page) -> dict[str, str]:
    """Wait for the study list; {StudyInstanceUID: the card's text}."""
    page.wait_for_selector(READY, state="attached")
    assert page.locator("body").get_attribute("data-state") == "ready", page.locator("#error").text_content()
    cards = page.locator("article[data-study-uid]")
    return {str(cards.nth(i).get_attribute("data-study-uid")): cards.nth(i).inner_text() for i in range(cards.count())}


def sign_in_at_app(page: Page, stack: DemoStack, login: str, password: str, patient: str | None = None) -> None:
    page.goto(app_url(stack))
    page.get_by_role("link", name="Sign in at the EHR").click()
    sign_in(page, login, password)
    if patient is not None:
        page.get_by_label(patient, exact=False).check()
        page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Allow").click()


def test_a_patient_sees_studies_with_reports_and_the_preview_grid(
    demo_stack: DemoStack, browser: Browser, screen: tuple[str, dict[str, Any]]
) -> None:
    width, settings = screen
    page = fresh_page(browser, settings)
    log = PageLog()
    log.watch(page)
    try:
        sign_in_at_app(page, demo_stack, "walter", "walter-demo")
        studies = listed(page)
        assert sorted(studies) == sorted(demo_stack.patient(WALTER)["studies"]), log.report()
        card = page.locator(f'article[data-study-uid="{CT.uid}"]')
        assert CT.description in studies[CT.uid] and "CT" in studies[CT.uid] and CT.date in studies[CT.uid]
        assert "Nguyen" in str(page.locator("#patient").text_content())
        report = card.locator("details.report")
        report.locator("summary").click()
        assert "synthetic sandbox report" in report.inner_text()  # the EHR's DiagnosticReport conclusion
        assert "code=" not in page.url and page.evaluate("localStorage.length") == 0
        for landmark in ("banner", "navigation", "main"):  # what a screen reader jumps between
            assert page.get_by_role(landmark).count() == 1, landmark
        unnamed = page.evaluate("[...document.querySelectorAll('button')].filter(b => !b.textContent.trim()).length")
        assert unnamed == 0
        page.screenshot(path=IMAGES / f"app-studies-{width}.png", full_page=True)

        instances = int(card.locator("dd").nth(3).inner_text())
        card.get_by_role("button", name=f"Preview: {CT.description}").click()
        assert card.get_by_role("button", name=f"Preview: {CT.description}").get_attribute("aria-expanded") == "true"
        page.wait_for_function("() => document.querySelectorAll('img[data-drawn=\"true\"]').length >= 6")
        drawn = page.evaluate(DRAWN)
        assert drawn and all(p["varies"] and p["width"] > 0 for p in drawn), drawn
        assert card.locator(".tile").count() == instances  # the whole study, one tile per image
        tile_px = card.locator(".tile").first.bounding_box()
        assert tile_px is not None and drawn[0]["width"] <= 2 * tile_px["width"] * settings.get(
            "device_scale_factor", 1
        )
        page.screenshot(path=IMAGES / f"app-preview-{width}.png")
        card.locator(".tile").first.click()  # large, rendered for the screen
        page.wait_for_selector('#enlarged img[data-drawn="true"]')
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "() => document.querySelector('#enlarged figcaption').textContent.includes('image 2 of')"
        )
        page.keyboard.press("Escape")
        assert page.evaluate("document.activeElement.classList.contains('tile')")  # focus back where it was
        assert log.problems(demo_stack.dicomweb) == [], log.report()
    finally:
        page.context.close()


def test_view_opens_ohif_on_the_study_with_every_renewed_token_and_download_saves_pdi_media(
    demo_stack: DemoStack, page: Page, tmp_path: Path
) -> None:
    sign_in_at_app(page, demo_stack, "walter", "walter-demo")
    listed(page)
    card = page.locator(f'article[data-study-uid="{CT.uid}"]')
    with page.expect_popup() as opened:
        card.get_by_role("button", name=f"View: {CT.description}", exact=True).click()
    viewer = opened.value
    target = urlsplit(viewer.url)
    assert target.path == "/viewer/viewer" and parse_qs(target.query) == {"StudyInstanceUIDs": [CT.uid]}
    assert "token" not in target.query.lower()
    handed = viewer.evaluate("JSON.parse(sessionStorage.getItem('aperture.viewer.token'))")
    session = page.evaluate("JSON.parse(sessionStorage.getItem('aperture-app.session'))")
    assert handed == {"accessToken": session["token"], "expiresAt": session["expiresAt"]}
    try:  # OHIF at /viewer/ draws the CT with the token it was handed
        viewer.wait_for_function(PICTURE, timeout=90_000, polling=250)
    finally:
        viewer.screenshot(path=IMAGES / "viewer-ct-desktop.png")
    assert not viewer.locator(TOUR).count(), "OHIF's onboarding tour covers the viewer"
    viewer.evaluate("window.heard = []; addEventListener('message', (e) => heard.push(e.data))")

    page.evaluate("window.apertureRenew()")  # what the timer does a minute before expiry: the refresh_token grant
    page.wait_for_selector('body[data-renewed="1"]', state="attached")
    renewed = page.evaluate("JSON.parse(sessionStorage.getItem('aperture-app.session'))")
    assert renewed["token"] != session["token"] and renewed["refreshToken"] != session["refreshToken"]
    viewer.wait_for_function("() => window.heard.length === 1")
    heard = viewer.evaluate("window.heard[0]")
    assert heard == {
        "type": "aperture.viewer.token",
        "accessToken": renewed["token"],
        "expiresAt": renewed["expiresAt"],
    }
    listed(page)  # the page still works with the new token

    # Download: the token travels in the body of a form post (RFC 6750 §2.2), never in the URL, and the
    # browser saves a zip that is PDI media of the study
    with page.expect_download(timeout=120_000) as saved, page.expect_request(f"**/media/studies/{CT.uid}") as posted:
        card.get_by_role("button", name=f"Download: {CT.description}").click()
    request = posted.value
    assert request.method == "POST" and "token" not in request.url
    assert parse_qs(request.post_data or "") == {"access_token": [renewed["token"]]}
    archive = tmp_path / "download.zip"
    saved.value.save_as(archive)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path / "media")
    on_media = assert_pdi_valid(tmp_path / "media")  # dciodvfy, dcmtk and pydicom accept its DICOMDIR
    assert set(on_media) == {i.sop for i in instances_of(CT.uid)}, "the zip holds other instances than the study"


def test_a_proxy_does_not_see_the_withheld_study(demo_stack: DemoStack, page: Page) -> None:
    sign_in_at_app(page, demo_stack, "elena", "elena-demo", patient="Maya Alvarez")
    maya = load_directory().patients["maya-alvarez"]
    visible = [s.uid for s in maya.studies if "RelatedPerson/elena-for-maya" not in s.withheld_from]
    assert visible and len(visible) < len(maya.studies)
    assert sorted(listed(page)) == sorted(visible)


def test_a_clinician_opens_the_app_from_the_ehr_launch_page(demo_stack: DemoStack, page: Page) -> None:
    page.goto(f"{demo_stack.ehr}/ehr/launch")
    sign_in(page, "dr.chen", "chen-demo")
    page.get_by_label("Walter Minh Nguyen", exact=False).check()
    page.get_by_label("Your images", exact=False).check()
    page.get_by_role("button", name="Launch").click()
    page.get_by_role("button", name="Allow").click()
    assert sorted(listed(page)) == sorted(demo_stack.patient(WALTER)["studies"])


def test_an_iid_link_signs_in_then_opens_the_viewer_on_the_study(demo_stack: DemoStack, page: Page) -> None:
    imaging = demo_stack.imaging_fhir.removesuffix("/fhir")
    page.goto(f"{imaging}/IHEInvokeImageDisplay?requestType=STUDY&studyUID={CT.uid}&viewerType=IHE_BIR")
    sign_in(page, "walter", "walter-demo")  # no sign-in in this tab: the SMART flow first
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{imaging}/viewer/viewer?**")
    assert parse_qs(urlsplit(page.url).query) == {"StudyInstanceUIDs": [CT.uid]}
    assert page.evaluate("JSON.parse(sessionStorage.getItem('aperture.viewer.token')).accessToken")
    page.wait_for_function(PICTURE, timeout=90_000, polling=250)  # and OHIF draws it

    # signed in now: a patient request by MRN and issuer goes straight on; another patient's study shows nothing
    patient = demo_stack.patient(WALTER)
    page.goto(
        f"{imaging}/IHEInvokeImageDisplay?requestType=PATIENT&patientID={patient['mrn']['value']}%5E%5E%5EAPERTURE-GH"
    )
    page.wait_for_url(f"{imaging}/viewer/viewer?**")
    assert parse_qs(urlsplit(page.url).query)["StudyInstanceUIDs"] == [",".join(patient["studies"])]
    other = demo_stack.patient("priya-raman")["studies"][0]
    page.goto(f"{imaging}/IHEInvokeImageDisplay?requestType=STUDY&studyUID={other}")
    page.wait_for_selector('body[data-state="none"]', state="attached")
    assert "None of the studies asked for" in str(page.get_by_role("status").text_content())

    refused = page.goto(f"{imaging}/IHEInvokeImageDisplay?requestType=STUDY&studyUID={CT.uid}&keyImagesOnly=true")
    assert refused is not None and refused.status == 400
    assert "keyImagesOnly=true is not available here" in str(page.get_by_role("alert").text_content())


def test_a_launch_from_another_ehr_is_refused_before_any_sign_in(demo_stack: DemoStack, page: Page) -> None:
    launch = app_url(demo_stack) + "launch.html"
    page.goto(launch + "?iss=https://ehr.example.org/fhir&launch=abc")
    page.wait_for_selector('body[data-state="error"]', state="attached")
    message = str(page.get_by_role("alert").text_content())
    assert "https://ehr.example.org/fhir" in message and demo_stack.ehr_fhir in message
    assert page.url.startswith(launch)  # no redirect: nothing went to the other server


def test_send_to_transmits_the_study_and_the_live_region_says_so(demo_stack: DemoStack, page: Page) -> None:
    """Send to… with the keyboard: the demo's one destination (its C-STORE receiver) gets every instance of the
    CT, each data set byte for byte, and the polite live region of the card says how many."""
    destination, received = (
        demo_stack.manifest["transmit"]["destination"],
        Path(demo_stack.manifest["transmit"]["received"]),
    )
    sign_in_at_app(page, demo_stack, "walter", "walter-demo")
    listed(page)
    card = page.locator(f'article[data-study-uid="{CT.uid}"]')
    choice = card.get_by_label("Send to…")
    assert choice.locator("option").all_inner_texts() == [destination]
    choice.focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == f"Send: {CT.description}"
    page.keyboard.press("Enter")
    result = card.get_by_role("status")
    assert result.get_attribute("aria-live") == "polite"
    page.wait_for_selector(f'[id="sent-{CT.uid}"]:is([data-state="sent"], [data-state="partly"], [data-state="error"])')
    expected = instances_of(CT.uid)
    assert result.inner_text() == f"Sent {len(expected)} of {len(expected)} instances to {destination}."
    for instance in expected:  # the receiver wrote its own file meta; the data set is the stored one
        assert data_set((received / f"{instance.sop}.dcm").read_bytes()) == data_set(instance.data), instance.sop
