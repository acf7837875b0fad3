"""The demo stack as a test fixture: `aperture demo` running (EHR sandbox + imaging server with --auth smart).

End-to-end and attack tests drive the very stack a newcomer starts with `make demo`, through its
`demo.json`. Tokens are minted and clients registered in the test process against the demo's own
sandbox folder (the same functions `aperture ehr token` and `aperture ehr clients add` call).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port


@dataclass
class DemoStack:
    data: Path
    manifest: dict[str, Any]
    console: str
    process: subprocess.Popen[str]
    minted: list[str] = field(default_factory=list)

    @property
    def dicomweb(self) -> str:
        return str(self.manifest["imaging"]["dicomweb"])

    @property
    def imaging_fhir(self) -> str:
        return str(self.manifest["imaging"]["fhir"])

    @property
    def ehr_fhir(self) -> str:
        return str(self.manifest["ehr"]["fhir"])

    @property
    def ehr(self) -> str:
        return self.ehr_fhir.removesuffix("/fhir")

    def patient(self, patient_id: str) -> dict[str, Any]:
        return next(p for p in self.manifest["patients"] if p["id"] == patient_id)

    def _ehr_config(self) -> Any:
        from aperture.cli.ehr import SERVING_FILE
        from aperture.ehr.config import EhrConfig

        folder = self.data / "ehr"
        settings = json.loads((folder / SERVING_FILE).read_text(encoding="utf-8"))
        return EhrConfig(**{**settings, "data": folder})

    def token(self, client_id: str, scope: str, *, patient: str | None = None, user: str | None = None) -> str:
        """An access token from the demo's sandbox, as `aperture ehr token` mints it."""
        from aperture.ehr.mint import mint_token
        from aperture.ehr.store import open_store

        config = self._ehr_config()
        engine = open_store(config.data)
        try:
            answer = mint_token(engine, config, client_id=client_id, scope=scope, patient=patient, user=user)
        finally:
            engine.dispose()
        return str(answer["access_token"])

    def register(self, **registration: Any) -> tuple[str, str | None]:
        """Register a client at the demo's sandbox (`aperture ehr clients add`); (client_id, secret)."""
        from aperture.ehr.clients import register_client
        from aperture.ehr.store import open_store

        engine = open_store(self.data / "ehr")
        try:
            client, secret = register_client(engine, **registration)
        finally:
            engine.dispose()
        return client.client_id, secret


def start_demo(
    data: Path,
    timeout: float = 300,
    *,
    port: int | None = None,
    ehr_port: int | None = None,
    access_log: bool = False,
) -> DemoStack:
    """Start `aperture demo` (on free ports unless given) and read its console until it says it is ready."""
    port, ehr_port = port or free_port(), ehr_port or free_port()
    command = [sys.executable, "-m", "aperture", "demo", "--port", str(port), "--ehr-port", str(ehr_port),
               "--data", str(data), *(["--access-log"] if access_log else [])]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (line := process.stdout.readline()):
        output.append(line)
        if "Press Ctrl-C" in line:
            break
    console = "".join(output)
    if "Press Ctrl-C" not in console:
        stop_demo(process)
        raise RuntimeError(f"aperture demo did not start:\n{console}")
    manifest = json.loads((data / "demo.json").read_text(encoding="utf-8"))
    return DemoStack(data, manifest, console, process)


def stop_demo(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
