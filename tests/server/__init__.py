"""Tests of the edge layers around the application: CORS, trusted proxy headers, access log."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from aperture.config import Config
from aperture.server.app import create_app
from tests.conftest import ApertureServer


def access_lines(server: ApertureServer, needle: str, timeout: float = 10.0) -> list[str]:
    """The server's `aperture.access` log lines containing `needle`, waiting for at least one.

    The line is written after the response has been sent, so a client can read the answer a
    moment before its log line reaches the file.
    """
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            line
            for line in server.log.read_text(errors="replace").splitlines()
            if " aperture.access: " in line and needle in line
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


async def get_from_failing_app(config: Config, headers: dict[str, str]) -> httpx.Response:
    """GET /boom from `create_app(config)` with one extra route that raises (no lifespan needed)."""

    async def boom(request: Request) -> Response:
        raise RuntimeError("test failure")

    app = create_app(config)
    app.add_route("/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get("/boom", headers=headers)


@contextmanager
def running_nginx(binary: str, root: Path, conf_text: str, ready_url: str) -> Iterator[None]:
    """Run nginx with `conf_text` (prefix `root`) until the block ends; waits for `ready_url` to answer 200."""
    conf = root / "nginx.conf"
    conf.write_text(conf_text)
    out = open(root / "nginx.out", "ab")
    nginx = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log"), "-g", "daemon off;"],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if nginx.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start:\n{(root / 'error.log').read_text(errors='replace')}")
            time.sleep(0.05)
        yield
    finally:
        nginx.terminate()
        nginx.wait(timeout=15)
        out.close()
