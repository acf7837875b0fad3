"""Tokens that must not open anything: missing, made up, expired, revoked, from another EHR, for
another server, without imaging scopes, and a Backend Services token with no pre-authorization.

Documented answers (docs/authorization.md §Status codes): 401 with `WWW-Authenticate: Bearer
error="invalid_token"` for every token that is not valid here; 403 `insufficient_scope` for a
valid token whose scopes do not cover the route; each with CORS headers, none with anything of
Walter's study. Expiry, audience and issuer need tokens the demo's EHR would never issue to the
demo's imaging server, so a second real sandbox (another issuer, 4-second tokens) and imaging
servers configured against it run for this module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.conftest import ApertureServer
from tests.security.attacks import (
    ORIGIN,
    Target,
    assert_bearer_error,
    attack_every_route,
    refused_on_every_route,
)
from tests.security.conftest import VIEWER
from tests.security.servers import introspecting_client, start_imaging, start_sandbox
from tests.stack import DemoStack

OTHER_IMAGING = "http://imaging.other-ehr.test/fhir"  # the imaging base the second EHR issues tokens for
LIFETIME = 4  # seconds: the second EHR's tokens expire while the test watches
APP_SCOPE = "launch/patient patient/ImagingStudy.rs"


@pytest.fixture(scope="module")
def other_ehr(tmp_path_factory: pytest.TempPathFactory, demo_stack: DemoStack) -> Iterator[dict[str, Any]]:
    """A second EHR sandbox (its own issuer) and three imaging servers that introspect at it:

    - `good`: configured for it (its issuer, the audience its tokens name), answers cached 60 s;
    - `elsewhere`: its issuer, but an audience its tokens do not name;
    - `wrong_issuer`: introspects at it but expects the demo EHR's issuer.
    """
    folder = tmp_path_factory.mktemp("other-ehr")
    sandbox, ehr = start_sandbox(folder, imaging_fhir_base=OTHER_IMAGING, token_lifetime=LIFETIME)
    servers: list[ApertureServer] = [sandbox]
    try:
        ehr.register(kind="public", name="attack app", scope=APP_SCOPE, client_id="app",
                     redirect_uris=("http://127.0.0.1:65500/cb",))  # fmt: skip
        issuer = f"{sandbox.url}/fhir"
        introspect = f"{sandbox.url}/auth/introspect"
        made: dict[str, Any] = {"ehr": ehr, "issuer": issuer}
        for name, settings in {
            "good": {"ehr_issuer": issuer, "audience": OTHER_IMAGING, "cache_seconds": 60},
            "elsewhere": {"ehr_issuer": issuer, "audience": "http://imaging.elsewhere.test/fhir"},
            "wrong_issuer": {"ehr_issuer": demo_stack.ehr_fhir, "audience": OTHER_IMAGING,
                             "introspection_endpoint": introspect},
        }.items():  # fmt: skip
            secret = introspecting_client(ehr, folder, f"imaging-{name}")
            server = start_imaging(folder / name, client_id=f"imaging-{name}", secret_file=secret, **settings)
            servers.append(server)
            made[name] = server
        yield made
    finally:
        for server in servers:
            server.stop()


def other_token(other_ehr: dict[str, Any]) -> str:
    return str(other_ehr["ehr"].token("app", APP_SCOPE, patient="maya-alvarez", user="Patient/maya-alvarez"))


def studies(http: httpx.Client, root: str, token: str) -> httpx.Response:
    return http.get(f"{root}/dicom-web/studies", headers={"Authorization": f"Bearer {token}", "Origin": ORIGIN})


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic bWF5YTptYXlhLWRlbW8="}, {"Authorization": "Bearer"}, {"Authorization": "Bearer a b"}],
    ids=["none", "basic", "empty-bearer", "two-words"],
)
def test_no_usable_authorization_header_is_401_everywhere(
    http: httpx.Client, root: str, walter: Target, headers: dict[str, str]
) -> None:
    refused_on_every_route(http, root, None, walter, status=401, error="invalid_token", deletes=False, headers=headers)


def test_a_made_up_token_is_401_everywhere(http: httpx.Client, root: str, walter: Target) -> None:
    refused_on_every_route(
        http, root, "bm90LWEtcmVhbC10b2tlbg", walter, status=401, error="invalid_token", deletes=False
    )


def test_a_valid_token_in_the_query_string_is_401(
    http: httpx.Client, root: str, walter: Target, maya_token: str
) -> None:
    answer = http.get(f"{root}/dicom-web/studies", params={"access_token": maya_token}, headers={"Origin": ORIGIN})
    assert_bearer_error(answer, 401, "invalid_token", walter)


def test_a_revoked_token_is_401_everywhere_once_the_cache_time_has_passed(
    http: httpx.Client, root: str, demo_stack: DemoStack, walter: Target
) -> None:
    """The demo's imaging server caches answers for `cache_seconds` = 5 (docs/authorization.md): the
    revocation takes effect within that time, so the test waits for it, at most 20 s."""
    token = demo_stack.token(VIEWER, APP_SCOPE, patient="walter-nguyen", user="Patient/walter-nguyen")
    assert studies(http, root, token).status_code == 200  # accepted, and now in the cache
    revoked = http.post(f"{demo_stack.ehr}/auth/revoke", data={"token": token, "client_id": VIEWER})
    assert revoked.status_code == 200, revoked.text
    deadline = time.monotonic() + 20
    while studies(http, root, token).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    refused_on_every_route(http, root, token, walter, status=401, error="invalid_token", deletes=False)


def test_a_token_of_another_ehr_is_401_everywhere(
    http: httpx.Client, root: str, walter: Target, other_ehr: dict[str, Any]
) -> None:
    token = other_token(other_ehr)
    assert studies(http, other_ehr["good"].url, token).status_code == 200  # a good token, at its own EHR's server
    refused_on_every_route(http, root, token, walter, status=401, error="invalid_token", deletes=False)


@pytest.mark.parametrize(
    "server",
    ["elsewhere", "wrong_issuer"],
    ids=["token-for-another-resource-server", "answer-naming-another-issuer"],
)
def test_a_token_not_meant_for_this_server_is_401_everywhere(
    http: httpx.Client, walter: Target, other_ehr: dict[str, Any], server: str
) -> None:
    """`elsewhere` has another audience than the token's `aud`; `wrong_issuer` expects another `iss`."""
    token = other_token(other_ehr)
    assert studies(http, other_ehr["good"].url, token).status_code == 200
    refused_on_every_route(http, other_ehr[server].url, token, walter, status=401, error="invalid_token",
                           deletes=True)  # fmt: skip


