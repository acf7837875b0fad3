"""OHIF in headless chromium against Aperture and against Orthanc: time to first slice, time to all frames.

For each server, one nginx serves the prebuilt OHIF app (`.cache/ohif/<version>/dist`, as for the
browser tests) at `/`, a generated `app-config.js`, and proxies `/dicom-web/` to that server, so the
viewer and its DICOMweb server share one origin (no CORS for either) and both servers get the same
proxy in front. Every page load uses a fresh browser context (empty HTTP cache). Times start at the
first DICOMweb request the page makes (Chromium's own request timing) and end at:

- *first slice*: the first poll (every 50 ms, in the page) that finds the viewport canvas drawn;
- *all frames*: the end of the last `/frames/` response, once the expected number has arrived (or,
  when OHIF stops asking earlier, of the last frame response it did make; the row then says so).

The throttled condition applies Chromium's network emulation (CDP `Network.emulateNetworkConditions`)
to the whole page from its first request on.

A server given a bearer token (`tokens`, the `--auth smart` Aperture) is opened as
`/viewer?StudyInstanceUIDs=...&token=...`: OHIF 3.13's own way to take a token
(`routes/Mode/updateAuthServiceAndCleanUrl.ts`: its user authentication service then answers every
`getAuthorizationHeader()` with `Authorization: Bearer <token>`, for the DICOMweb client and the
image loader's requests alike, and the token is removed from the address bar). Any DICOMweb answer
of 401 or 403 on that side makes the cell an error, so a finished load shows that every request
carried the token.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from peers import REPO, PeerError, Server, _spawn, free_port, wait_ready

from aperture.viewer.ohif import app_config

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
THROTTLE = {  # 20 Mbit/s each way, 40 ms added latency
    "offline": False,
    "latency": 40,
    "downloadThroughput": 2_500_000,
    "uploadThroughput": 2_500_000,
}

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

FRAME_BYTES = """() => performance.getEntriesByType('resource')
  .filter(e => e.name.includes('/frames/')).reduce((sum, e) => sum + e.encodedBodySize, 0)"""


@dataclass
class Result:
    """One measurement (row) for each server: samples in seconds, or an error; notes for the report."""

    label: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Load:
    """What one page load saw."""

    first_slice: float | None = None  # seconds from the first DICOMweb request
    all_frames: float | None = None
    first_frame: float | None = None  # seconds to the end of the first frame answer
    frames_ok: int = 0
    frame_types: Counter[str] = field(default_factory=Counter)
    frame_bytes: int = 0  # encoded (on-the-wire) body bytes of the frame answers, from Resource Timing
    late_files: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    complete: bool = False


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
    return f"""# Written by bench/browser.py: OHIF and, on the same origin, one DICOMweb server.
{user}worker_processes auto;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
{temps}    upstream dicomweb {{
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
            try_files $uri /index.html;
        }}
    }}
}}
"""


def start_front(workdir: Path, name: str, upstream: str) -> Server:
    """nginx with OHIF at / and ``upstream``'s /dicom-web/ on the same origin."""
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


