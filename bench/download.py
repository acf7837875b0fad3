"""The download row of `make bench`: `aperture download` of the CT study against `curl` of the same study.

Both sides fetch the 300-instance CT from the `--auth smart` Aperture (bench/auth.py), in the same
rounds, taking turns (who goes first alternates), each into a fresh folder:

- `curl`: one multipart WADO-RS GET of the study (`transfer-syntax=*`, the bearer token from a
  header file) written to one file: the bytes, nothing else.
- `aperture download --key ... --patient ... --study UID --no-index --quiet`: the whole command as
  a user runs it, process start included: discovery at the EHR, a Backend Services token
  (a client pre-authorized for the CT's patient), the ImagingStudy search, the series fetched as
  multipart with `Want-Repr-Digest`, each instance checked (SHA-256 against the server's digest,
  its UIDs against the ImagingStudy) and renamed into `DICOM/`, then every listed instance
  checked on disk. `--no-index`: the DICOMDIR is not part of what curl does.

- the same command for a study the token cannot see (`--study 2.25.0`): process start, discovery,
  token, search and nothing fetched. Its time is the fixed part of every download; the row's
  text gives the rest ("transfer") beside curl's.

Two conditions, two rows:

- **loopback**: the server's full speed (about 500 MB/s here), where a whole run of curl lasts
  less than Python's start with its HTTP and JOSE libraries. This row is reported, not judged: what
  it measures is the fixed cost of a Python client beside a C one, which no user sees on a network.
- **an emulated 100 Mbit/s, 20 ms link** (bench/link.py: both clients reach the imaging server
  through the same shaping relay; the EHR is not shaped): what a patient's download at home is
  like. Goal: the download takes at most 10% longer than curl (curl ÷ download ≥ 0.9).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from auth import Authorized, _ehr, ehr_data
from joserfc.jwk import ECKey
from link import Link, LinkSpec
from peers import REPO, aperture_command

CLIENT = "bench-download"
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
GOAL = 0.9
NO_STUDY = "2.25.0"  # a study UID no one has
LINK = LinkSpec(bits_per_second=100e6, one_way_delay=0.010)  # a home broadband line


def register_client(workdir: Path, patient: str) -> Path:
    """A Backend Services client pre-authorized for `patient`; its private key's file."""
    key = ECKey.generate_key("P-384", parameters={"kid": f"{CLIENT}-1"}, private=True)
    folder = workdir / "download"
    folder.mkdir(parents=True, exist_ok=True)
    public = folder / "public.jwks"
    public.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    private = folder / "private.jwk"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(key.as_dict(private=True)))
    _ehr(ehr_data(workdir), "clients", "add", "--kind", "backend", "--client-id", CLIENT, "--name", "Bench download",
         "--scope", "system/ImagingStudy.rs", "--jwks", str(public), "--patients", patient)  # fmt: skip
    return private


def timed_curl(authorized: Authorized, study: str, out: Path, base: str | None = None) -> tuple[float, int]:
    """curl of the study's multipart GET from `base` (default: the server itself), written to one file."""
    url = f"{base or authorized.server.url}/dicom-web/studies/{study}"
    start = time.perf_counter()
    done = subprocess.run(
        ["curl", "-s", "-S", "-f", "-H", f"@{authorized.header_file}", "-H", f"Accept: {ACCEPT}",
         "-o", str(out / "study.multipart"), url],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"curl failed: {done.stderr.strip()[:300]}")
    return elapsed, (out / "study.multipart").stat().st_size


def _run_download(
    authorized: Authorized, key: Path, patient: str, study: str, out: Path, base: str | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """`aperture download --no-index --quiet` of ``study`` as the Backend Services client, timed.

    With `base`, the imaging server is reached there (`--imaging-fhir`) instead of where the EHR says.
    """
    command = [*aperture_command(), "download", "--issuer", f"{authorized.ehr.url}/fhir", "--client-id", CLIENT,
               "--key", str(key), "--patient", patient, "--study", study, "--out", str(out),
               "--no-index", "--quiet", *(["--imaging-fhir", f"{base}/fhir"] if base else [])]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600, cwd=REPO)
    return time.perf_counter() - start, done


