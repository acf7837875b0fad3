"""OHIF shows a CT stored in Aperture: cross-origin (CORS) and same-origin behind nginx under /pacs/.

Each test stores a synthetic CT with STOW-RS, waits for its HTJ2K copies (so OHIF decodes what a
settled server sends), opens `/viewer?StudyInstanceUIDs=…` in chromium and waits until the viewport
canvas holds a picture. Then no DICOMweb request may have failed: not in Aperture's access log, and
not in the browser (a CORS refusal never reaches the log).
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pydicom
import pytest

from aperture.dicom.htj2k import HTJ2K_LOSSLESS_RPCL
from aperture.dicom.synthetic import ct_study
from aperture.viewer.ohif import app_config
from tests.browser.conftest import OhifStatic, PageLog, access_log, require_ohif
from tests.conftest import ApertureServer, free_port, start_server
from tests.helpers import stow
from tests.server import running_nginx
from tests.server.test_nginx import documented_location

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.interop

SLICES = 20
OHIF_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"

# The largest viewport canvas, copied through a 2D canvas so that a WebGL canvas reads too: the share of
# lit pixels, the number of grey levels, and the mean grey of a patch at the centre of the picture and
# near the top-left corner of the (centred, square) image.
CANVAS_STATS = """() => {
  const canvases = [...document.querySelectorAll('canvas.cornerstone-canvas')].filter(c => c.width && c.height);
  if (!canvases.length) return null;
  const canvas = canvases.reduce((a, b) => (a.width * a.height >= b.width * b.height ? a : b));
  const [w, h] = [canvas.width, canvas.height];
  const copy = document.createElement('canvas');
  copy.width = w;
  copy.height = h;
  const context = copy.getContext('2d', {willReadFrequently: true});
  context.drawImage(canvas, 0, 0);
  const data = context.getImageData(0, 0, w, h).data;
  const levels = new Set();
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] + data[i + 1] + data[i + 2] > 30) lit++;
    levels.add(data[i]);
  }
  const patch = (x, y) => {
    let sum = 0;
    for (let dy = -7; dy <= 7; dy++) for (let dx = -7; dx <= 7; dx++) sum += data[4 * ((y + dy) * w + x + dx)];
    return sum / 225;
  };
  const [cx, cy, half] = [Math.round(w / 2), Math.round(h / 2), Math.min(w, h) / 2];
  return {
    width: w, height: h, lit: lit / (w * h), levels: levels.size,
    centre: patch(cx, cy), corner: patch(Math.round(cx - 0.85 * half), Math.round(cy - 0.85 * half)),
  };
}"""
# The phantom (aperture/dicom/synthetic.py) in its soft-tissue window (40/400): a body ellipse of soft
# tissue (+40 HU, mid-grey about 128, noise ±12 HU) with air (black) around it and dark lungs inside.
DRAWN = f"""() => {{
  const s = ({CANVAS_STATS})();
  return s && s.lit > 0.1 && s.levels > 16 && s.centre > 100 && s.centre < 155 && s.corner < 10 ? s : null;
}}"""


@pytest.fixture(scope="module")
def ct() -> tuple[str, list[bytes]]:
    parts = list(ct_study(n_slices=SLICES, rows=256, cols=256, patient_id="OHIF-CT", patient_name="Ohif^Ct"))
    return str(pydicom.dcmread(io.BytesIO(parts[0])).StudyInstanceUID), parts


def store(server: ApertureServer, parts: list[bytes]) -> None:
    """STOW-RS the study, then wait until every frame answers OHIF's request with the HTJ2K copy."""
    with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
        answer = stow(http, parts)
        assert answer.status_code == 200, answer.text
        urls = [item["00081190"]["Value"][0] for item in answer.json()["00081199"]["Value"]]
        deadline = time.monotonic() + 60
        while urls:
            ctype = http.get(f"{urls[0]}/frames/1", headers={"Accept": OHIF_FRAMES}).headers["content-type"]
            if HTJ2K_LOSSLESS_RPCL in ctype:
                urls.pop(0)
            elif time.monotonic() > deadline:
                pytest.fail(f"no HTJ2K copy of {urls[0]} after 60 s: {ctype}")
            else:
                time.sleep(0.2)


