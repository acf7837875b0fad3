"""`aperture serve` and `aperture ehr serve` as processes: a busy port is refused, every process ends
with the server, and the console shows what a person needs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import alive, descendants, wait_until_gone
from tests.conftest import ApertureServer, start_command

STOP_BOUND = 30  # seconds; the servers give workers 5 s, then kill them


def second_start(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `aperture <arguments>` expecting it to refuse to start; a start that serves is killed after 60 s."""
    command = [sys.executable, "-m", "aperture", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"aperture {' '.join(arguments[:2])} did not refuse the busy port:\n{output}")
    return subprocess.CompletedProcess(command, process.returncode, output)


def test_serve_on_a_busy_port_is_a_start_up_error(fresh_server: ApertureServer, tmp_path: Path) -> None:
    result = second_start("serve", "--auth", "none", "--data", str(tmp_path / "second"),
                          "--host", "127.0.0.1", "--port", str(fresh_server.port))  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert f"127.0.0.1:{fresh_server.port} is already in use" in result.stdout
    assert "--port" in result.stdout and "Listening" not in result.stdout


def test_ehr_serve_on_a_busy_port_is_a_start_up_error(tmp_path: Path) -> None:
    data = tmp_path / "ehr"
    first = start_command(["ehr", "serve", "--data", str(data)], data, log_name="ehr.log")
    try:
        result = second_start("ehr", "serve", "--data", str(tmp_path / "second"),
                              "--host", "127.0.0.1", "--port", str(first.port))  # fmt: skip
    finally:
        first.stop()
    assert result.returncode == 1, result.stdout
    assert f"127.0.0.1:{first.port} is already in use" in result.stdout
    assert not (tmp_path / "second" / "serving.json").exists()  # nothing was written for the refused start


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ApertureServer]:
    data = tmp_path / "data"
    server = start_command(["serve", "--data", str(data), "--auth", "none", "--workers", "2"], data)
    yield server
    server.stop(signal.SIGKILL)
    try:  # whatever the test left of the process group: orphaned workers included
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tree(server: ApertureServer) -> set[int]:
    """The server's processes: granian's main, its workers, their forkservers and parser processes."""
    tree = descendants(server.process.pid)
    assert len(tree) >= 4, tree  # two workers, each with a forkserver and at least one parser process
    return tree


def _slow_upload(server: ApertureServer) -> socket.socket:
    """A STOW-RS request whose body is still arriving: a worker is busy with it."""
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn.sendall(
        b"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\n'
        b"Content-Length: 1000000000\r\n\r\n--b\r\nContent-Type: application/dicom\r\n\r\n" + bytes(1 << 20)
    )
    return conn


def test_sigterm_ends_every_process_even_with_a_request_under_way(two_workers: ApertureServer) -> None:
    tree = _tree(two_workers)
    with _slow_upload(two_workers):
        os.kill(two_workers.process.pid, signal.SIGTERM)
        left = wait_until_gone(tree | {two_workers.process.pid}, STOP_BOUND)
    assert not left, f"still running {STOP_BOUND} s after SIGTERM: {sorted(left)}"


def test_sighup_ends_the_server(two_workers: ApertureServer) -> None:
    tree = _tree(two_workers)
    os.kill(two_workers.process.pid, signal.SIGHUP)
    left = wait_until_gone(tree | {two_workers.process.pid}, STOP_BOUND)
    assert not left, f"still running {STOP_BOUND} s after SIGHUP: {sorted(left)}"


def test_workers_end_when_the_server_process_is_killed(two_workers: ApertureServer) -> None:
    tree = _tree(two_workers)
    os.kill(two_workers.process.pid, signal.SIGKILL)
    two_workers.process.wait(timeout=10)
    left = wait_until_gone(tree, STOP_BOUND)
    assert not left, f"still running {STOP_BOUND} s after the server process was killed: {sorted(alive(left))}"


def test_start_up_output_is_what_a_person_needs(fresh_server: ApertureServer) -> None:
    fresh_server.stop()
    text = fresh_server.log.read_text(errors="replace")
    assert f"Aperture DICOMweb: http://127.0.0.1:{fresh_server.port}/dicom-web" in text
    assert "alembic" not in text, text
    assert not re.search(r"\w*Warning: ", text), text


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ("", "'auth.ehr_issuer' is required"),
        ('[auth]\nehr_issuer = "http://127.0.0.1:9/fhir"\n', "'auth.audience' is required"),
        (
            '[auth]\nehr_issuer = "http://127.0.0.1:9/fhir"\naudience = "http://127.0.0.1:8080/fhir"\n'
            'client_id = "imaging-server"\nclient_secret_file = "/nonexistent/secret"\n',
            "'auth.client_secret_file' /nonexistent/secret cannot be read",
        ),
    ],
    ids=["no-auth-table", "no-audience", "unreadable-secret"],
)
def test_smart_without_what_it_needs_names_it_and_starts_nothing(tmp_path: Path, config: str, named: str) -> None:
    """`--auth smart` is the default: a server that cannot ask the EHR about tokens must not start at all."""
    path = tmp_path / "aperture.toml"
    path.write_text(config)
    done = subprocess.run(
        [sys.executable, "-m", "aperture", "serve", "--data", str(tmp_path / "data"), "--port", "9",
         "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "docs/authorization.md" in done.stderr, done.stderr
    assert not (tmp_path / "data").exists()