def timed_download(
    authorized: Authorized, key: Path, patient: str, study: str, out: Path, expect: int, base: str | None = None
) -> float:
    elapsed, done = _run_download(authorized, key, patient, study, out, base)
    if done.returncode != 0:
        raise RuntimeError(f"aperture download failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    files = sum(1 for p in (out / "DICOM").rglob("*") if p.is_file())
    if files != expect:
        raise RuntimeError(f"aperture download wrote {files} files, not {expect}")
    return elapsed


def timed_fixed(authorized: Authorized, key: Path, patient: str, out: Path) -> float:
    """`aperture download` of a study nobody has: everything but the fetch."""
    elapsed, done = _run_download(authorized, key, patient, NO_STUDY, out)
    if done.returncode != 1 or "not among the studies" not in done.stderr:
        raise RuntimeError(f"aperture download of an unknown study: {done.returncode} {done.stderr.strip()[-300:]}")
    return elapsed


def _take_turns(
    scratch: Path,
    sides: list[str],
    orders: tuple[list[str], list[str]],
    rounds: range,
    take: Callable[[str, Path], float],
    log: Callable[[str], None],
    label: str,
) -> dict[str, list[float]]:
    """Each side once per round into a fresh `scratch`, in `orders[round % 2]`; round 0 (if any) is a warm-up."""
    samples: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for number in rounds:
            for side in orders[number % 2]:
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir(parents=True)
                seconds = take(side, scratch)
                if number:
                    samples[side].append(seconds)
                log(f"{label}, round {number}{' (warm-up)' if not number else ''}: {side} {seconds * 1000:.0f} ms")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return samples


@dataclass(frozen=True)
class Subject:
    """What both download rows fetch: the CT (`expect` instances) of `patient`, from `authorized`'s server."""

    authorized: Authorized
    patient: str
    study: str
    expect: int


def measure(workdir: Path, subject: Subject, rounds: int, log: Callable[[str], None]) -> dict[str, object]:
    """`rounds` samples of each side, taking turns; every sample kept (seconds), in the order taken."""
    authorized, patient, study = subject.authorized, subject.patient, subject.study
    key = register_client(workdir, patient)
    sizes = [0]

    def take(side: str, out: Path) -> float:
        if side == "curl":
            seconds, sizes[0] = timed_curl(authorized, study, out)
            return seconds
        if side == "fixed":
            return timed_fixed(authorized, key, patient, out)
        return timed_download(authorized, key, patient, study, out, subject.expect)

    orders = (["fixed", "download", "curl"], ["curl", "download", "fixed"])
    # round 0 warms both up and is not counted
    samples = _take_turns(workdir / "download" / "out", ["download", "curl", "fixed"], orders, range(rounds + 1),
                          take, log, "Download row")  # fmt: skip
    download, curl = statistics.median(samples["download"]), statistics.median(samples["curl"])
    fixed = statistics.median(samples["fixed"])
    return {"download": download, "curl": curl, "fixed": fixed, "ratio": curl / download, "samples": samples,
            "bytes": sizes[0]}  # fmt: skip


def measure_link(workdir: Path, subject: Subject, rounds: int, log: Callable[[str], None]) -> dict[str, object]:
    """`rounds` samples of each side through the emulated LINK, taking turns (no warm-up: `measure` ran first)."""
    authorized = subject.authorized
    key = workdir / "download" / "private.jwk"  # registered by `measure`
    link = Link(int(authorized.server.url.rsplit(":", 1)[1]), LINK).start()
    sizes = [0]

    def take(side: str, out: Path) -> float:
        if side == "curl":
            seconds, sizes[0] = timed_curl(authorized, subject.study, out, link.url)
            return seconds
        return timed_download(authorized, key, subject.patient, subject.study, out, subject.expect, link.url)

    orders = (["download", "curl"], ["curl", "download"])
    try:
        samples = _take_turns(workdir / "download" / "out", ["download", "curl"], orders, range(1, rounds + 1),
                              take, log, f"Download row over {LINK.label}")  # fmt: skip
    finally:
        link.stop()
    download, curl = statistics.median(samples["download"]), statistics.median(samples["curl"])
    return {"download": download, "curl": curl, "ratio": curl / download, "samples": samples, "bytes": sizes[0],
            "link": LINK.label, "floor": sizes[0] * 8 / LINK.bits_per_second}  # fmt: skip
