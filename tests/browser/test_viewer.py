"""OHIF at the imaging server's own `/viewer/`, under SMART authorization, served like a CDN.

The demo stack (`aperture demo --access-log`: EHR sandbox + imaging server with --auth smart) holds
Walter Nguyen's CT. A token minted for the sample app, for him, goes into sessionStorage exactly as
the SMART app hands it over (ohif.py's contract); the viewer must draw the CT with every DICOMweb
request carrying the bearer, none refused, no token in any logged URL, frames fetched by byte range
(progressive HTJ2K) and then whole. The file answers are checked over HTTP: encodings, caching
headers, revalidation, deep links.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httpx
import imagecodecs
import pytest

from aperture.clients import SAMPLE_APP_CLIENT_ID
from aperture.viewer.ohif import REST_STREAMS, TOKEN_KEY, WARM_CODESTREAM, WARM_SIZE, WHOLE_FRAME
from tests.browser.conftest import ACCESS_LINE, PageLog, require_ohif
from tests.browser.test_ohif import CANVAS_STATS

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.stack import DemoStack

pytestmark = pytest.mark.interop

PATIENT = "walter-nguyen"  # the seed patient with a CT (aperture/ehr/seed.json)
SCOPE = "launch/patient patient/ImagingStudy.rs"
# the displayed stack's images dropped from cornerstone's cache and loaded again by its image loader
RELOAD_SLICES = """async () => {
  const viewport = window.cornerstone.getRenderingEngines()[0].getViewports().find(v => v.getImageIds);
  const ids = viewport.getImageIds().slice(0, 3);
  window.cornerstone.cache.purgeCache();
  await Promise.all(ids.map(id => window.cornerstone.imageLoader.loadAndCacheImage(id)));
}"""
TOUR = '[class*="shepherd"]'  # OHIF's onboarding tour (shepherd.js): its step, its overlay
PICTURE = f"""() => {{
  const s = ({CANVAS_STATS})();
  return s && s.lit > 0.1 && s.levels > 16 ? s : null;
}}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    from tests.stack import start_demo, stop_demo

    require_ohif()
    found = start_demo(tmp_path_factory.mktemp("viewer-stack") / "demo", access_log=True)
    try:
        yield found
    finally:
        stop_demo(found.process)


def origin(stack: DemoStack) -> str:
    return stack.dicomweb.removesuffix("/dicom-web")


def ct_study(stack: DemoStack) -> str:
    studies: list[str] = stack.patient(PATIENT)["studies"]
    return studies[0]


def hand_over(page: Page, token: str) -> None:
    """What the SMART app does before it opens the viewer: the token in this origin's sessionStorage."""
    value = {"accessToken": token, "expiresAt": int(time.time()) + 300}
    page.add_init_script(f"window.sessionStorage.setItem({TOKEN_KEY!r}, JSON.stringify({value!r}))")


def imaging_log(stack: DemoStack) -> list[str]:
    return (stack.data / "server.log").read_text(errors="replace").splitlines()


