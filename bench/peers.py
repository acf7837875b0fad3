"""Start and stop the servers the benchmark compares: Aperture, Orthanc (+ DICOMweb plugin), nginx.

Each server runs as a child process in its own session (so it can be stopped as a process group,
and a Ctrl-C in the terminal reaches only the benchmark, which then stops its children in order),
listens on 127.0.0.1 on a free port, keeps all its files (config, data, logs) in the benchmark's
temporary directory, and is stopped by :meth:`Server.stop`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
ORTHANC_BIN = Path("/usr/sbin/Orthanc")
# Debian's orthanc-dicomweb installs the plugin here (a symlink to /usr/lib/orthanc/libOrthancDicomWeb.so.*).
# The plugin *file* is named rather than its folder, which also holds the ModalityWorklists and
# ServeFolders plugins that the benchmark does not need.
ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
NGINX_BIN = "nginx"


class PeerError(RuntimeError):
    """A server could not be started or did not become ready.

    ``str(error)`` is one line saying why; ``detail`` adds the log file and its last lines.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass
class Server:
    """A running child server process."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str  # scheme://host:port, no trailing slash
    log: Path
    version: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def last_log_line(self) -> str:
        """The most telling line of the log: the last one naming an error, else the last one."""
        lines = [line.strip() for line in self.log_tail(400).splitlines() if line.strip()]
        errors = [line for line in lines if re.search(r"(Error|Exception|error:|\bE\d{4} )", line)]
        best = errors[-1] if errors else lines[-1] if lines else "its log is empty"
        return best[:200]

    def stop(self, timeout: float = 15.0) -> None:
        """Send SIGTERM to the server's process group, then SIGKILL if it is still there."""
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(name: str, argv: Sequence[str], log: Path, url: str, cwd: Path) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=cwd, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise PeerError(f"{name}: cannot run {argv[0]}: {exc}") from exc
    return Server(name=name, proc=proc, url=url, log=log)


def wait_ready(
    server: Server,
    path: str,
    timeout: float,
    ok: Callable[[httpx.Response], bool] | None = None,
    method: str = "GET",
) -> httpx.Response:
    """Poll ``server.url + path`` until it answers 200 (and ``ok``), the process dies, or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if not server.alive():
                raise PeerError(
                    f"{server.name} exited with status {server.proc.returncode} before it was ready"
                    f" ({server.last_log_line()})",
                    f"log {server.log}:\n{server.log_tail()}",
                )
            try:
                resp = client.request(method, server.url + path)
                if resp.status_code == 200 and (ok is None or ok(resp)):
                    return resp
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
    server.stop()
    raise PeerError(
        f"{server.name} not ready after {timeout:.0f} s ({last})", f"log {server.log}:\n{server.log_tail()}"
    )


def aperture_command() -> list[str]:
    """The ``aperture`` console script of the repository's venv, else ``python -m aperture``."""
    script = REPO / ".venv/bin/aperture"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "aperture"]


def start_aperture(
    workdir: Path,
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
    *,
    name: str = "Aperture",
    data: Path | None = None,
    port: int | None = None,
    auth_config: Path | None = None,
) -> Server:
    """Run ``aperture serve`` on ``data`` (default: a fresh ``workdir/aperture/data``); wait for ``/healthz``.

    ``--auth none`` unless ``auth_config`` is given: then ``--auth smart --config auth_config``
    (bench/auth.py writes that file). Its files other than the data go to ``workdir/<name>/``.
    """
    port = port or free_port()
    folder = workdir / name.lower()
    data = data or folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    auth = ["--auth", "none"] if auth_config is None else ["--auth", "smart", "--config", str(auth_config)]
    argv = [
        *aperture_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
        "--data", str(data), *auth, *extra_args,
    ]  # fmt: skip
    server = _spawn(name, argv, folder / "aperture.log", f"http://127.0.0.1:{port}", REPO)
    wait_ready(server, "/healthz", timeout)
    try:
        from aperture import __version__

        server.version = __version__
    except ImportError:
        server.version = "?"
    return server


def orthanc_config(workdir: Path, http_port: int) -> dict[str, object]:
    """The Orthanc configuration used by the benchmark (Orthanc defaults for everything not listed)."""
    storage = workdir / "orthanc" / "storage"
    return {
        "Name": "aperture-bench",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomServerEnabled": False,  # no DIMSE listener: nothing in the benchmark uses it
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,  # WADO-URI (PS3.18 §9) is measured at /wado, as in Aperture
            "WadoRoot": "/wado",
            # "Full" is the plugin's default: /metadata reads every instance from the storage area.
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
    }


def start_orthanc(workdir: Path, timeout: float = 60.0) -> Server:
    """Run the packaged Orthanc with the DICOMweb plugin on a fresh storage area; wait for ``/system``."""
    if not ORTHANC_BIN.exists():
        raise PeerError(f"{ORTHANC_BIN} not found: install the Debian packages orthanc and orthanc-dicomweb")
    if not ORTHANC_DICOMWEB_PLUGIN.exists():
        raise PeerError(f"{ORTHANC_DICOMWEB_PLUGIN} not found: install the Debian package orthanc-dicomweb")
    port = free_port()
    odir = workdir / "orthanc"
    (odir / "storage").mkdir(parents=True, exist_ok=True)
    config = odir / "orthanc.json"
    config.write_text(json.dumps(orthanc_config(workdir, port), indent=2))
    server = _spawn("Orthanc", [str(ORTHANC_BIN), str(config)], odir / "orthanc.log", f"http://127.0.0.1:{port}", odir)
    system = wait_ready(server, "/system", timeout).json()
    server.version = str(system.get("Version", "?"))
    plugin = _plugin_version(server.url)
    if plugin is None:
        server.stop()
        raise PeerError("Orthanc started without its DICOMweb plugin", f"log {server.log}:\n{server.log_tail()}")
    server.version += f" + DICOMweb {plugin}"
    return server


def _plugin_version(url: str) -> str | None:
    try:
        resp = httpx.get(url + "/plugins/dicom-web", timeout=5.0)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    return str(resp.json().get("Version", "?"))


def nginx_config(prefix: Path, port: int, root: Path, location: str, content_type: str) -> str:
    """An nginx config serving ``root`` statically with sendfile; ``location`` gets ``content_type``."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = prefix / "temp"
    quoted_type = content_type.replace("\\", "\\\\").replace("'", "\\'")
    return f"""# Written by bench/peers.py: a static file server, the ceiling for full-study retrieve.
{user}worker_processes auto;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = {location} {{
            default_type '{quoted_type}';
        }}
    }}
}}
"""


def start_nginx(workdir: Path, static_file: Path, content_type: str, timeout: float = 30.0) -> Server:
    """Serve ``static_file`` (its folder is the document root) with nginx; wait until it is served."""
    binary = shutil.which(NGINX_BIN) or shutil.which(NGINX_BIN, path="/usr/sbin:/sbin")
    if binary is None:
        raise PeerError("nginx not found: install the Debian package nginx")
    port = free_port()
    prefix = workdir / "nginx"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "temp" / sub).mkdir(parents=True, exist_ok=True)
    root = static_file.resolve().parent
    location = "/" + static_file.name
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(prefix, port, root, location, content_type))
    argv = [binary, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log"), "-g", "daemon off;"]
    server = _spawn("nginx", argv, prefix / "nginx.stdout.log", f"http://127.0.0.1:{port}", prefix)
    server.log = prefix / "error.log"
    wait_ready(server, location, timeout, method="HEAD")
    version = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stderr.strip()
    server.version = version.rsplit("/", 1)[-1] if "/" in version else version
    return server
