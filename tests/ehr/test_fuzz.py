"""The EHR sandbox under malformed, huge and non-ASCII input: its FHIR server and its OAuth endpoints.

The same approach as tests/server/test_fuzz.py, against a real `aperture ehr serve`: every FHIR
search parameter of every resource type and every OAuth endpoint's fields get the values that
break parsers, first as a full table, then in random combinations drawn by Hypothesis from a fixed
seed. Every answer must be below 500 and, when it refuses, say why in the format its client
expects (an OperationOutcome for FHIR, RFC 6749's `error` for OAuth); afterwards the sandbox's
peak memory is under the documented bound and its records and registrations are what they were.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.ehr.config import EhrConfig
from aperture.ehr.fhir.params import PARAMS
from aperture.ehr.mint import mint_token
from aperture.ehr.store import open_store
from tests.conftest import ApertureServer
from tests.ehr.conftest import IMAGING_FHIR_BASE, Sandbox, ehr, register, start_sandbox
from tests.fuzzing import NASTY, examples, worker_peaks

# The documented bound on the sandbox's peak memory (docs/security.md, "Memory").
MAX_SANDBOX_RSS = 512 * 1024 * 1024

TYPES = [*PARAMS, "Goal", "Endpoint", "Foo", "", "metadata"]  # ".." would be resolved by the client
COMMON = ["_count", "_offset", "_id", "_lastUpdated", "_include", "_revinclude", "_sort", "_elements", "_summary",
          "_format", "_total", "_has", "_type", "", "unknown"]  # fmt: skip
MODIFIERS = ["", ":exact", ":contains", ":missing", ":not", ":text", ":above", ":below", ":in", ":Patient", ":"]
OAUTH_FIELDS = [
    "grant_type", "code", "redirect_uri", "client_id", "client_secret", "code_verifier", "refresh_token", "scope",
    "client_assertion", "client_assertion_type", "token", "token_type_hint", "aud", "launch", "state",
    "response_type", "code_challenge", "code_challenge_method", "audience",
]  # fmt: skip
GRANTS = ["authorization_code", "refresh_token", "client_credentials", "password", "implicit", ""]


# Answers checked per server port: the closing test asserts the fuzzing before it really ran.
CHECKED: Counter[int] = Counter()


def fhir_fault(response: httpx.Response) -> str | None:
    """Below 500, and a FHIR refusal is an OperationOutcome whose diagnostics say what to change."""
    CHECKED[response.request.url.port or 0] += 1
    url = str(response.request.url)
    url = url if len(url) < 240 else f"{url[:200]}...({len(url)} characters)"
    where = f"{response.request.method} {url} -> {response.status_code}: {response.text[:200]!r}"
    if response.status_code >= 500:
        return where
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            return "not JSON: " + where
        issue = (body.get("issue") or [{}])[0] if body.get("resourceType") == "OperationOutcome" else {}
        if len(str(issue.get("diagnostics", ""))) < 10:
            return "no OperationOutcome with diagnostics: " + where
    return None


def oauth_fault(response: httpx.Response) -> str | None:
    """Below 500; a JSON refusal names an RFC 6749 error, a page refusal says something a person can read."""
    CHECKED[response.request.url.port or 0] += 1
    where = f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:200]!r}"
    if response.status_code >= 500:
        return where
    if response.status_code >= 400:
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            if not isinstance(body.get("error"), str) or not body["error"]:
                return "no RFC 6749 error code: " + where
        elif len(response.text) < 20:
            return "no explanation: " + where
    return None


@pytest.fixture(scope="module")
def fuzz_sandbox(sandbox: Sandbox) -> Sandbox:
    register(sandbox.server.data, "--kind", "public", "--name", "Fuzz app", "--client-id", "fuzz-app",
             "--scope", "launch/patient openid fhirUser patient/*.* user/*.*",
             "--redirect-uri", "https://fuzz.test/cb")  # fmt: skip
    return sandbox


@pytest.fixture(scope="module")
def token(fuzz_sandbox: Sandbox) -> str:
    """A user token for Dr. Chen: searches reach every parameter's parser, across her panel."""
    config = EhrConfig(
        port=fuzz_sandbox.server.port, data=fuzz_sandbox.server.data, imaging_fhir_base=IMAGING_FHIR_BASE
    )
    engine = open_store(config.data)
    try:
        minted = mint_token(engine, config, client_id="fuzz-app", scope="user/*.rs", user="Practitioner/dr-chen")
    finally:
        engine.dispose()
    return str(minted["access_token"])


