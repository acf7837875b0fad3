"""Real servers on 127.0.0.1 in fixtures: `aperture serve` runs as a subprocess on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApertureServer:
    process: subprocess.Popen[bytes]
    port: int
    data: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group: granian's worker processes die with the server."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if sig == signal.SIGKILL:
            return
        try:  # workers left behind by an unclean exit
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_server(data: Path, *, config: str | None = None, log_name: str = "server.log") -> ApertureServer:
    """Start `aperture serve --auth none` on a free port and wait until /healthz answers."""
    return start_command(["serve", "--data", str(data), "--auth", "none"], data, config=config, log_name=log_name)


def start_command(
    arguments: list[str],
    data: Path,
    *,
    config: str | None = None,
    log_name: str = "server.log",
    config_name: str = "config.toml",
) -> ApertureServer:
    """Start `aperture <arguments> --host 127.0.0.1 --port <free>` and wait until /healthz answers.

    `config`, when given, is written next to `data` and passed with --config; the output goes to a
    log next to `data`, which an error message quotes.
    """
    port = free_port()
    command = [sys.executable, "-m", "aperture", *arguments, "--host", "127.0.0.1", "--port", str(port)]
    if config is not None:
        config_path = data.parent / f"{data.name}-{config_name}"
        config_path.write_text(config)
        command += ["--config", str(config_path)]
    log = data.parent / f"{data.name}-{log_name}"
    handle = open(log, "ab")
    process = subprocess.Popen(
        command, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True
    )
    server = ApertureServer(process, port, data, log)
    name = " ".join(["aperture", *arguments[:2]]) if arguments[0] == "ehr" else "aperture serve"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not answer /healthz in 30 s:\n{log.read_text()}")


SHARED_CONFIG = "[server]\naccess_log = true\n[dicomweb]\nallow_delete = true\n[store]\nhtj2k_copies = false\n"


def shared_server(tmp_path_factory: pytest.TempPathFactory, database_url: str | None = None) -> ApertureServer:
    """One server for tests that only add their own studies and read them back.

    HTJ2K copies are off: frame answers to `transfer-syntax=*` stay the stored bytes, whenever a test runs.
    """
    config = SHARED_CONFIG + (f'database_url = "{database_url}"\n' if database_url else "")
    return start_server(tmp_path_factory.mktemp("shared") / "data", config=config)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApertureServer]:
    srv = shared_server(tmp_path_factory)
    yield srv
    srv.stop()


def database_config(request: pytest.FixtureRequest, backend: str, name: str, *, store: str = "") -> str:
    """A `[store]` table that puts a server's index in `backend` ("sqlite", the default, or "postgresql").

    `store` holds other `[store]` lines the test needs (TOML allows one table of a name).
    """
    lines = store
    if backend != "sqlite":
        lines += f'database_url = "{request.getfixturevalue("postgres").create_database(name)}"\n'
    return f"[store]\n{lines}" if lines else ""


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL cluster for the whole run (see tests/postgres.py)."""
    from tests.postgres import Cluster

    cluster = Cluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ApertureServer]:
    """A server of its own, for tests that need an empty store or change configuration."""
    srv = start_server(tmp_path / "data")
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ApertureServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
        yield http


@pytest.fixture(scope="session")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`aperture demo` running for the whole session: the EHR sandbox and the imaging server with --auth smart."""
    from tests.stack import start_demo, stop_demo

    stack = start_demo(tmp_path_factory.mktemp("demo-stack") / "demo")
    try:
        yield stack
    finally:
        stop_demo(stack.process)