def test_an_expired_token_is_401_everywhere_even_while_its_answer_is_cached(
    http: httpx.Client, walter: Target, other_ehr: dict[str, Any]
) -> None:
    """`good` caches accepted answers for 60 s, never past `exp`: a token of 4 seconds is refused once they are over."""
    token = other_token(other_ehr)
    minted = time.time()
    server = other_ehr["good"].url
    assert studies(http, server, token).status_code == 200  # in the cache now, for up to 60 s
    time.sleep(max(0.0, minted + LIFETIME + 1.5 - time.time()))
    refused_on_every_route(http, server, token, walter, status=401, error="invalid_token", deletes=True)


@pytest.mark.parametrize(
    "scope",
    ["launch/patient openid fhirUser", "launch/patient patient/Patient.rs", "patient/Patient.rs user/Patient.rs"],
    ids=["no-resource-scope", "clinical-only", "clinical-patient-and-user"],
)
def test_a_token_without_imaging_scopes_is_403_everywhere(
    http: httpx.Client, root: str, demo_stack: DemoStack, walter: Target, scope: str
) -> None:
    token = demo_stack.token(VIEWER, scope, patient="walter-nguyen", user="Patient/walter-nguyen")
    refused_on_every_route(http, root, token, walter, status=403, error="insufficient_scope", deletes=False)


@pytest.fixture(scope="module")
def backend_client(demo_stack: DemoStack) -> str:
    """A Backend Services client registered with its keys and no pre-authorized patient or study."""
    key = RSAKey.generate_key(2048, parameters={"kid": "attack-1"})
    client_id, _ = demo_stack.register(
        kind="backend", name="attack backend", scope="system/ImagingStudy.rs system/Patient.rs",
        client_id="attack-backend", jwks={"keys": [key.as_dict(private=False)]},
    )  # fmt: skip
    return client_id


def test_a_system_token_without_pre_authorization_reaches_nothing(
    http: httpx.Client, root: str, demo_stack: DemoStack, walter: Target, backend_client: str
) -> None:
    token = demo_stack.token(backend_client, "system/ImagingStudy.rs")
    attack_every_route(http, root, token, walter, reaching_patient=None)
    bearer = {"Authorization": f"Bearer {token}", "Origin": ORIGIN}
    for level in ("studies", "series", "instances"):
        everything = http.get(f"{root}/dicom-web/{level}", headers=bearer)
        assert everything.status_code == 200 and everything.json() == [], everything.text[:300]
        by_mrn = http.get(f"{root}/dicom-web/{level}", params={"PatientID": walter.mrn}, headers=bearer)
        assert by_mrn.status_code == 403, by_mrn.text[:300]


def test_a_system_token_with_clinical_scopes_only_is_403_everywhere(
    http: httpx.Client, root: str, demo_stack: DemoStack, walter: Target, backend_client: str
) -> None:
    token = demo_stack.token(backend_client, "system/Patient.rs")
    refused_on_every_route(http, root, token, walter, status=403, error="insufficient_scope", deletes=False)