def shows_the_study(page: Page, viewer: str, dicomweb: str, server: ApertureServer, screenshot: Path) -> None:
    """Open the viewer, wait until the CT is drawn, then check that no DICOMweb request failed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    log = PageLog()
    log.watch(page)
    page.goto(viewer)
    try:
        page.wait_for_function(DRAWN, timeout=60_000, polling=250)
    except PlaywrightTimeout:
        page.screenshot(path=screenshot)
        stats = page.evaluate(CANVAS_STATS)
        pytest.fail(f"the CT was not drawn in 60 s (canvas: {stats}); screenshot {screenshot}\n{log.report()}")
    try:  # let the prefetch of the other slices end before reading the logs
        page.wait_for_load_state("networkidle", timeout=20_000)
    except PlaywrightTimeout:
        pass
    page.screenshot(path=screenshot)

    assert not log.problems(dicomweb), log.report()
    frames = [url for status, url in log.answers if url.startswith(dicomweb) and "/frames/" in url]
    assert frames, log.report()
    time.sleep(0.5)  # a line is written just after its answer is sent
    requests = [match for match in access_log(server) if "/dicom-web/" in match["target"]]
    assert any("/metadata" in match["target"] for match in requests), [match.group(0) for match in requests]
    refused = [match.group(0) for match in requests if int(match["status"]) >= 400]
    assert not refused, "\n".join(refused) + "\n" + log.report()


def test_ohif_on_another_origin_shows_a_ct(
    tmp_path: Path, ohif_static: OhifStatic, page: Page, ct: tuple[str, list[bytes]]
) -> None:
    study, parts = ct
    config = f'[server]\naccess_log = true\ncors_origins = ["{ohif_static.origin}"]\n'
    aperture = start_server(tmp_path / "data", config=config)
    try:
        store(aperture, parts)
        ohif_static.configure(aperture.dicomweb)
        viewer = f"{ohif_static.origin}/viewer?StudyInstanceUIDs={study}"
        shows_the_study(page, viewer, aperture.dicomweb, aperture, tmp_path / "ohif-cors.png")
    finally:
        aperture.stop()


def nginx_conf(root: Path, port: int, upstream: int, dist: Path) -> str:
    """OHIF at / (its app-config.js from `root`) and Aperture at /pacs/ with the block of docs/dicomweb.md."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temps = "".join(f"    {kind}_temp_path {root}/{kind};\n" for kind in kinds)
    return f"""{user}worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
{temps}    server {{
        listen 127.0.0.1:{port};
{documented_location(upstream)}
        location = /app-config.js {{
            alias {root}/app-config.js;
        }}
        location / {{
            root {dist};
            try_files $uri /index.html;
        }}
    }}
}}
"""


@pytest.fixture
def nginx_in_front(tmp_path: Path) -> Iterator[tuple[ApertureServer, str]]:
    """(Aperture trusting 127.0.0.1, nginx's origin) with OHIF at / and Aperture at /pacs/."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.fail("nginx is not installed: `make install` installs the Debian package nginx (as root)")
    dist = require_ohif()
    root = tmp_path / "nginx"
    root.mkdir()
    aperture = start_server(tmp_path / "data", config='[server]\naccess_log = true\ntrusted_proxies = ["127.0.0.1"]\n')
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    (root / "app-config.js").write_text(app_config(f"{origin}/pacs/dicom-web"))
    try:
        with running_nginx(binary, root, nginx_conf(root, port, aperture.port, dist), f"{origin}/pacs/healthz"):
            yield aperture, origin
    finally:
        aperture.stop()


def test_ohif_behind_nginx_under_a_prefix_shows_a_ct(
    tmp_path: Path, nginx_in_front: tuple[ApertureServer, str], page: Page, ct: tuple[str, list[bytes]]
) -> None:
    aperture, origin = nginx_in_front
    study, parts = ct
    store(aperture, parts)
    viewer = f"{origin}/viewer?StudyInstanceUIDs={study}"
    shows_the_study(page, viewer, f"{origin}/pacs/dicom-web", aperture, tmp_path / "ohif-nginx.png")
