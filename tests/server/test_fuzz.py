"""The imaging server under malformed, huge and non-ASCII input: every route, every parameter.

Hypothesis drives each DICOMweb route's path and query with values a careless client or an
attacker would send, against a real `aperture serve` holding a few stored instances (one of them
multi-frame). Every answer must be below 500 and, when it refuses, say why in the JSON error
format; afterwards no worker's peak memory passes the documented bound and the stored data is
byte for byte what it was. The examples come from a fixed seed (tests/fuzzing.py).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ApertureServer, database_config, start_server
from tests.fuzzing import NASTY, examples, worker_peaks
from tests.helpers import make_instance, stow

# The documented bound on one worker's peak memory (docs/security.md, "Memory").
MAX_WORKER_RSS = 1024 * 1024 * 1024

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = STUDY + ".1"
SINGLE = SERIES + ".1"
MULTI = SERIES + ".2"

QUERY_KEYS = [
    "limit", "offset", "fuzzymatching", "includefield", "PatientID", "PatientName", "StudyDate", "StudyTime",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "AccessionNumber", "ModalitiesInStudy", "Modality",
    "InstanceNumber", "SeriesNumber", "NumberOfFrames", "Rows", "00200013", "00080020", "IssuerOfPatientID",
    "ReferencedStudySequence.ReferencedSOPInstanceUID", "viewport", "quality", "window", "annotation", "charset",
    "accept", "iccprofile", "region", "frameNumber", "", "=", "unknown", "Ä", "0010", "ZZZZZZZZ",
]  # fmt: skip
ACCEPTS = [
    "*/*", "application/dicom+json", "application/json", "image/jpeg", "image/png", "image/gif", "text/html",
    'multipart/related; type="application/dicom"; transfer-syntax=*',
    'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
    'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    'multipart/related; type="application/octet-stream"',
    'multipart/related; type="application/dicom+xml"', "application/zip", "multipart/related",
    'multipart/related; type="image/jpeg"; q=0.5, */*; q=0.1', "image/*; q=²", "", ";;;", "a/b; q=999999999999",
    ",".join(["image/jpeg"] * 500),
]  # fmt: skip
TEMPLATES = [
    "/studies", "/series", "/instances",
    "/studies/{study}", "/studies/{study}/metadata", "/studies/{study}/series", "/studies/{study}/instances",
    "/studies/{study}/rendered", "/studies/{study}/thumbnail", "/studies/{study}/series/{series}",
    "/studies/{study}/series/{series}/metadata", "/studies/{study}/series/{series}/instances",
    "/studies/{study}/series/{series}/rendered", "/studies/{study}/series/{series}/thumbnail",
    "/studies/{study}/series/{series}/instances/{instance}",
    "/studies/{study}/series/{series}/instances/{instance}/metadata",
    "/studies/{study}/series/{series}/instances/{instance}/rendered",
    "/studies/{study}/series/{series}/instances/{instance}/thumbnail",
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail",
    "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{bulk}",
]  # fmt: skip

fuzz_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.lists(st.integers(min_value=-3, max_value=70), min_size=1, max_size=12).map(lambda xs: ",".join(map(str, xs))),
)
query_key = st.one_of(st.sampled_from(QUERY_KEYS), st.sampled_from(QUERY_KEYS), st.text(max_size=12))
query = st.lists(st.tuples(query_key, st.one_of(st.sampled_from(NASTY), fuzz_text)), max_size=4)
segment = {
    "study": st.one_of(st.just(STUDY), fuzz_text),
    "series": st.one_of(st.just(SERIES), fuzz_text),
    "instance": st.one_of(st.sampled_from([SINGLE, MULTI]), fuzz_text),
    "frames": st.one_of(st.sampled_from(["1", "2", "1,2,3", "4", "5"]), fuzz_text),
    "bulk": st.one_of(st.sampled_from(["7fe00010", "7FE00010", "00282000", "x"]), fuzz_text),
}


def fill(template: str, values: dict[str, str]) -> str:
    """The path with each placeholder replaced by its value, percent-encoded as one segment."""
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], dict[str, bytes]]:
    template = draw(st.sampled_from(TEMPLATES))
    values = {name: draw(strategy) for name, strategy in segment.items() if "{" + name + "}" in template}
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "DELETE", "OPTIONS"]))
    headers = {"Accept": draw(st.sampled_from(ACCEPTS)).encode()}  # bytes: non-ASCII is sent as UTF-8
    return method, fill(template, values), draw(query), headers


def snapshot(http: httpx.Client) -> dict[str, str]:
    """SOP Instance UID -> SHA-256 of the stored bytes, for everything the server holds."""
    found = http.get("/instances", params={"limit": "1000"}, headers={"Accept": "application/dicom+json"})
    assert found.status_code == 200, found.text
    digests = {}
    for item in found.json():
        study, series, sop = (item[tag]["Value"][0] for tag in ("0020000D", "0020000E", "00080018"))
        retrieved = http.get(
            f"/studies/{study}/series/{series}/instances/{sop}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
        assert retrieved.status_code == 200
        digests[sop] = hashlib.sha256(retrieved.content).hexdigest()
    return digests


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApertureServer, httpx.Client]]:
    """A server on each index backend: out-of-range numbers overflow each database differently."""
    config = database_config(request, request.param, "fuzz")
    server = start_server(tmp_path_factory.mktemp("fuzz") / "data", config=config or None)
    with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
        stored = stow(
            http,
            [
                make_instance(study=STUDY, series=SERIES, sop=SINGLE),
                make_instance(study=STUDY, series=SERIES, sop=MULTI, frames=4, rows=64, columns=64, instance_number=2),
                make_instance(patient_id="PAT-2", patient_name="Roe^Richard"),
            ],
        )
        assert stored.status_code == 200, stored.text
        yield server, http
    server.stop()


# Answers checked per server port: the closing test asserts the fuzzing before it really ran.
CHECKED: Counter[int] = Counter()


def fault(response: httpx.Response, method: str) -> str | None:
    """What is wrong with an answer to malformed input, or None: below 500, and a refusal says why.

    A refusal must carry the JSON error body with a message a person can act on.
    """
    CHECKED[response.request.url.port or 0] += 1
    url = str(response.request.url)
    url = url if len(url) < 240 else f"{url[:200]}...({len(url)} characters)"
    where = f"{method} {url} -> {response.status_code}: {response.text[:200]!r}"
    if response.status_code >= 500:
        return where
    if response.status_code >= 400 and method != "HEAD":
        if not response.headers.get("content-type", "").startswith("application/json"):
            return "not the JSON error format: " + where
        message = response.json().get("message")
        if not (isinstance(message, str) and len(message) > 10):
            return "no actionable message: " + where
    return None


def assert_answered(response: httpx.Response, method: str) -> None:
    problem = fault(response, method)
    assert problem is None, problem


# One route of each kind of handler, with the stored multi-frame instance, for the table tests.
KINDS = {
    "search": "/studies",
    "search in study": f"/studies/{STUDY}/instances",
    "retrieve": f"/studies/{STUDY}/series/{SERIES}/instances/{MULTI}",
    "metadata": f"/studies/{STUDY}/metadata",
    "frames": f"/studies/{STUDY}/series/{SERIES}/instances/{MULTI}/frames/1,2",
    "rendered": f"/studies/{STUDY}/series/{SERIES}/instances/{MULTI}/rendered",
    "frame rendered": f"/studies/{STUDY}/series/{SERIES}/instances/{MULTI}/frames/2/rendered",
    "thumbnail": f"/studies/{STUDY}/thumbnail",
    "study rendered": f"/studies/{STUDY}/rendered",
}
KIND_ACCEPT = {
    "rendered": "image/jpeg",
    "frame rendered": "image/png",
    "thumbnail": "image/jpeg",
    "study rendered": 'multipart/related; type="image/jpeg"',
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_query_key_with_every_nasty_value(
    fuzzed: tuple[ApertureServer, httpx.Client], before: dict[str, str], kind: str
) -> None:
    """The whole table, not a sample: each known key with each value above, on one route of each kind."""
    _, http = fuzzed
    accept = KIND_ACCEPT.get(kind, "*/*")
    problems = []
    for key in QUERY_KEYS:
        for value in NASTY:
            response = http.get(KINDS[kind], params=[(key, value)], headers={"Accept": accept})
            problems.append(fault(response, "GET"))
    found = [problem for problem in problems if problem]
    assert not found, f"{len(found)} faults:\n" + "\n".join(found[:40])


@pytest.mark.parametrize("template", [t for t in TEMPLATES if "{" in t])
def test_every_path_segment_with_every_nasty_value(
    fuzzed: tuple[ApertureServer, httpx.Client], before: dict[str, str], template: str
) -> None:
    _, http = fuzzed
    defaults = {"study": STUDY, "series": SERIES, "instance": MULTI, "frames": "1", "bulk": "7fe00010"}
    problems = []
    for name in (name for name in defaults if "{" + name + "}" in template):
        for value in NASTY:
            values = {other: defaults[other] for other in defaults if "{" + other + "}" in template}
            values[name] = value
            response = http.get(fill(template, values), headers={"Accept": "*/*"})
            problems.append(fault(response, "GET"))
    found = [problem for problem in problems if problem]
    assert not found, f"{len(found)} faults:\n" + "\n".join(found[:40])


@pytest.fixture(scope="module")
def before(fuzzed: tuple[ApertureServer, httpx.Client]) -> dict[str, str]:
    return snapshot(fuzzed[1])


@settings(max_examples=examples(400))
@given(request=requests())
def test_no_route_answers_5xx_to_malformed_paths_queries_or_accept(
    fuzzed: tuple[ApertureServer, httpx.Client],
    before: dict[str, str],
    request: tuple[str, str, list[tuple[str, str]], dict[str, bytes]],
) -> None:
    _, http = fuzzed
    method, path, params, headers = request
    response = http.request(method, path, params=params, headers=headers)
    assert_answered(response, method)


bodies = st.one_of(
    st.binary(max_size=2000),
    st.sampled_from([b"", b"--", b"--x\r\n\r\n--x--", b"DICM" * 100, b"\x00" * 4096]),
    st.builds(lambda junk, boundary: b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + junk
              + b"\r\n--" + boundary + b"--\r\n", st.binary(max_size=600), st.just(b"b0undary")),
)  # fmt: skip
content_types = st.one_of(
    st.sampled_from([
        'multipart/related; type="application/dicom"; boundary=b0undary', "multipart/related; boundary=b0undary",
        'multipart/related; type="application/dicom"', "application/dicom", "application/json", "text/plain", "",
        'multipart/related; type="application/dicom"; boundary=' + "x" * 300, "multipart/related; boundary=\"\"",
    ]),
    st.text(max_size=60),
)  # fmt: skip


@settings(max_examples=examples(400))
@given(body=bodies, content_type=content_types, target=st.sampled_from(["/studies", f"/studies/{STUDY}"]))
def test_store_refuses_malformed_bodies_without_storing_anything(
    fuzzed: tuple[ApertureServer, httpx.Client], before: dict[str, str], body: bytes, content_type: str, target: str
) -> None:
    _, http = fuzzed
    try:
        headers = {"Content-Type": content_type.encode(), "Accept": b"application/dicom+json"}
        response = http.post(target, content=body, headers=headers)
    except httpx.LocalProtocolError:  # a header h11 itself will not send (a line break, say)
        return
    assert response.status_code < 500, f"{content_type!r} {body[:80]!r} -> {response.status_code}: {response.text}"
    assert response.status_code != 200, response.text  # nothing in these bodies is a storable instance


def test_after_fuzzing_memory_is_bounded_and_stored_data_unchanged(
    fuzzed: tuple[ApertureServer, httpx.Client], before: dict[str, str]
) -> None:
    server, http = fuzzed
    assert CHECKED[server.port] > 10_000, "run the whole module: this test checks what the fuzzing above left"
    assert len(before) == 3
    assert snapshot(http) == before
    peaks = worker_peaks(server)
    assert peaks, "no server process found"
    assert max(peaks.values()) < MAX_WORKER_RSS, {pid: f"{peak / 2**20:.0f} MiB" for pid, peak in peaks.items()}
