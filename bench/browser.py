"""OHIF in headless chromium: Aperture's viewer stack against OHIF's default configuration on Orthanc.

The two sides are what each deployment gives a user:

- **Aperture**: the imaging server's own `/viewer/` (OHIF 3.13.2 from `.cache/ohif/<version>/dist`,
  served precompressed, with its generated `app-config.js`: progressive byte-range HTJ2K, the
  every-slice pass, the bearer extension; aperture/viewer/). A `--auth smart` server is opened
  the way the SMART app opens it: the access token in `sessionStorage["aperture.viewer.token"]`
  (written here by an init script before the page runs), never in the URL.
- **Orthanc**: the same OHIF build as a static site in nginx, configured as OHIF's own Docker image
  serves it (gzip level 5 for scripts, styles and JSON; `try_files … /index.html`), with OHIF's
  default settings and one DICOMweb data source, `/dicom-web/` proxied to Orthanc on the same
  origin (Orthanc 1.10 sends no CORS headers).

Every page load is a fresh browser context (empty HTTP cache, service workers blocked), 1280×800,
opening `…/viewer?StudyInstanceUIDs=<CT>`. Times run from the start of the first request the page
makes to the DICOMweb server (Resource Timing), to:

- *first slice*: the first in-page poll (every 50 ms) that finds the viewport canvas drawn;
- *every slice viewable*: the first in-page check (every 100 ms) that finds every image of the
  displayed stack in cornerstone's cache, at any quality (a low-resolution first pass counts);
- *all frames*: the first check that finds every one of them at full resolution.

The time from the navigation itself (the page's first request) to the first slice is kept too,
for the notes. Bytes: every response body the page received after its first DICOMweb request
(Resource Timing `encodedBodySize`, so as sent on the wire), and the frame answers' share.

All of it is observed from inside the page and read once at the end of the load (Resource Timing,
and the status and headers of each DICOMweb answer recorded by a wrapper around XHR and fetch): no
Playwright request events and no CDP Network domain during the load. Those cost the harness,
Playwright's driver and the browser process about 10 CPU-seconds per throttled load on this 2-CPU
machine, taken from the viewer under test, and twice as much for a side that makes twice the requests.

The throttled condition applies Chromium's network emulation (CDP `Network.emulateNetworkConditions`,
20 Mbit/s each way, 40 ms added latency) to the whole page from its first request on. A side given
a token that sees a 401 or 403 from its DICOMweb server gets an error instead of a time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from peers import REPO, Server, _spawn, free_port, wait_ready

from aperture.viewer.ohif import TOKEN_KEY, app_config

OHIF_VERSION = "3.13.2"  # the version `make install` unpacks (see tests/browser/conftest.py)
OHIF_DIST = REPO / ".cache" / "ohif" / OHIF_VERSION / "dist"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LINK_BYTES_PER_S = 2_500_000  # 20 Mbit/s
THROTTLE = {  # 20 Mbit/s each way, 40 ms added latency
    "offline": False,
    "latency": 40,
    "downloadThroughput": LINK_BYTES_PER_S,
    "uploadThroughput": LINK_BYTES_PER_S,
}
CONDITIONS = {"loopback": False, "20 Mbit/s, 40 ms": True}

# Returns Date.now() once the largest cornerstone canvas holds a picture (a tenth of it lit, more than 16
# grey levels), else null. The canvas is scaled into a small 2D canvas first: cheap enough to run every
# 50 ms, and it reads a WebGL canvas as well.
DRAWN_AT = """() => {
  const canvases = [...document.querySelectorAll('canvas.cornerstone-canvas')].filter(c => c.width && c.height);
  if (!canvases.length) return null;
  const canvas = canvases.reduce((a, b) => (a.width * a.height >= b.width * b.height ? a : b));
  const [w, h] = [160, 100];
  const copy = document.createElement('canvas');
  copy.width = w;
  copy.height = h;
  const ctx = copy.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(canvas, 0, 0, w, h);
  const data = ctx.getImageData(0, 0, w, h).data;
  const levels = new Set();
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] + data[i + 1] + data[i + 2] > 30) lit++;
    levels.add(data[i]);
  }
  return lit > 0.1 * w * h && levels.size > 16 ? Date.now() : null;
}"""

# Installed before the page runs: every 100 ms, how many images of the first viewport's stack are in
# cornerstone's cache at any quality and at full resolution (ImageQualityStatus FULL_RESOLUTION = 8),
# and when each count first reached the whole stack.
STACK_MONITOR = """(() => {
  performance.setResourceTimingBufferSize(100000);
  const state = window.__apertureBench = {images: 0, cached: 0, full: 0, every: null, all: null};
  const timer = setInterval(() => {
    const cs = window.cornerstone;
    if (!cs || !cs.getEnabledElements) return;
    const enabled = cs.getEnabledElements();
    const viewport = enabled.length ? enabled[0].viewport : null;
    if (!viewport || typeof viewport.getImageIds !== 'function') return;
    const ids = viewport.getImageIds();
    if (!ids || !ids.length) return;
    let cached = 0, full = 0;
    for (const id of ids) {
      const quality = cs.cache.getImageQuality(id);
      if (quality === undefined) continue;
      cached++;
      if (quality >= 8) full++;
    }
    Object.assign(state, {images: ids.length, cached, full});
    const now = Date.now();
    if (state.every === null && cached === ids.length) state.every = now;
    if (state.all === null && full === ids.length) { state.all = now; clearInterval(timer); }
  }, 100);
})();"""

# Installed before the page runs: the status, Content-Type and Content-Encoding of every answer from the
# DICOMweb root, or why it failed, recorded in the page as the XHRs and fetches complete (OHIF's
# DICOMweb client uses XHR, the image loader's byte ranges fetch).
RESPONSE_LOG = """(() => {
  const root = %s;
  const answers = window.__apertureAnswers = [];
  const note = (url, fields) => {
    if (String(url).startsWith(root) && answers.length < 100000) answers.push({url: String(url), ...fields});
  };
  const answer = (status, get) => ({status, type: get('content-type'), encoding: get('content-encoding')});
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url) {
    const target = new URL(url, location.href).href;
    this.addEventListener('loadend', () => note(target, this.status
      ? answer(this.status, (name) => this.getResponseHeader(name))
      : {status: 0, failed: 'no answer (network error or aborted)'}));
    return open.apply(this, arguments);
  };
  const plainFetch = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === 'string' || input instanceof URL ? input : input.url;
    const target = new URL(url, location.href).href;
    return plainFetch.call(this, input, init).then(
      (r) => { note(target, answer(r.status, (name) => r.headers.get(name))); return r; },
      (e) => { note(target, {status: 0, failed: String(e)}); throw e; });
  };
})();"""

# Read once at the end of a load: when the first DICOMweb request started, the body bytes (as sent) of
# everything since, the frames' share, when the first frame answer ended, the other files fetched
# between that first request and the draw (bytes over the network; 0 for the browser's cache), and
# the answers RESPONSE_LOG recorded.
OBSERVED = """([root, drawn]) => {
  const entries = performance.getEntriesByType('resource');
  const ours = entries.filter(e => e.name.startsWith(root));
  if (!ours.length) return {start: null};
  const start = Math.min(...ours.map(e => e.startTime));
  let all = 0, frames = 0, count = 0, firstFrameEnd = null;
  const late = [];
  for (const e of entries) {
    if (e.startTime + 0.5 < start) continue;
    all += e.encodedBodySize;
    if (e.name.startsWith(root)) {
      if (e.name.includes('/frames/')) {
        frames += e.encodedBodySize; count++;
        if (firstFrameEnd === null || e.responseEnd < firstFrameEnd) firstFrameEnd = e.responseEnd;
      }
    } else if (e.startTime < drawn) {
      late.push([e.name.split('/').pop().split('?')[0], e.transferSize]);
    }
  }
  return {start, bytes: [all, frames, count], firstFrameEnd, late, answers: window.__apertureAnswers || []};
}"""

# OHIF's Docker image (platform/app/.docker): gzip for its text types, level 5; wasm is not in the list.
OHIF_DOCKER_GZIP = """    gzip on;
    gzip_types text/plain text/css application/json application/javascript text/xml application/xml
               application/xml+rss text/javascript image/svg+xml;
    gzip_min_length 256;
    gzip_comp_level 5;
    gzip_vary on;
    gzip_proxied any;