def test_ohif_at_viewer_draws_the_ct_with_the_bearer_on_every_request(stack: DemoStack, page: Page) -> None:
    from playwright.sync_api import Request, Response

    token = stack.token(SAMPLE_APP_CLIENT_ID, SCOPE, patient=stack.patient(PATIENT)["id"])
    seen: list[tuple[str, dict[str, str]]] = []
    ranges: list[str] = []

    def record(request: Request) -> None:
        if request.url.startswith(stack.dicomweb):
            headers = request.headers
            seen.append((request.url, headers))
            if "/frames/" in request.url and "range" in headers:
                ranges.append(headers["range"])

    partial: list[tuple[int, str, str]] = []  # (status, url, Content-Range) of frame answers

    def answered(response: Response) -> None:
        if "/frames/" in response.url and response.request.headers.get("range"):
            partial.append((response.status, response.url, response.headers.get("content-range", "")))

    log = PageLog()
    log.watch(page)
    page.on("request", record)
    page.on("response", answered)
    hand_over(page, token)
    page.goto(f"{origin(stack)}/viewer/viewer?StudyInstanceUIDs={ct_study(stack)}")
    try:
        page.wait_for_function(PICTURE, timeout=90_000, polling=250)
    except Exception:
        page.screenshot(path=stack.data / "viewer.png")
        pytest.fail(f"the CT was not drawn (canvas {page.evaluate(CANVAS_STATS)})\n{log.report()}")
    try:
        page.wait_for_load_state("networkidle", timeout=30_000)
    except Exception:
        pass
    page.screenshot(path=stack.data / "viewer.png")

    assert not page.locator(TOUR).count(), "OHIF's onboarding tour is shown over the viewport"
    assert any("/metadata" in url for url, _ in seen), log.report()
    assert any("/frames/" in url for url, _ in seen), log.report()
    unsigned = [url for url, headers in seen if headers.get("authorization") != f"Bearer {token}"]
    assert not unsigned, unsigned
    assert not log.problems(stack.dicomweb), log.report()
    assert token not in page.url and "token" not in page.url
    # progressive HTJ2K: every frame asked for by byte range, answered 206 with its total size; a frame
    # larger than the first range has the rest asked for too (the demo's 256x256 slices fit in one)
    assert ranges and all(r.startswith("bytes=") for r in ranges), ranges[:10]
    assert partial and all(status == 206 for status, _, _ in partial), partial[:5]
    for url, total in {url: int(cr.rsplit("/", 1)[1]) for _, url, cr in partial}.items():
        got = sum(
            int(b) - int(a) + 1 for _, u, cr in partial if u == url for a, b in [cr.split()[1].split("/")[0].split("-")]
        )
        assert got == total, (url, got, total)  # full fidelity: every byte of the codestream arrived

    time.sleep(0.5)
    lines = imaging_log(stack)
    access = [m for line in lines if (m := ACCESS_LINE.search(line)) and "/dicom-web/" in m["target"]]
    assert access, "no access log lines"
    refused = [m.group(0) for m in access if int(m["status"]) >= 400]
    assert not refused, refused
    assert not [line for line in lines if token in line or token[:24] in line]


def test_a_refreshed_token_reaches_the_open_viewer(stack: DemoStack, page: Page) -> None:
    patient = stack.patient(PATIENT)["id"]
    first = stack.token(SAMPLE_APP_CLIENT_ID, SCOPE, patient=patient)
    second = stack.token(SAMPLE_APP_CLIENT_ID, SCOPE, patient=patient)
    hand_over(page, first)
    page.goto(f"{origin(stack)}/viewer/viewer?StudyInstanceUIDs={ct_study(stack)}")
    page.wait_for_function(PICTURE, timeout=90_000, polling=250)
    signed: list[tuple[str, str]] = []
    page.on("request", lambda r: signed.append((r.url, r.headers.get("authorization", ""))))
    message = {"type": TOKEN_KEY, "accessToken": second, "expiresAt": int(time.time()) + 600}
    page.evaluate("m => window.postMessage(m, window.location.origin)", message)
    # wait_for_timeout, not sleep: it lets Playwright deliver the request events of frames asked for
    # before the message (with the first token), so that they are cleared here, not counted below
    page.wait_for_timeout(300)
    signed.clear()
    # the open viewer loads its slices again through OHIF's own image loader (no reload of the page)
    page.evaluate(RELOAD_SLICES)
    page.wait_for_timeout(1000)
    stored = page.evaluate(f"() => JSON.parse(window.sessionStorage.getItem({TOKEN_KEY!r})).accessToken")
    assert stored == second
    frames = [value for url, value in signed if "/frames/" in url]
    assert frames and all(value == f"Bearer {second}" for value in frames), frames[:5]


def _get(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=30)


