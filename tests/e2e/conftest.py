"""End to end against the running demo stack (`demo_stack`: `aperture demo`, EHR sandbox + imaging server).

One demo for the session and one chromium for this package. Each flow registers its own client at
the demo's sandbox, so the audit trail names who did what; every token a flow uses goes through
`E2ERun.bearer`, and every access it expects to be audited through `E2ERun.expect`, which
tests/e2e/test_audit_trail.py (ordered last) checks against `/fhir/AuditEvent`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.browser.launch import app_page, chromium
from tests.e2e.imaging import bearer, token_endpoint
from tests.ehr.conftest import APP, ASSERTION_TYPE, LAUNCH_URL, REDIRECT_URI, client_assertion, public_jwks, register
from tests.stack import DemoStack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# The browser app of these tests: its launch and redirect URLs are intercepted in chromium.
VIEWER = "e2e-viewer"
VIEWER_NAME = "E2E imaging viewer"
VIEWER_SCOPE = (
    "launch launch/patient openid fhirUser patient/Patient.rs patient/ImagingStudy.rs user/Patient.rs "
    "user/ImagingStudy.rs"
)
__all__ = ["APP", "LAUNCH_URL", "REDIRECT_URI", "VIEWER", "VIEWER_NAME"]


@dataclass(frozen=True)
class Access:
    """An access a flow made, as the audit trail must show it (None: any value)."""

    client_id: str  # "" for a request whose token was never verified
    outcome: str  # "permit" or "deny"
    action: str  # AuditEvent.action: R read, E search
    patient: str | None = None  # "Patient/<id>"
    study: str | None = None  # StudyInstanceUID
    status: int | None = None


@dataclass
class E2ERun:
    """What the flows did: their tokens (none may reach the audit trail) and the accesses they expect audited."""

    demo: DemoStack
    tokens: list[str] = field(default_factory=list)
    accesses: list[Access] = field(default_factory=list)
    # when the flows began: the trail is read from here on (other suites share the demo stack)
    started: str = field(
        default_factory=lambda: (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )

    def bearer(self, token: str) -> dict[str, str]:
        self.tokens.append(token)
        return bearer(token)

    def expect(self, access: Access) -> None:
        self.accesses.append(access)


@pytest.fixture(scope="package")
def run(demo_stack: DemoStack) -> E2ERun:
    return E2ERun(demo_stack)


@pytest.fixture(scope="package")
def viewer(demo_stack: DemoStack) -> str:
    """A public SMART app with a launch URL, registered at the demo's sandbox (so the EHR launch page lists it)."""
    client_id, _ = demo_stack.register(
        kind="public", name=VIEWER_NAME, client_id=VIEWER, scope=VIEWER_SCOPE,
        redirect_uris=(REDIRECT_URI,), launch_url=LAUNCH_URL,
    )  # fmt: skip
    return client_id


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One chromium for the package, closed after its last test (Playwright's loop must not outlive it)."""
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with app_page(browser, APP) as page:
        yield page


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


@dataclass
class BackendClient:
    """A SMART Backend Services client registered at the demo's sandbox, with its private key."""

    client_id: str
    key: RSAKey
    token_endpoint: str

    def token(self, scope: str) -> httpx.Response:
        """client_credentials with a private_key_jwt assertion (SMART Backend Services)."""
        return httpx.post(
            self.token_endpoint,
            data={"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
                  "client_assertion": client_assertion(self.key, self.client_id, self.token_endpoint)},
            timeout=30,
        )  # fmt: skip

    def access_token(self, scope: str) -> str:
        answer = self.token(scope)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


def register_backend(demo: DemoStack, client_id: str, scope: str, *preauthorized: str) -> BackendClient:
    """`aperture ehr clients add --kind backend` at the demo's folder, as an admin does; `preauthorized`
    are the `--patients ...` / `--studies ...` arguments."""
    key = RSAKey.generate_key(2048, parameters={"kid": f"{client_id}-1"})
    jwks = demo.data / f"{client_id}.jwks.json"
    jwks.write_text(json.dumps(public_jwks(key)))
    register(demo.data, "--kind", "backend", "--name", client_id, "--client-id", client_id,
             "--scope", scope, "--jwks", str(jwks), *preauthorized)  # fmt: skip
    return BackendClient(client_id, key, token_endpoint(demo.ehr_fhir))


@pytest.fixture(scope="package")
def auditor(demo_stack: DemoStack) -> BackendClient:
    """A backend client that may read the audit trail (system/AuditEvent.rs) and reaches no patient."""
    return register_backend(demo_stack, "e2e-auditor", "system/AuditEvent.rs")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The audit trail test runs after every other e2e test: it checks what they did."""
    here = Path(__file__).parent
    audit = [item for item in items if item.path.name == "test_audit_trail.py" and item.path.parent == here]
    if not audit:
        return
    rest = [item for item in items if item not in audit]
    ours = [i for i, item in enumerate(rest) if item.path.parent == here]
    at = ours[-1] + 1 if ours else len(rest)
    items[:] = rest[:at] + audit + rest[at:]