def load_viewer(
    browser: Any,
    origin: str,
    study_uid: str,
    n_frames: int,
    *,
    throttle: bool,
    wait_all: bool,
    timeout: float,
    token: str | None = None,
) -> Load:
    """Open the viewer on a fresh context and time it (see the module docstring)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    load = Load()
    # OHIF registers a service worker: blocked, so that every load starts equally cold and every request
    # is the page's own (under the page's network emulation).
    context = browser.new_context(viewport={"width": 1280, "height": 800}, service_workers="block")
    try:
        page = context.new_page()
        page.add_init_script("performance.setResourceTimingBufferSize(100000)")
        if throttle:
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", THROTTLE)
        starts: list[float] = []  # epoch ms of each finished DICOMweb request's start
        frame_ends: list[float] = []
        status: dict[int, int] = {}
        pending: set[int] = set()
        last_change = [time.monotonic()]

        # Other files the page (or a worker) asks for between its first DICOMweb request and the first
        # drawn slice (decoders, code chunks): they count in both times, so the notes list them.
        drawn_flag = [False]
        late: dict[int, str] = {}  # key 0: a DICOMweb request has been seen

        def on_request(request: Any) -> None:
            if "/frames/" in request.url:
                pending.add(id(request))
            if "/dicom-web/" in request.url:
                late.setdefault(0, "")
            elif late and not drawn_flag[0]:
                late[id(request)] = request.url.rsplit("/", 1)[-1].split("?")[0]

        def on_response(response: Any) -> None:
            name = late.get(id(response.request))
            if name:
                size = int(response.headers.get("content-length") or 0)
                load.late_files.append((name, size))
            if "/dicom-web/" in response.url:
                status[id(response.request)] = response.status
                if "/frames/" in response.url and response.status == 200:
                    kind = _transfer_syntax(response.headers.get("content-type", ""))
                    encoding = response.headers.get("content-encoding")
                    load.frame_types[kind + (f", Content-Encoding {encoding}" if encoding else "")] += 1

        def on_finished(request: Any) -> None:
            if "/dicom-web/" not in request.url:
                return
            timing = request.timing
            starts.append(timing["startTime"])
            code = status.get(id(request), 0)
            if code >= 400:
                load.problems.append(f"HTTP {code} {request.url}")
            if "/frames/" in request.url:
                pending.discard(id(request))
                last_change[0] = time.monotonic()
                if code == 200:
                    frame_ends.append(timing["startTime"] + timing["responseEnd"])

        def on_failed(request: Any) -> None:
            if "/dicom-web/" in request.url:
                load.problems.append(f"failed {request.url}: {request.failure}")
            pending.discard(id(request))

        page.on("request", on_request)
        page.on("response", on_response)
        page.on("requestfinished", on_finished)
        page.on("requestfailed", on_failed)
        deadline = time.monotonic() + timeout
        url = f"{origin}/viewer?StudyInstanceUIDs={study_uid}" + (f"&token={quote(token, safe='')}" if token else "")
        page.goto(url, wait_until="commit", timeout=timeout * 1000)
        try:
            drawn = page.wait_for_function(DRAWN_AT, polling=50, timeout=timeout * 1000).json_value()
        except PlaywrightTimeout:
            load.problems.append(f"viewport not drawn within {timeout:.0f} s")
            return load
        if starts:
            load.first_slice = (drawn - min(starts)) / 1000
            if frame_ends:
                load.first_frame = (min(frame_ends) - min(starts)) / 1000
        drawn_flag[0] = True
        if not wait_all:
            return load
        quiet = 8.0 if throttle else 4.0  # no frame answer for this long and none pending: OHIF is done
        while time.monotonic() < deadline:
            if len(frame_ends) >= n_frames:
                break
            if not pending and time.monotonic() - last_change[0] > quiet:
                break
            page.wait_for_timeout(100)
        load.frames_ok = len(frame_ends)
        load.frame_bytes = int(page.evaluate(FRAME_BYTES))
        load.complete = len(frame_ends) >= n_frames
        if frame_ends and starts:
            load.all_frames = (max(frame_ends) - min(starts)) / 1000
        if time.monotonic() >= deadline and not load.complete:
            load.problems.append(f"{len(frame_ends)} of {n_frames} frames after {timeout:.0f} s")
        return load
    finally:
        context.close()


def compare(
    workdir: Path,
    upstreams: dict[str, str],
    study_uid: str,
    n_frames: int,
    *,
    runs: int = 3,
    throttled_runs: int = 1,
    throttled_all_frames: bool = True,
    log: Callable[[str], None] = print,
    tokens: dict[str, str] | None = None,
    loopback_only: Collection[str] = (),
) -> list[Result]:
    """Four results (first slice / all frames, loopback / throttled) for the servers in ``upstreams``.

    ``tokens``: a bearer token per server that needs one (see the module docstring). Servers in
    ``loopback_only`` are left out of the throttled loads.
    """
    conditions = [("loopback", False, runs, True), ("20 Mbit/s, 40 ms", True, throttled_runs, throttled_all_frames)]
    results: list[Result] = []
    for cond, _, _, _ in conditions:
        results.append(Result(f"OHIF {OHIF_VERSION} in chromium: first slice drawn ({cond})"))
        results.append(Result(f"OHIF {OHIF_VERSION} in chromium: all {n_frames} frames received ({cond})"))
    reason = unavailable()
    if reason is not None:
        for result in results:
            result.skipped = reason
        return results
    from playwright.sync_api import sync_playwright

    fronts: dict[str, Server] = {}
    try:
        for name, upstream in upstreams.items():
            try:
                fronts[name] = start_front(workdir, name, upstream)
            except PeerError as exc:
                for result in results:
                    result.errors[name] = f"nginx in front: {exc}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
            try:
                for index, (cond, throttle, n_runs, wait_all) in enumerate(conditions):
                    first, every = results[2 * index], results[2 * index + 1]
                    if not wait_all:
                        every.skipped = "skipped: --browser-throttled-first-only"
                    now = {n: f for n, f in fronts.items() if not (throttle and n in loopback_only)}
                    _measure(
                        browser, now, study_uid, n_frames, cond, throttle, n_runs, wait_all, first, every, log,
                        tokens or {},
                    )  # fmt: skip
            finally:
                browser.close()
    finally:
        for server in fronts.values():
            server.stop()
    return results


def _measure(
    browser: Any,
    fronts: dict[str, Server],
    study_uid: str,
    n_frames: int,
    cond: str,
    throttle: bool,
    n_runs: int,
    wait_all: bool,
    first: Result,
    every: Result,
    log: Callable[[str], None],
    tokens: dict[str, str],
) -> None:
    timeout = 300.0 if throttle else 120.0
    seen: dict[str, list[Load]] = {name: [] for name in fronts}
    for run in range(n_runs):
        for name, front in fronts.items():  # alternate the servers run by run
            if name in first.errors:
                continue
            start = time.monotonic()
            try:
                load = load_viewer(
                    browser, front.url, study_uid, n_frames, throttle=throttle, wait_all=wait_all, timeout=timeout,
                    token=tokens.get(name),
                )  # fmt: skip
            except Exception as exc:  # a browser or Playwright failure: report it in the cell
                first.errors[name] = every.errors[name] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            seen[name].append(load)
            log(
                f"OHIF {cond} run {run + 1}/{n_runs} {name}: first frame answer {_s(load.first_frame)}, first slice "
                f"{_s(load.first_slice)}, {load.frames_ok} frames in {_s(load.all_frames)}, "
                f"{time.monotonic() - start:.1f} s wall" + (f"; problems: {load.problems[:3]}" if load.problems else "")
            )
            refused = [p for p in load.problems if p.startswith(("HTTP 401", "HTTP 403"))]
            if name in tokens and refused:  # a request went without the token, or the token did not work
                first.errors[name] = every.errors[name] = f"{len(refused)} refused: {refused[0]}"[:200]
            elif load.first_slice is None:
                first.errors[name] = "; ".join(load.problems[:2]) or "no DICOMweb request seen"
            else:
                first.samples.setdefault(name, []).append(load.first_slice)
            if wait_all and not (name in tokens and refused):
                if load.all_frames is None:
                    every.errors[name] = "; ".join(load.problems[:2]) or "no frame received"
                else:
                    every.samples.setdefault(name, []).append(load.all_frames)
    for name, loads in seen.items():
        if not loads:
            continue
        types = Counter[str]()
        for load in loads:
            types.update(load.frame_types)
        counts = sorted({load.frames_ok for load in loads})
        kinds = ", ".join(f"{t} ×{n}" for t, n in types.most_common(3))
        wire = statistics.median(load.frame_bytes for load in loads) / 1e6
        note = f"{name} ({cond}): frame answers (200) per run {counts} of {n_frames}"
        note += f", {wire:.1f} MB on the wire; {kinds}"
        if wait_all and not all(load.complete for load in loads):
            note += " — OHIF did not request every frame: the 'all frames' time is to its last frame answer"
        late = loads[0].late_files
        if late:
            listed = ", ".join(f"{n} ({b / 1e3:,.0f} kB)" for n, b in late[:8]) + (" …" if len(late) > 8 else "")
            note += f"; other files asked for after the first DICOMweb request, before the slice was drawn: {listed}"
        problems = sorted({p for load in loads for p in load.problems})
        if problems:
            note += f"; problems: {problems[:3]}"
        first.notes.append(note)


def _transfer_syntax(content_type: str) -> str:
    """The transfer-syntax parameter of a frame answer's Content-Type (inside or outside `type="…"`)."""
    match = re.search(r"transfer-syntax=([0-9.]+)", content_type)
    return f"transfer-syntax={match.group(1)}" if match else f"no transfer-syntax in {content_type[:60]!r}"


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"
