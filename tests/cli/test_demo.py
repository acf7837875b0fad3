"""`aperture demo` starts the server, loads the samples through STOW-RS, and prints working URLs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def test_demo_loads_samples_and_prints_urls(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "aperture", "demo", "--port", str(port), "--data", str(tmp_path / "demo"), "--no-wait"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    stored = int(re.search(r"\((\d+) sample instances stored", result.stdout).group(1))  # type: ignore[union-attr]
    assert stored >= 90
    assert f"http://127.0.0.1:{port}/dicom-web/studies" in result.stdout
    assert re.search(r"/studies/[0-9.]+/metadata", result.stdout)
    assert (tmp_path / "demo" / "index.sqlite3").exists()
