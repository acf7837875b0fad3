"""What the fuzz tests of both servers share: the values that break parsers, peak memory, Hypothesis profiles.

The examples are derived from a fixed seed (`derandomize`), so CI runs the same cases each time;
HYPOTHESIS_PROFILE=explore searches afresh with ten times as many.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

from tests.conftest import ApertureServer

_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", deadline=None, derandomize=True, database=None, suppress_health_check=_QUIET)
settings.register_profile("explore", deadline=None, database=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(count: int) -> int:
    """`count` examples in CI, ten times as many when exploring."""
    return count * 10 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else count


# Values that broke parsers before, or that every parser must be ready for.
NASTY = [
    "", " ", "²", "¹", "¹,¹", "٣", "１", "-1", "-0", "+1", "0", "1.5", "1e309", "NaN", "inf",
    "99999999999999999999999999", "-99999999999999999999999999", str(2**63), str(2**64), str(-(2**63) - 1),
    "100000,100000", "15000,15000", "0,0", "-5,-5", "1,", ",1", "1,1,1,1,1", ",".join(["1"] * 5000),
    "9999-12-31", "99991231", "00010101", "2020-01-01", "20200101-", "-20200101", "20200101-20190101",
    "0001-01-01T00:00:00+14:00", "235960", "240000", "*", "?", "**", "\\", "\\\\", "a\\b", "%", "%00", "\x00",
    "\u202e", "\ud7ff", "ÄÖÜ^ß", "李^小龍", "=?utf-8?", "' OR 1=1 --", "../../etc/passwd", "/", "a" * 5000,
    "1.2.840.10008.1.2.1", "true", "false", "yes", "all", "00100010", "0010,0010", "PatientName.Foo",
]  # fmt: skip


def worker_peaks(server: ApertureServer) -> dict[int, int]:
    """Peak resident memory (VmHWM, bytes) of every process in the server's process group."""
    peaks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != server.process.pid:
                continue
            status = (entry / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[int(entry.name)] = int(line.split()[1]) * 1024
    return peaks