"""


@dataclass
class Side:
    """One viewer to open: its URL up to `?StudyInstanceUIDs=`, and a token for sessionStorage."""

    name: str
    viewer: str
    token: str | None = None
    throttled: bool = True  # also loaded at 20 Mbit/s


@dataclass
class Load:
    """What one page load saw; times in seconds from the first DICOMweb request."""

    first_slice: float | None = None
    from_navigation: float | None = None  # first slice, from the page's own first request
    every_slice: float | None = None
    all_frames: float | None = None
    first_frame: float | None = None  # end of the first frame answer
    bytes_sent: int = 0  # every body after the first DICOMweb request
    frame_bytes: int = 0
    frame_answers: int = 0
    frame_types: Counter[str] = field(default_factory=Counter)
    late_files: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Measure:
    """Samples (seconds) per side for one measurement, or an error per side."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class Condition:
    """Everything measured under one network condition."""

    name: str
    throttled: bool
    first_slice: Measure = field(default_factory=Measure)
    every_slice: Measure = field(default_factory=Measure)
    all_frames: Measure = field(default_factory=Measure)
    bytes_sent: dict[str, list[int]] = field(default_factory=dict)
    loads: dict[str, list[Load]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def unavailable() -> str | None:
    """Why the browser comparison cannot run here, or None."""
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} missing"
    if not (OHIF_DIST / "index.html").is_file():
        return f"OHIF {OHIF_VERSION} not in {OHIF_DIST.relative_to(REPO)} (make install)"
    if shutil.which("nginx") is None and shutil.which("nginx", path="/usr/sbin:/sbin") is None:
        return "nginx missing"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python package playwright missing"
    return None


