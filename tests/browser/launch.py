"""Real SMART launches through the EHR sandbox's pages: chromium driven by Playwright, fhirclient as the app.

The app is fhirclient in the test process; the user is Debian's chromium. The app's launch and
redirect URLs are intercepted in the browser (nothing listens there): the test hands the callback
URL to fhirclient, which exchanges the code for the token. Shared by tests/ehr (the sandbox alone)
and tests/e2e (the demo stack).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from fhirclient import client as smart

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless. Close it before other tests call `asyncio.run` (see tests/browser/conftest.py)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs the Debian package chromium (as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The Python package playwright is missing: `make install` installs the test extras")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def app_page(browser: Browser, app: str) -> Iterator[Page]:
    """A page in a fresh browser context (no sign-in carried over) whose requests under `app` get a stub page."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)

    def stub(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>app</title><p>app</p>")

    page.route(f"{app}/**", stub)
    try:
        yield page
    finally:
        context.close()


def sign_in(page: Page, login: str, password: str) -> None:
    page.get_by_label("User name").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def allow(page: Page, app: smart.FHIRClient, redirect_uri: str) -> None:
    """Click Allow on the consent page and hand the redirect to the app, which exchanges the code."""
    assert page.get_by_role("heading", name="Allow access?").is_visible()
    with page.expect_request(f"{redirect_uri}**") as callback:
        page.get_by_role("button", name="Allow").click()
    app.handle_callback(callback.value.url)


def standalone_launch(
    page: Page,
    *,
    client_id: str,
    fhir_base: str,
    redirect_uri: str,
    scope: str,
    login: str,
    password: str,
    patient_name: str | None = None,
) -> smart.FHIRClient:
    """A standalone launch: the app sends the user to the EHR, who signs in, picks a patient if asked, and allows."""
    app = smart.FHIRClient(
        settings={"app_id": client_id, "api_base": fhir_base, "redirect_uri": redirect_uri, "scope": scope}
    )
    page.goto(app.authorize_url)
    sign_in(page, login, password)
    if patient_name is not None:
        assert page.get_by_role("heading", name="Choose a patient").is_visible()
        page.get_by_label(patient_name, exact=False).check()
        page.get_by_role("button", name="Continue").click()
    allow(page, app, redirect_uri)
    return app


def ehr_launch(
    page: Page,
    *,
    ehr: str,
    client_id: str,
    app_name: str,
    launch_url: str,
    redirect_uri: str,
    scope: str,
    login: str,
    password: str,
    patient_name: str,
) -> smart.FHIRClient:
    """An EHR launch: the user signs in at the EHR's launch page, opens the app for a patient and allows.

    The app's launch URL gets `iss` and `launch` (SMART App Launch 2.2 §EHR Launch); fhirclient then
    authorizes with that launch token at the `iss`'s authorization endpoint.
    """
    page.goto(f"{ehr}/ehr/launch")
    sign_in(page, login, password)
    page.get_by_label(patient_name, exact=False).check()
    page.get_by_label(app_name).check()
    with page.expect_request(f"{launch_url}**") as launched:
        page.get_by_role("button", name="Launch").click()
    page.wait_for_url(f"{launch_url}**")  # the app's launch page has loaded before the app redirects
    query = parse_qs(urlsplit(launched.value.url).query)
    app = smart.FHIRClient(
        settings={
            "app_id": client_id,
            "api_base": query["iss"][0],
            "redirect_uri": redirect_uri,
            "scope": scope,
            "launch_token": query["launch"][0],
        }  # fmt: skip
    )
    page.goto(app.authorize_url)  # already signed in: no second sign-in
    allow(page, app, redirect_uri)
    return app


def access_token(app: smart.FHIRClient) -> str:
    token = app.server.auth.access_token if app.server is not None and app.server.auth is not None else None
    assert isinstance(token, str) and token, "the launch ended without an access token"
    return token
