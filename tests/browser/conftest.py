"""A real viewer in a real browser: the prebuilt OHIF app in Debian's chromium, driven by Playwright.

`make install` provides both: the Debian package `chromium` (as root on Debian) and OHIF's `dist/`,
unpacked from `npm pack @ohif/app@<version>` into `.cache/ohif/<version>/dist` (git-ignored). The
cache is only read: each test writes its own `app-config.js` and serves it in place of the shipped one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from aperture.viewer.ohif import app_config
from tests.conftest import ApertureServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

OHIF_VERSION = "3.13.2"  # keep in step with OHIF_VERSION in the Makefile
OHIF_DIST = Path(__file__).parents[2] / ".cache" / "ohif" / OHIF_VERSION / "dist"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ACCESS_LINE = re.compile(
    r" INFO aperture\.access: (?P<client>\S+) (?P<method>\S+) (?P<target>\S+) (?P<status>\d+) \d+ "
)


class StaticHandler(SimpleHTTPRequestHandler):
    """Files of a folder, plus one file the test writes (`GENERATED`: a config), never cached, never logged."""

    GENERATED = "/config.json"
    GENERATED_TYPE = "application/json"
    server: StaticServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == self.GENERATED:
            body = self.server.generated.encode()
            self.send_response(200)
            self.send_header("Content-Type", self.GENERATED_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticServer(ThreadingHTTPServer):
    daemon_threads = True
    generated = ""  # the body of the handler's GENERATED file


@dataclass
class StaticSite:
    """A folder served at the root of http://127.0.0.1:<its own port> by a thread of the test process."""

    httpd: StaticServer
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _OhifHandler(StaticHandler):
    """Files of OHIF's dist, the generated app-config.js, and index.html for any other path (SPA routes)."""

    GENERATED = "/app-config.js"
    GENERATED_TYPE = "text/javascript"
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm", ".mjs": "text/javascript"}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != self.GENERATED and not Path(self.translate_path(path)).is_file():
            self.path = "/index.html"
        super().do_GET()


class OhifStatic(StaticSite):
    """OHIF served at the root of http://127.0.0.1:<port>."""

    def configure(self, dicomweb: str) -> None:
        self.httpd.generated = app_config(dicomweb)


def require_ohif() -> Path:
    if not (OHIF_DIST / "index.html").is_file():
        pytest.fail(f"OHIF {OHIF_VERSION} is not in {OHIF_DIST}: `make install` fetches it (npm pack @ohif/app)")
    return OHIF_DIST


@pytest.fixture
def ohif_static() -> Iterator[OhifStatic]:
    """A static server for OHIF on a free port; call `configure(dicomweb)` before the page loads."""
    static = OhifStatic(StaticServer(("127.0.0.1", 0), partial(_OhifHandler, directory=str(require_ohif()))))
    yield static
    static.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one module. Playwright's sync API leaves its asyncio loop marked as running in this
    thread while it is open, so it must be closed before other tests call `asyncio.run`."""
    from tests.browser.launch import chromium  # here: launch.py imports this module's constants

    with chromium() as found:
        yield found


@dataclass
class PageLog:
    """What the browser saw while the viewer ran: console messages, failed requests, HTTP answers."""

    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    answers: list[tuple[int, str]] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.on("requestfailed", lambda request: self.failed.append(f"{request.url} {request.failure}"))
        page.on("response", lambda response: self.answers.append((response.status, response.url)))

    def problems(self, prefix: str) -> list[str]:
        """Requests to URLs starting with `prefix` that failed in the browser or were answered 4xx/5xx."""
        errors = [f"{status} {url}" for status, url in self.answers if status >= 400 and url.startswith(prefix)]
        return [line for line in self.failed if line.startswith(prefix)] + errors

    def report(self) -> str:
        errors = [f"{status} {url}" for status, url in self.answers if status >= 400]
        return "\n".join(["console:", *self.console[-60:], "failed requests:", *self.failed, "HTTP errors:", *errors])


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def access_log(server: ApertureServer) -> list[re.Match[str]]:
    """Aperture's access log lines, parsed (see aperture/logs.py for the format)."""
    lines = server.log.read_text(errors="replace").splitlines()
    return [match for line in lines if (match := ACCESS_LINE.search(line))]