def _nginx_conf(prefix: Path, port: int, upstream: str) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "".join(
        f"    {k}_temp_path {prefix}/temp/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# Written by bench/browser.py: OHIF served as OHIF's Docker image does; DICOMweb on the same origin.
{user}worker_processes auto;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
{OHIF_DOCKER_GZIP}{temps}    upstream dicomweb {{
        server {upstream.removeprefix("http://")};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /dicom-web/ {{
            proxy_pass http://dicomweb;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_request_buffering off;
            client_max_body_size 0;
            proxy_read_timeout 300s;
        }}
        location = /app-config.js {{
            alias {prefix}/app-config.js;
            add_header Cache-Control no-store;
        }}
        location / {{
            root {OHIF_DIST};
            try_files $uri $uri/ /index.html;
        }}
    }}
}}
"""


def start_front(workdir: Path, name: str, upstream: str) -> Server:
    """nginx with OHIF (default settings) at / and ``upstream``'s /dicom-web/ on the same origin."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin") or "nginx"
    prefix = workdir / f"ohif-{name.lower()}"
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "temp" / kind).mkdir(parents=True, exist_ok=True)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    (prefix / "app-config.js").write_text(app_config(f"{origin}/dicom-web", name="bench"))
    conf = prefix / "nginx.conf"
    conf.write_text(_nginx_conf(prefix, port, upstream))
    argv = [binary, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log"), "-g", "daemon off;"]
    server = _spawn(f"nginx for OHIF+{name}", argv, prefix / "nginx.out", origin, prefix)
    server.log = prefix / "error.log"
    wait_ready(server, "/app-config.js", 30)
    return server


def load_viewer(browser: Any, side: Side, study_uid: str, *, throttle: bool, timeout: float) -> Load:
    """Open ``side``'s viewer on a fresh context and time it, observing from inside the page only
    (Resource Timing and RESPONSE_LOG, read once at the end; the module docstring says why)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    load = Load()
    context = browser.new_context(viewport={"width": 1280, "height": 800}, service_workers="block")
    try:
        if side.token:
            entry = json.dumps({"accessToken": side.token, "expiresAt": int(time.time() * 1000) + 3_600_000})
            context.add_init_script(f"window.sessionStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(entry)});")
        context.add_init_script(STACK_MONITOR)
        dicomweb = urlsplit(side.viewer)._replace(path="/dicom-web/").geturl()
        context.add_init_script(RESPONSE_LOG % json.dumps(dicomweb))
        page = context.new_page()
        if throttle:  # emulation needs no Network.enable (the domain's events are what it would add)
            context.new_cdp_session(page).send("Network.emulateNetworkConditions", THROTTLE)
        deadline = time.monotonic() + timeout
        page.goto(f"{side.viewer}?StudyInstanceUIDs={study_uid}", wait_until="commit", timeout=timeout * 1000)
        try:
            drawn = page.wait_for_function(DRAWN_AT, polling=50, timeout=timeout * 1000).json_value()
        except PlaywrightTimeout:
            load.problems.append(f"viewport not drawn within {timeout:.0f} s")
            return load
        origin = float(page.evaluate("performance.timeOrigin"))
        load.from_navigation = (drawn - origin) / 1000
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = page.evaluate("window.__apertureBench")
            if state.get("all") is not None:
                break
            page.wait_for_timeout(250)
        seen = page.evaluate(OBSERVED, [dicomweb, drawn - origin])
        if seen["start"] is None:
            load.problems.append("no DICOMweb request seen")
            return load
        start = origin + seen["start"]  # epoch ms of the first DICOMweb request
        load.first_slice = (drawn - start) / 1000
        if state.get("every") is not None:
            load.every_slice = (state["every"] - start) / 1000
        if state.get("all") is not None:
            load.all_frames = (state["all"] - start) / 1000
        else:
            load.problems.append(
                f"{state.get('full', 0)} of {state.get('images', '?')} images at full resolution after {timeout:.0f} s"
            )
        load.bytes_sent, load.frame_bytes, load.frame_answers = seen["bytes"]
        if seen["firstFrameEnd"] is not None:
            load.first_frame = (seen["firstFrameEnd"] - seen["start"]) / 1000
        load.late_files = [(name, int(size)) for name, size in seen["late"]]
        for answer in seen["answers"]:
            code, url = answer["status"], answer["url"]
            if answer.get("failed"):
                load.problems.append(f"failed {url}: {answer['failed']}")
            elif code >= 400:
                load.problems.append(f"HTTP {code} {url}")
            elif "/frames/" in url and code in (200, 206):
                kind = _transfer_syntax(answer.get("type") or "")
                encoding = answer.get("encoding")
                kind += f", {code}" + (f", Content-Encoding {encoding}" if encoding else "")
                load.frame_types[kind] += 1
        return load
    finally:
        context.close()


def compare(
    workdir: Path,
    sides: list[Side],
    study_uid: str,
    *,
    runs: int = 3,
    throttled_runs: int = 3,
    log: Callable[[str], None] = print,
) -> tuple[list[Condition], str | None]:
    """Each side's loads under each condition, the sides taking turns; or the reason nothing ran."""
    reason = unavailable()
    if reason is not None:
        return [], reason
    from playwright.sync_api import sync_playwright

    conditions = [Condition(name, throttled) for name, throttled in CONDITIONS.items()]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            for cond in conditions:
                n_runs = throttled_runs if cond.throttled else runs
                now = [s for s in sides if s.throttled or not cond.throttled]
                _measure(browser, now, study_uid, cond, n_runs, log)
        finally:
            browser.close()
    return conditions, None


def _measure(
    browser: Any, sides: list[Side], study_uid: str, cond: Condition, n_runs: int, log: Callable[[str], None]
) -> None:
    timeout = 300.0 if cond.throttled else 120.0
    for run in range(n_runs):
        order = turn_order(sides, run)
        for side in order:
            if side.name in cond.first_slice.errors:
                continue
            began = time.monotonic()
            try:
                load = load_viewer(browser, side, study_uid, throttle=cond.throttled, timeout=timeout)
            except Exception as exc:  # a browser or Playwright failure: report it in the cells
                for measure in (cond.first_slice, cond.every_slice, cond.all_frames):
                    measure.errors[side.name] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            cond.loads.setdefault(side.name, []).append(load)
            log(
                f"OHIF {cond.name} run {run + 1}/{n_runs} {side.name}: first slice {_s(load.first_slice)} "
                f"({_s(load.from_navigation)} from navigation), every slice {_s(load.every_slice)}, "
                f"all frames {_s(load.all_frames)}; {load.bytes_sent / 1e6:.1f} MB sent, "
                f"{load.frame_answers} frame answers; {time.monotonic() - began:.0f} s wall"
                + (f"; problems: {load.problems[:3]}" if load.problems else "")
            )
            refused = [p for p in load.problems if p.startswith(("HTTP 401", "HTTP 403"))]
            if side.token and refused:  # a request went without the token, or the token did not work
                for measure in (cond.first_slice, cond.every_slice, cond.all_frames):
                    measure.errors[side.name] = f"{len(refused)} refused: {refused[0]}"[:200]
                continue
            for measure, value in (
                (cond.first_slice, load.first_slice),
                (cond.every_slice, load.every_slice),
                (cond.all_frames, load.all_frames),
            ):
                if value is None:
                    measure.errors.setdefault(side.name, "; ".join(load.problems[:2]) or "not reached")
                else:
                    measure.samples.setdefault(side.name, []).append(value)
            cond.bytes_sent.setdefault(side.name, []).append(load.bytes_sent)
    for name, loads in cond.loads.items():
        cond.notes.append(_note(name, cond.name, loads))


def turn_order(sides: list[Side], run: int) -> list[Side]:
    """Who loads when in round ``run``: the sides forward, then backward, each time rotated one further.

    Over 2n rounds (n sides) every side loads at every position equally often; for three sides those
    are all six orders, so each side also follows each other side equally often (what a load leaves
    behind, in the browser or on the machine, falls on all alike).
    """
    base = sides if run % 2 == 0 else sides[::-1]
    shift = (run // 2) % len(base) if base else 0
    return base[shift:] + base[:shift]


def _note(name: str, cond: str, loads: list[Load]) -> str:
    types = Counter[str]()
    for load in loads:
        types.update(load.frame_types)
    sent = statistics.median(load.bytes_sent for load in loads) / 1e6
    frames = statistics.median(load.frame_bytes for load in loads) / 1e6
    answers = sorted({load.frame_answers for load in loads})
    nav = [load.from_navigation for load in loads if load.from_navigation is not None]
    note = f"{name} ({cond}): {sent:.1f} MB sent after the first DICOMweb request, {frames:.1f} MB of it frames"
    note += f" in {answers} answers per load; over the {len(loads)} loads: "
    note += ", ".join(f"{t} ×{n}" for t, n in types.most_common(3))
    if nav:
        note += f"; first slice from the navigation itself: median {statistics.median(nav):.2f} s"
    late = loads[0].late_files
    if late:
        listed = ", ".join(f"{n} ({b / 1e3:,.0f} kB)" for n, b in late[:8]) + (" …" if len(late) > 8 else "")
        note += "; files fetched after the first DICOMweb request, before the first slice (bytes over the network): "
        note += listed
    problems = sorted({p for load in loads for p in load.problems})
    if problems:
        note += f"; problems: {problems[:3]}"
    return note


def link_limit(bytes_sent: float) -> float:
    """Seconds the emulated link needs for ``bytes_sent``: the floor for the throttled 'all frames'."""
    return bytes_sent / LINK_BYTES_PER_S


def _transfer_syntax(content_type: str) -> str:
    """The transfer-syntax parameter of a frame answer's Content-Type (inside or outside `type="…"`)."""
    match = re.search(r"transfer-syntax=([0-9.]+)", content_type)
    return f"transfer-syntax={match.group(1)}" if match else f"no transfer-syntax in {content_type[:60]!r}"


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"
