"""Behind real nginx: the location block documented in docs/dicomweb.md ("Browsers and proxies").

nginx serves Aperture under /pacs/ and strips the prefix. Every URL Aperture writes must lead back
through nginx, so following them is the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import ApertureServer, free_port, start_server
from tests.helpers import make_instance, stow
from tests.server import running_nginx

pytestmark = pytest.mark.interop

DOCS = Path(__file__).parents[2] / "docs" / "dicomweb.md"


def documented_location(upstream: int) -> str:
    """The ```nginx block of docs/dicomweb.md, with Aperture's port in place of 8080."""
    text = DOCS.read_text(encoding="utf-8")
    block = text.split("```nginx\n", 1)[1].split("```", 1)[0]
    assert "proxy_pass http://127.0.0.1:8080/;" in block
    return block.replace("127.0.0.1:8080", f"127.0.0.1:{upstream}")


def nginx_conf(prefix: Path, port: int, upstream: int) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "".join(
        f"    {kind}_temp_path {prefix}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temps}    server {{
        listen 127.0.0.1:{port};
{documented_location(upstream)}    }}
}}
"""


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApertureServer, str]]:
    """(Aperture trusting 127.0.0.1, the external base URL through nginx: http://127.0.0.1:PORT/pacs)."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.fail("nginx is not installed: install the Debian package nginx (see docs/development.md)")
    root = tmp_path_factory.mktemp("nginx")
    aperture = start_server(root / "data", config='[server]\ntrusted_proxies = ["127.0.0.1"]\n')
    port = free_port()
    external = f"http://127.0.0.1:{port}/pacs"
    try:
        with running_nginx(binary, root, nginx_conf(root, port, aperture.port), f"{external}/healthz"):
            yield aperture, external
    finally:
        aperture.stop()


def test_urls_written_behind_nginx_lead_back_through_it(behind_nginx: tuple[ApertureServer, str]) -> None:
    _, external = behind_nginx
    ids = {"study": generate_uid(), "series": generate_uid(), "sop": generate_uid()}
    part = make_instance(study=ids["study"], series=ids["series"], sop=ids["sop"], rows=64, columns=64)
    with httpx.Client(base_url=f"{external}/dicom-web", timeout=30) as http:
        stored = stow(http, [part])
        assert stored.status_code == 200, stored.text
        assert stored.json()["00081190"]["Value"] == [f"{external}/dicom-web/studies/{ids['study']}"]
        (study,) = http.get("/studies", params={"StudyInstanceUID": ids["study"]}).json()
        assert study["00081190"]["Value"] == [f"{external}/dicom-web/studies/{ids['study']}"]
        (metadata,) = http.get(f"/studies/{ids['study']}/metadata").json()
        bulk = metadata["7FE00010"]["BulkDataURI"]
        assert bulk.startswith(f"{external}/dicom-web/studies/{ids['study']}/series/{ids['series']}/")
        pixels = http.get(bulk, headers={"Accept": "application/octet-stream"})
        assert pixels.status_code == 200
        assert len(pixels.content) == 64 * 64 * 2