def test_the_viewer_files_are_served_like_a_cdn(stack: DemoStack) -> None:
    base = f"{origin(stack)}/viewer/"
    index = _get(base)
    assert index.status_code == 200 and 'window.PUBLIC_URL="/viewer/"' in index.text
    assert index.headers["cache-control"] == "no-cache" and index.headers["etag"]
    assert _get(base, **{"If-None-Match": index.headers["etag"]}).status_code == 304
    bundle = next(part.split('"')[0] for part in index.text.split('src="/viewer/')[1:] if "app.bundle" in part)
    deadline = time.monotonic() + 200  # the first start compresses in the background
    while True:
        answer = _get(base + bundle, **{"Accept-Encoding": "br, gzip"})
        if answer.headers.get("content-encoding") == "br" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert answer.headers.get("content-encoding") == "br"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "Accept-Encoding" in answer.headers["vary"]
    decoded = bytes(imagecodecs.brotli_decode(answer.content))  # httpx has no brotli decoder here
    assert b'__webpack_require__.p = "/viewer/";' in decoded
    gz = _get(base + bundle, **{"Accept-Encoding": "gzip"})
    assert gz.headers["content-encoding"] == "gzip" and gz.content == decoded  # httpx decoded the gzip
    plain = _get(base + bundle, **{"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == decoded
    assert len({answer.headers["etag"], gz.headers["etag"], plain.headers["etag"]}) == 3
    config = _get(base + "app-config.js")
    assert config.headers["cache-control"] == "no-cache" and "/dicom-web" in config.text
    assert _get(base + "app-config.js", **{"If-None-Match": config.headers["etag"]}).status_code == 304
    deep = _get(base + "viewer/some/deep/route?StudyInstanceUIDs=1.2.3")
    assert deep.status_code == 200 and deep.text == index.text
    missing = _get(base + "no-such-chunk.js")
    assert missing.status_code == 404 and "No file" in missing.json()["message"]
    assert _get(base + "..%2F..%2Fpyproject.toml").status_code == 404


def test_the_htj2k_decoder_is_fetched_once_per_page_load(stack: DemoStack, page: Page) -> None:
    token = stack.token(SAMPLE_APP_CLIENT_ID, SCOPE, patient=stack.patient(PATIENT)["id"])
    wasm: list[Any] = []
    page.context.on("request", lambda r: wasm.append(r.url) if r.url.endswith(".wasm") else None)
    hand_over(page, token)
    page.add_init_script("Object.defineProperty(navigator, 'hardwareConcurrency', {get: () => 8})")  # 7 workers
    before = len([line for line in imaging_log(stack) if ".wasm" in line])
    page.goto(f"{origin(stack)}/viewer/viewer?StudyInstanceUIDs={ct_study(stack)}")
    page.wait_for_function(PICTURE, timeout=90_000, polling=250)
    time.sleep(1)
    fetched = [line for line in imaging_log(stack) if ".wasm" in line][before:]
    htj2k = [line for line in fetched if "37fa160cc3a47cfd.wasm" in line]
    sent = [line for line in htj2k if " 200 " in line]
    assert len(sent) == 1, fetched  # its bytes once (preloaded by the page); a worker may revalidate (304)
    assert all(" 304 0 " in line for line in htj2k if line not in sent), fetched


# what cornerstone found the browser's WebGL to be, and how many contexts its rendering engine holds
RENDERING = """() => {
  const cs = window.cornerstone;
  const capabilities = cs.getRenderingCapabilities();
  const engines = cs.getRenderingEngines() || [];
  return {
    renderer: capabilities.renderer,
    software: capabilities.softwareRasterizer,
    engines: engines.length,
    contexts: engines.map(e => (e.contextPool ? e.contextPool.contexts.length : null)),
  };
}"""


def test_on_a_software_rasterizer_the_viewer_draws_through_one_webgl_context(stack: DemoStack, page: Page) -> None:
    """Headless chromium without a GPU rasterizes WebGL on the CPU (SwiftShader): there the viewer's
    rendering engine holds one context instead of cornerstone's pool of seven, and still draws the CT."""
    token = stack.token(SAMPLE_APP_CLIENT_ID, SCOPE, patient=stack.patient(PATIENT)["id"])
    hand_over(page, token)
    page.goto(f"{origin(stack)}/viewer/viewer?StudyInstanceUIDs={ct_study(stack)}")
    page.wait_for_function(PICTURE, timeout=90_000, polling=250)
    seen = page.evaluate(RENDERING)
    assert seen["software"], seen  # the condition this test is about: a CPU rasterizer
    assert seen["engines"] == 1 and seen["contexts"] == [1], seen


# one decode through OHIF's own worker pool, as the every-slice extension's warm-up asks for it
DECODE_IN_WORKER = """async ([codestream, size]) => {
  const manager = window.cornerstone.getWebWorkerManager();
  const frame = await manager.executeTask("dicomImageLoader", "decodeTask", {
    imageFrame: {samplesPerPixel: 1, photometricInterpretation: "MONOCHROME2", rows: size, columns: size,
                 bitsAllocated: 16, bitsStored: 16, pixelRepresentation: 0},
    transferSyntax: "1.2.840.10008.1.2.4.201",
    pixelData: Uint8Array.from(atob(codestream), c => c.charCodeAt(0)),
    options: {preScale: {enabled: false}}, decodeConfig: {},
  }, {requestType: "interaction"});
  return Array.from(frame.pixelData);
}"""


def test_the_decode_workers_are_warmed_with_a_codestream_they_decode(stack: DemoStack, page: Page) -> None:
    """The warm-up decode that sets each worker's HTJ2K codec up early is one OHIF's worker accepts:
    it raises no warning on the page, and the same task, asked again, gives back the 8×8 gradient."""
    import base64

    import numpy as np

    from aperture.dicom.htj2k import decode_frame

    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if "warm-up" in m.text else None)
    token = stack.token(SAMPLE_APP_CLIENT_ID, SCOPE, patient=stack.patient(PATIENT)["id"])
    hand_over(page, token)
    page.goto(f"{origin(stack)}/viewer/viewer?StudyInstanceUIDs={ct_study(stack)}")
    page.wait_for_function(PICTURE, timeout=90_000, polling=250)
    pixels = page.evaluate(DECODE_IN_WORKER, [WARM_CODESTREAM, WARM_SIZE])
    assert pixels == decode_frame(base64.b64decode(WARM_CODESTREAM)).astype(np.uint16).ravel().tolist()
    assert len(set(pixels)) == WARM_SIZE * WARM_SIZE  # a gradient: every pixel its own value
    assert warnings == []


# cornerstone's ImageQualityStatus of every image of the displayed stack, once all are at full resolution
ALL_FULL = """() => {
  const cs = window.cornerstone;
  const enabled = cs && cs.getEnabledElements ? cs.getEnabledElements() : [];
  const viewport = enabled.length ? enabled[0].viewport : null;
  const ids = viewport && viewport.getImageIds ? viewport.getImageIds() : [];
  if (!ids.length) return null;
  const qualities = ids.map(id => cs.cache.getImageQuality(id));
  return qualities.every(q => q >= 8) ? qualities.length : null;
}"""


def _load_512_stack(
    tmp_path: Path,
    page: Page,
    n_slices: int,
    *,
    throttle: bool,
    queries: list[str] | None = None,
    events: list[tuple[str, str, str]] | None = None,
) -> list[tuple[str, str]]:
    """Open a 512×512 CT of ``n_slices`` at /viewer/ and wait until every slice is at full resolution;
    the frame requests in order, as (instance UID, Range header); their query strings into ``queries``;
    into ``events``, each frame request's start and end in order, as ("start" or "end", UID, Range)."""
    import io

    import pydicom

    from aperture.dicom.synthetic import ct_study as synthetic_ct
    from tests.browser.test_ohif import DRAWN, store
    from tests.conftest import start_server

    parts = list(synthetic_ct(n_slices=n_slices, rows=512, cols=512, patient_id="BIG-CT", patient_name="Big^Ct"))
    study = str(pydicom.dcmread(io.BytesIO(parts[0])).StudyInstanceUID)
    server = start_server(tmp_path / "data")
    try:
        store(server, parts)
        asked: list[tuple[str, str]] = []
        queries = [] if queries is None else queries
        events = [] if events is None else events

        def frame(request: Any) -> tuple[str, str] | None:
            if "/frames/" not in request.url:
                return None
            return request.url.split("/instances/", 1)[1].split("/", 1)[0], request.headers.get("range", "")

        def on_request(request: Any) -> None:
            if (asked_for := frame(request)) is not None:
                asked.append(asked_for)
                queries.append(request.url.partition("?")[2])
                events.append(("start", *asked_for))

        def on_end(request: Any) -> None:
            if (asked_for := frame(request)) is not None:
                events.append(("end", *asked_for))

        page.on("request", on_request)
        page.on("requestfinished", on_end)
        page.on("requestfailed", on_end)
        if throttle:  # 20 Mbit/s: the every-slice pass takes the low-resolution first pass
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            rate = 2_500_000
            conditions = {"offline": False, "latency": 40, "downloadThroughput": rate, "uploadThroughput": rate}
            cdp.send("Network.emulateNetworkConditions", conditions)
        page.goto(f"http://127.0.0.1:{server.port}/viewer/viewer?StudyInstanceUIDs={study}")
        page.wait_for_function(DRAWN, timeout=90_000, polling=250)
        assert page.wait_for_function(ALL_FULL, timeout=90_000, polling=250).json_value() == n_slices
    finally:
        server.stop()
    return asked


def test_on_a_slow_link_every_slice_comes_low_resolution_first_then_the_rest_appended(
    tmp_path: Path, page: Page
) -> None:
    """Progressive loading over byte ranges of the HTJ2K RPCL frames: the first 16 KiB of every slice
    (past its 128×128 level), then the rest of each, appended (`bytes=16384-`: nothing fetched
    twice), and every slice ends at full resolution. The first ranges have precedence: while any is
    still coming, at most `REST_STREAMS` rests are in flight (and the displayed slice's own)."""
    n = 12
    events: list[tuple[str, str, str]] = []
    asked = _load_512_stack(tmp_path, page, n, throttle=True, events=events)
    summary = "\n".join(f"{uid[-12:]} {r or 'no range'}" for uid, r in asked)
    assert len(asked) == len(set(asked)), summary  # no range of any slice asked for twice
    first = [i for i, (_, r) in enumerate(asked) if r == "bytes=0-16383"]
    rest = [i for i, (_, r) in enumerate(asked) if r == "bytes=16384-"]
    assert len(first) >= n - 2, summary  # the first range of every slice (but the one or two OHIF
    # fetched whole or before the pass: its series thumbnail and the displayed slice)
    assert {asked[i][0] for i in first} <= {asked[i][0] for i in rest}, summary  # each then completed
    assert all(asked.index((asked[i][0], "bytes=0-16383")) < i for i in rest if (asked[i][0], "bytes=0-16383") in asked)
    # (each slice's rest after its own first range)
    assert len({uid for uid, _ in asked}) == n, summary
    firsts_open: set[str] = set()
    rests_open: set[str] = set()
    most = 0
    for what, uid, asked_range in events:
        kind = firsts_open if asked_range == "bytes=0-16383" else rests_open if asked_range == "bytes=16384-" else None
        if kind is None:
            continue
        (kind.add if what == "start" else kind.discard)(uid)
        if firsts_open:
            most = max(most, len(rests_open))
    assert most <= REST_STREAMS + 1, (most, summary)


def test_on_a_fast_link_every_slice_comes_whole_in_one_pass(tmp_path: Path, page: Page) -> None:
    """On loopback the link outruns the decoder: the pass skips the low-resolution stage and fetches
    each slice once, whole."""
    n = 12
    queries: list[str] = []
    asked = _load_512_stack(tmp_path, page, n, throttle=False, queries=queries)
    summary = "\n".join(f"{uid[-12:]} {r or 'no range'} {q}" for (uid, r), q in zip(asked, queries, strict=True))
    uids = {uid for uid, _ in asked}
    assert len(uids) == n, summary
    ranged = [uid for uid, r in asked if r]
    assert len(set(ranged)) <= 1, summary  # only the displayed slice, in its two stages
    whole = [q for (_, r), q in zip(asked, queries, strict=True) if not r]
    assert len(whole) == n - 1, summary  # every other slice once
    # uncompressed (the PS3.18 `accept` query parameter): the decoder, not the link, is the limit here
    assert all(unquote(q) == f"accept={WHOLE_FRAME}" for q in whole), summary