def records(sandbox: Sandbox, token: str) -> dict[str, object]:
    """Every resource the token can see, and the registered clients: what fuzzing must leave as it was."""
    seen: dict[str, object] = {}
    for resource_type in PARAMS:
        response = httpx.get(f"{sandbox.url}/fhir/{resource_type}", params={"_count": "1000"},
                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert response.status_code == 200, response.text
        seen[resource_type] = sorted(json.dumps(entry["resource"], sort_keys=True)
                                     for entry in response.json().get("entry", []))  # fmt: skip
    seen["clients"] = ehr("clients", "list", "--data", str(sandbox.server.data)).stdout
    return seen


@pytest.fixture(scope="module")
def before(fuzz_sandbox: Sandbox, token: str) -> dict[str, object]:
    return records(fuzz_sandbox, token)


@pytest.mark.parametrize("resource_type", list(PARAMS))
def test_every_search_parameter_with_every_nasty_value(
    fuzz_sandbox: Sandbox, token: str, before: dict[str, object], resource_type: str
) -> None:
    names = [p.name for p in PARAMS[resource_type]] + COMMON
    problems = []
    with httpx.Client(base_url=f"{fuzz_sandbox.url}/fhir", headers={"Authorization": f"Bearer {token}"}) as http:
        for name in names:
            for modifier in ("", ":exact", ":missing"):
                for value in NASTY:
                    problems.append(fhir_fault(http.get(f"/{resource_type}", params=[(name + modifier, value)])))
        for value in NASTY:
            problems.append(fhir_fault(http.get(f"/{resource_type}/{quote(value, safe='')}")))
    found = [problem for problem in problems if problem]
    assert not found, f"{len(found)} faults:\n" + "\n".join(found[:40])


fuzz_text = st.one_of(st.sampled_from(NASTY), st.text(max_size=40), st.integers(-(2**70), 2**70).map(str))


@settings(max_examples=examples(300))
@given(
    resource_type=st.sampled_from(TYPES),
    params=st.lists(
        st.tuples(
            st.builds(
                lambda name, modifier: name + modifier,
                st.one_of(
                    st.sampled_from([p.name for ps in PARAMS.values() for p in ps] + COMMON), st.text(max_size=10)
                ),
                st.sampled_from(MODIFIERS),
            ),
            fuzz_text,
        ),
        max_size=4,
    ),  # fmt: skip
    post=st.booleans(),
)
def test_fhir_search_never_answers_5xx(
    fuzz_sandbox: Sandbox,
    token: str,
    before: dict[str, object],
    resource_type: str,
    params: list[tuple[str, str]],
    post: bool,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{fuzz_sandbox.url}/fhir/{quote(resource_type, safe='')}"
    if post:
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        response = httpx.post(f"{base}/_search", content=urlencode(params), headers={**headers, **form})
    else:
        response = httpx.get(base, params=params, headers=headers)
    problem = fhir_fault(response)
    assert problem is None, problem


@settings(max_examples=examples(300))
@given(
    endpoint=st.sampled_from(["/auth/token", "/auth/introspect", "/auth/revoke"]),
    fields=st.lists(st.tuples(st.sampled_from(OAUTH_FIELDS), fuzz_text), max_size=6),
    grant=st.sampled_from(GRANTS),
    as_query=st.booleans(),
    auth=st.sampled_from([None, ("imaging", None), ("viewer", ""), ("nobody", "x"), ("é", "ü")]),
)
def test_oauth_endpoints_never_answer_5xx(
    fuzz_sandbox: Sandbox,
    before: dict[str, object],
    endpoint: str,
    fields: list[tuple[str, str]],
    grant: str,
    as_query: bool,
    auth: tuple[str, str | None] | None,
) -> None:
    form = [("grant_type", grant), *fields] if endpoint == "/auth/token" else fields
    credentials = None
    if auth is not None:
        client_id, secret = auth
        credentials = (client_id, fuzz_sandbox.secrets.get(client_id, "") if secret is None else secret)
    url = fuzz_sandbox.url + endpoint
    if as_query:
        response = httpx.post(url, params=form, auth=credentials)  # type: ignore[arg-type]
    else:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        response = httpx.post(url, content=urlencode(form), headers=headers, auth=credentials)  # type: ignore[arg-type]
    problem = oauth_fault(response)
    assert problem is None, problem


@settings(max_examples=examples(300))
@given(
    fields=st.lists(st.tuples(st.sampled_from(OAUTH_FIELDS), fuzz_text), max_size=8),
    client=st.sampled_from(["viewer", "growth", "portal", "fuzz-app", "nobody", ""]),
    path=st.sampled_from(
        [
            "/auth/authorize",
            "/ehr/launch",
            "/auth/logout",
            "/fhir/.well-known/smart-configuration",
            "/.well-known/jwks.json",
            "/healthz",
            "/fhir/metadata",
            "/nowhere",
        ]
    ),  # fmt: skip
)
def test_pages_and_discovery_never_answer_5xx(
    fuzz_sandbox: Sandbox, before: dict[str, object], fields: list[tuple[str, str]], client: str, path: str
) -> None:
    params = [("response_type", "code"), ("client_id", client), *fields]
    response = httpx.get(fuzz_sandbox.url + path, params=params)
    problem = oauth_fault(response)
    assert problem is None, problem
    if path == "/auth/logout":  # the sign-out form posted without its anti-forgery value, or with junk
        problem = oauth_fault(httpx.post(fuzz_sandbox.url + path, data=dict(fields)))
        assert problem is None, problem


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), fuzz_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
METADATA = ["client_name", "redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method",
            "scope", "jwks", "jwks_uri", "launch_url", "client_uri", "logo_uri", "contacts", "software_id"]  # fmt: skip


@pytest.fixture(scope="module")
def registering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApertureServer]:
    """A sandbox with RFC 7591 registration open, as anyone who can reach it may use it."""
    data = tmp_path_factory.mktemp("fuzz-registration") / "data"
    server = start_sandbox(data, config="[ehr]\ndynamic_registration = true\n")
    yield server
    server.stop()


@settings(max_examples=examples(300))
@given(
    body=st.one_of(
        st.dictionaries(st.sampled_from(METADATA), json_values, max_size=6),
        json_values,
        st.binary(max_size=300),
    ),
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""]),
)
def test_dynamic_registration_never_answers_5xx(registering: ApertureServer, body: object, content_type: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{registering.url}/register", content=content, headers={"Content-Type": content_type})
    problem = oauth_fault(response)
    assert problem is None, problem
    peaks = worker_peaks(registering)
    assert max(peaks.values()) < MAX_SANDBOX_RSS


def test_after_fuzzing_memory_is_bounded_and_records_unchanged(
    fuzz_sandbox: Sandbox, token: str, before: dict[str, object]
) -> None:
    assert CHECKED[fuzz_sandbox.server.port] > 10_000, "run the whole module: this checks what the fuzzing left"
    assert records(fuzz_sandbox, token) == before
    peaks = worker_peaks(fuzz_sandbox.server)
    assert peaks, "no sandbox process found"
    assert max(peaks.values()) < MAX_SANDBOX_RSS, {pid: f"{peak / 2**20:.0f} MiB" for pid, peak in peaks.items()}
