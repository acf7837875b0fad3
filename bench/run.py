"""`make bench`: Aperture's DICOMweb numbers beside Orthanc's (and nginx's), measured in the same run.

This is a benchmark, not a test: it never runs in CI and a missed goal does not fail it. It exits
non-zero only when the harness itself fails (a peer does not start or rejects the data, a bug here);
Aperture failing to start or to answer is reported as "n/a (error: ...)" in its column.

Steps (see bench/README.md for how to read the output):

1. Generate a 300-slice 512x512 CT study and 2,000 one-instance studies (aperture.dicom.synthetic).
2. Start Aperture and Orthanc 1.10 + DICOMweb plugin on free 127.0.0.1 ports, in a temp directory.
3. STOW-RS the CT study into each (batches of 50 instances per request, timed), then the small
   studies (batches of 100, timed).
4. Time QIDO-RS, WADO-RS metadata / study / instance / frame / rendered on both with the same
   client, checking every answer; then serve Aperture's full-study response bytes from nginx
   (sendfile) as a ceiling for the retrieve throughput.
5. Start the EHR sandbox and a second Aperture with `--auth smart` on the same data (bench/auth.py),
   and time what a patient's viewer asks for with that patient's bearer token, in the same rounds
   as the `--auth none` server, a control `--auth none` process and Orthanc (`--no-auth-rows` skips it).
6. Load OHIF in chromium against each server (bench/browser.py).
7. Print a Markdown table (and with --json FILE, save the numbers).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import numpy as np
from PIL import Image
from pydicom import dcmread

try:
    from aperture.dicom import synthetic
except ModuleNotFoundError:  # the package is not installed in this interpreter: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from aperture.dicom import synthetic

import auth
import browser
import download
from peers import PeerError, Server, start_aperture, start_nginx, start_orthanc

ACCEPT_JSON = "application/dicom+json"
ACCEPT_XML = 'multipart/related; type="application/dicom+xml"'  # DICOM XML, one part per instance
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_FRAME = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
ACCEPT_JPEG = "image/jpeg"
QIDO_LIMIT = 100
DATE_RANGE = ("20180101", "20181231")
LONG_SERIES = 600  # instances in the series whose /metadata is timed
MB = 1_000_000  # throughput is reported in MB/s with MB = 10^6 bytes
BUSY_LOAD = 0.5  # 1-minute load average above which the run warns that other work adds noise

_T0 = time.monotonic()


def settle_disk() -> None:
    """Write out what is waiting for the disk before a timed STOW-RS, so no server pays for another's.

    Both servers' data share one filesystem here. Orthanc returns before its files reach the disk,
    so their writing is still pending when the next STOW starts; Aperture makes each batch durable
    with syncfs(2), which would then be timed writing Orthanc's files too (0.36 s for Aperture's
    first STOW, before Orthanc's, against ~0.6 s for the next two in one run).
    """
    os.sync()


SLOW_CREATE_US = 100  # file creation slower than this: ext4 is skipping recently freed inodes


def file_creation_cost(workdir: Path, count: int = 200) -> float:
    """Microseconds to create one empty file where the servers keep their data (the files stay).

    ext4 does not reuse an inode freed in the last minutes, and searching past many of them makes
    each new file cost up to 1 ms instead of ~20 µs: after a test run or an earlier benchmark
    deleted thousands of files nearby, every STOW here is slower. Both servers create a file per
    instance, so both pay about the same extra time, which weighs more on the faster one's ratio.
    """
    folder = workdir / "creation-probe"
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for n in range(count):
        os.close(os.open(folder / f"{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return (time.perf_counter() - start) / count * 1e6


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the table."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Data


@dataclass
class BenchData:
    """The generated files and what the checks expect of the servers that store them."""

    ct: list[bytes]
    small: list[bytes]
    study_uid: str
    series_uid: str
    sop_uid: str  # the middle slice: instance, frame and rendered probes use it
    sop_bytes: bytes  # that slice's Part-10 file
    frame_bytes: bytes  # that slice's pixel data
    rows: int
    cols: int
    patient_id: str  # the one the QIDO-by-PatientID probe asks for
    owner: auth.Identity  # the EHR seed patient the CT studies are stored under (PatientID, IssuerOfPatientID)
    n_in_range: int  # small studies whose StudyDate is in DATE_RANGE
    long_series: list[bytes]  # one series of LONG_SERIES instances, for the series metadata probe
    long_study_uid: str
    long_series_uid: str
    ct_copies: list[list[bytes]] = field(default_factory=list)  # the CT study again, new UIDs: more STOW samples

    @property
    def ct_bytes(self) -> int:
        return sum(map(len, self.ct))

    @property
    def n_studies(self) -> int:
        return len(self.small) + 2 + len(self.ct_copies)  # the CT studies and the long-series study


def _size(files: Sequence[bytes]) -> str:
    return f"{sum(map(len, files)) / MB:.1f} MB"


def generate(n_slices: int, n_small: int, stow_repeat: int = 1) -> BenchData:
    """The benchmark's files; the CT studies belong to an EHR seed patient, so the `--auth smart` rows can read them."""
    owner = auth.seed_identity()
    who = {"patient_id": owner.mrn, "issuer": owner.issuer, "patient_name": owner.name}
    t = time.perf_counter()
    ct = list(synthetic.ct_study(n_slices, **who))
    log(f"generated CT study: {len(ct)} slices, {_size(ct)}, {time.perf_counter() - t:.1f} s")
    ct_copies = [list(synthetic.ct_study(n_slices, seed=n, **who)) for n in range(1, stow_repeat)]
    t = time.perf_counter()
    small = [synthetic.small_study(i) for i in range(n_small)]
    log(f"generated {len(small)} small studies, {_size(small)}, {time.perf_counter() - t:.1f} s")
    long_series = list(
        synthetic.ct_study(LONG_SERIES, 128, 128, patient_id="BENCH-600", patient_name="Bench^Long", seed=7)
    )
    first = dcmread(io.BytesIO(long_series[0]), stop_before_pixels=True)
    middle = dcmread(io.BytesIO(ct[len(ct) // 2]))
    dates = [str(dcmread(io.BytesIO(f), stop_before_pixels=True, specific_tags=["StudyDate"]).StudyDate) for f in small]
    return BenchData(
        ct=ct,
        small=small,
        study_uid=str(middle.StudyInstanceUID),
        series_uid=str(middle.SeriesInstanceUID),
        sop_uid=str(middle.SOPInstanceUID),
        sop_bytes=ct[len(ct) // 2],
        frame_bytes=bytes(middle.PixelData),
        rows=int(middle.Rows),
        cols=int(middle.Columns),
        patient_id=f"PAT{min(1234, n_small - 1):05d}",
        owner=owner,
        n_in_range=sum(DATE_RANGE[0] <= d <= DATE_RANGE[1] for d in dates),
        long_series=long_series,
        long_study_uid=str(first.StudyInstanceUID),
        long_series_uid=str(first.SeriesInstanceUID),
        ct_copies=ct_copies,
    )


# --------------------------------------------------------------------------------------------------
# HTTP


def make_client(headers: dict[str, str] | None = None) -> httpx.Client:
    """The one client configuration used against every server: HTTP/1.1 keep-alive, no compression.

    ``headers`` are added to every request (the bearer token of the `--auth smart` server).
    """
    return httpx.Client(
        timeout=httpx.Timeout(600.0, connect=10.0),
        headers={"Accept-Encoding": "identity", "User-Agent": "aperture-bench", **(headers or {})},
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    )


def multipart_body(parts: Sequence[bytes], part_type: str = "application/dicom") -> tuple[bytes, str]:
    """A multipart/related body of ``parts`` and its Content-Type header."""
    boundary = f"bench-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode(), part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{part_type}"; boundary={boundary}'


def multipart_parts(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart body into (headers, payload) pairs; used to verify warm-up responses."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError(f"no boundary in Content-Type {content_type!r}")
    delimiter = b"--" + boundary.encode()
    start = body.find(delimiter)  # anything before the first delimiter is preamble
    if start < 0:
        return []
    parts = []
    # Each chunk is: transport padding, CRLF, headers, CRLF CRLF, payload; the last one starts "--".
    for chunk in body[start + len(delimiter) :].split(b"\r\n" + delimiter):
        if chunk.startswith(b"--"):
            break
        _, _, chunk = chunk.partition(b"\r\n")
        if chunk.startswith(b"\r\n"):  # no headers
            parts.append(({}, chunk[2:]))
            continue
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a part has no end of headers")
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, payload))
    return parts


@dataclass
class Reply:
    status: int
    content_type: str
    nbytes: int
    seconds: float
    body: bytes | None  # None when streamed (the full-study retrieve)


def fetch(
    client: httpx.Client, url: str, accept: str | None, *, stream: bool = False, sink: Path | None = None
) -> Reply:
    """GET ``url`` and read the whole body; the time covers request to last byte."""
    headers = {"Accept": accept} if accept else {}
    if not stream:
        start = time.perf_counter()
        resp = client.get(url, headers=headers)
        body = resp.content
        seconds = time.perf_counter() - start
        return Reply(resp.status_code, resp.headers.get("content-type", ""), len(body), seconds, body)
    out = sink.open("wb") if sink is not None else None
    try:
        nbytes = 0
        start = time.perf_counter()
        with client.stream("GET", url, headers=headers) as resp:
            for chunk in resp.iter_raw():
                nbytes += len(chunk)
                if out is not None:
                    out.write(chunk)
        seconds = time.perf_counter() - start
    finally:
        if out is not None:
            out.close()
    return Reply(resp.status_code, resp.headers.get("content-type", ""), nbytes, seconds, None)


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class Timing:
    """One server's numbers for one measurement."""

    seconds: list[float] = field(default_factory=list)
    nbytes: int = 0
    error: str | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    def cell(self, *, throughput: bool = False) -> str:
        if self.error is not None:
            return f"n/a (error: {self.error})"
        if not self.seconds:
            return "n/a"
        text = f"{_ms(self.median)} (p95 {_ms(self.p95)})"
        if throughput:
            text += f" · {self.nbytes / self.median / MB:,.0f} MB/s"
        return text

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "samples_ms": [round(s * 1000, 3) for s in self.seconds]}
        if self.ok:
            out |= {"median_ms": round(self.median * 1000, 3), "p95_ms": round(self.p95 * 1000, 3)}
            out |= {"bytes": self.nbytes, "mb_per_s": round(self.nbytes / self.median / MB, 1)}
        return out


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


@dataclass
class Row:
    """A line of the table: Aperture against one peer."""

    label: str
    aperture: str
    peer: str
    ratio: float | None  # > 1 is better for Aperture
    goal: float | None
    ratio_text: str = ""
    goal_text: str = "—"
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def result(self) -> str:
        if self.goal is None:
            return "info"
        if self.ratio is None:
            return "n/a"
        return "PASS" if self.ratio >= self.goal else "FAIL"


def timing_row(label: str, ap: Timing, peer: Timing, goal: float | None, *, throughput: bool = False) -> Row:
    ratio = peer.median / ap.median if ap.ok and peer.ok else None
    return Row(
        label=label,
        aperture=ap.cell(throughput=throughput),
        peer=peer.cell(throughput=throughput),
        ratio=ratio,
        goal=goal,
        ratio_text="n/a" if ratio is None else f"{ratio:.2f}×",
        goal_text="—" if goal is None else f"≥{goal:g}×",
        data={"aperture": ap.as_json(), "peer": peer.as_json()},
    )


# --------------------------------------------------------------------------------------------------
# Load (STOW-RS)


@dataclass
class Stow:
    seconds: float = 0.0
    instances: int = 0
    nbytes: int = 0
    requests: int = 0
    error: str | None = None
    samples: list[float] = field(default_factory=list)  # each STOW's time, when the median of several is shown

    @classmethod
    def median_of(cls, runs: Sequence[Stow]) -> Stow:
        """The run with the median time (the first error, if any), carrying every run's time."""
        failed = next((r for r in runs if r.error is not None), None)
        if failed is not None:
            return failed
        ordered = sorted(runs, key=lambda r: r.seconds)
        middle = ordered[(len(ordered) - 1) // 2]
        return cls(middle.seconds, middle.instances, middle.nbytes, middle.requests, None, [r.seconds for r in runs])

    def cell(self) -> str:
        if self.error is not None:
            return f"n/a (error: {self.error})"
        rate = self.instances / self.seconds
        text = f"{self.seconds:.2f} s · {rate:,.0f} inst/s · {self.nbytes / self.seconds / MB:,.1f} MB/s"
        if len(self.samples) > 1:
            text += f" (median of {len(self.samples)}: {', '.join(f'{x:.2f}' for x in self.samples)} s)"
        return text


def stow(client: httpx.Client, base: str, files: Sequence[bytes], batch: int) -> Stow:
    """POST ``files`` to ``{base}/studies`` in batches with curl; time only the requests; check each answer.

    Uploads go through curl, not httpx: httpx sends a 150 MB body at well under 1 GB/s on this
    machine, which would cap both servers at the client's speed. curl's own `time_total` is used,
    so process start-up is not counted. curl reads each body from a pipe, not a file: a body file
    would be dirty data on the disk the servers write to, and a server that flushes the filesystem
    to make its uploads durable (Aperture's syncfs) would be timed writing the client's file too.
    ``client`` is kept for the signature's sake.
    """
    del client
    result = Stow(instances=len(files), nbytes=sum(map(len, files)), requests=0)
    sent = 0
    with tempfile.TemporaryDirectory(prefix="aperture-bench-stow-") as scratch:
        answer_path = Path(scratch) / "answer"
        for start in range(0, len(files), batch):
            chunk = files[start : start + batch]
            body, content_type = multipart_body(chunk)
            sent += len(chunk)
            result.requests += 1
            done = subprocess.run(
                ["curl", "-s", "-S", "-o", str(answer_path), "-w", "%{http_code} %{time_total}",
                 "--data-binary", "@-", "-H", f"Content-Type: {content_type}",
                 "-H", f"Accept: {ACCEPT_JSON}", "-H", "Expect:", f"{base}/studies"],
                input=body, capture_output=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                result.error = f"curl failed: {done.stderr.decode(errors='replace').strip()[:200]}"
                return result
            status, seconds = done.stdout.decode().split()
            result.seconds += float(seconds)
            resp = httpx.Response(int(status), content=answer_path.read_bytes())
            problem = _stow_problem(resp, len(chunk))
            if problem:
                result.error = problem
                return result
    return result


def _stow_problem(resp: httpx.Response, expected: int) -> str | None:
    if resp.status_code != 200:
        return f"HTTP {resp.status_code}: {resp.text[:200]!r}"
    try:
        answer = resp.json()
    except ValueError:
        return f"STOW answer is not JSON: {resp.text[:200]!r}"
    failed = answer.get("00081198", {}).get("Value") or []
    stored = answer.get("00081199", {}).get("Value") or []
    if failed:
        return f"{len(failed)} instance(s) in FailedSOPSequence"
    if len(stored) != expected:
        return f"ReferencedSOPSequence has {len(stored)} items, expected {expected}"
    return None


# --------------------------------------------------------------------------------------------------
# Probes (timed GETs)

Check = Callable[[Reply], str | None]


@dataclass
class Probe:
    key: str
    label: str
    path: str  # after the DICOMweb root (or the server root, with `from_root`), starting with "/"
    accept: str | None
    goal: float | None  # None: measured for information, the issue sets no goal
    check: Check  # every answer (cheap)
    deep_check: Check | None = None  # the warm-up answer (may parse it)
    large: bool = False  # stream the body, fewer repeats, report MB/s
    vary: str | None = None  # a query parameter given a new value on every timed request (defeats caches)
    from_root: bool = False  # `path` is from the server root (WADO-URI's /wado), not the DICOMweb root


def _basic(reply: Reply, *, content_type: str | None = None, min_bytes: int = 1) -> str | None:
    if reply.status != 200:
        detail = reply.body[:120].decode("utf-8", "replace") if reply.body else ""
        return f"HTTP {reply.status} {detail}".strip()
    if reply.nbytes < min_bytes:
        return f"body is {reply.nbytes:,} bytes, expected at least {min_bytes:,}"
    if content_type and not reply.content_type.lower().startswith(content_type):
        return f"Content-Type {reply.content_type!r}, expected {content_type}"
    return None


def _json_list(reply: Reply, count: int | None = None) -> tuple[list[dict[str, Any]], str | None]:
    problem = _basic(reply, content_type="application/dicom+json" if count != 0 else None)
    if problem and not (count == 0 and reply.status == 204):
        return [], problem
    if reply.status == 204:
        return [], None
    try:
        items = json.loads(reply.body or b"")
    except ValueError:
        return [], "answer is not JSON"
    if not isinstance(items, list):
        return [], "answer is not a JSON array"
    if count is not None and len(items) != count:
        return items, f"{len(items)} results, expected {count}"
    return items, None


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def probes(data: BenchData) -> list[Probe]:
    st, se, sop = data.study_uid, data.series_uid, data.sop_uid
    n_slices = len(data.ct)

    def qido_count(count: int) -> Check:
        return lambda r: _json_list(r, count)[1]

    def by_patient(r: Reply) -> str | None:
        items, problem = _json_list(r, 1)
        if problem:
            return problem
        got = _value(items[0], "00100020")
        return None if got == data.patient_id else f"PatientID {got!r}, expected {data.patient_id}"

    def date_range(r: Reply) -> str | None:
        items, problem = _json_list(r, min(QIDO_LIMIT, data.n_in_range))
        if problem:
            return problem
        outside = [d for d in (_value(i, "00080020") for i in items) if not DATE_RANGE[0] <= d <= DATE_RANGE[1]]
        return f"StudyDate {outside[0]!r} outside the range" if outside else None

    def metadata(r: Reply) -> str | None:
        items, problem = _json_list(r, n_slices)
        if problem:
            return problem
        uids = {_value(i, "00080018") for i in items}
        return None if len(uids) == n_slices else f"{len(uids)} distinct SOPInstanceUIDs, expected {n_slices}"

    def metadata_xml(r: Reply) -> str | None:
        return _basic(r, content_type="multipart/related", min_bytes=n_slices * 1000)

    def metadata_xml_deep(r: Reply) -> str | None:
        """One Native DICOM Model document per instance (PS3.19 Annex A), each with its SOPInstanceUID."""
        parts = multipart_parts(r.body or b"", r.content_type)
        if len(parts) != n_slices:
            return f"{len(parts)} parts, expected {n_slices}"
        uids = set()
        for headers, payload in parts:
            if not headers.get("content-type", "").startswith("application/dicom+xml"):
                return f"a part is {headers.get('content-type')!r}, expected application/dicom+xml"
            root = ElementTree.fromstring(payload)
            if root.tag.rsplit("}", 1)[-1] != "NativeDicomModel":
                return f"a part's root is {root.tag!r}, expected NativeDicomModel"
            for attribute in root:
                if attribute.get("tag") == "00080018":
                    uids.update((v.text or "") for v in attribute)
        return None if len(uids) == n_slices else f"{len(uids)} distinct SOPInstanceUIDs, expected {n_slices}"

    def study(r: Reply) -> str | None:
        return _basic(r, content_type="multipart/related", min_bytes=int(data.ct_bytes * 0.98))

    def instance(r: Reply) -> str | None:
        return _basic(r, content_type="multipart/related", min_bytes=int(len(data.sop_bytes) * 0.98))

    def instance_deep(r: Reply) -> str | None:
        parts = multipart_parts(r.body or b"", r.content_type)
        if len(parts) != 1:
            return f"{len(parts)} parts, expected 1"
        ds = dcmread(io.BytesIO(parts[0][1]))
        if str(ds.SOPInstanceUID) != sop or not np.array_equal(
            ds.pixel_array, dcmread(io.BytesIO(data.sop_bytes)).pixel_array
        ):
            return "the instance returned is not the one stored"
        return None

    def frame(r: Reply) -> str | None:
        return _basic(r, content_type="multipart/related", min_bytes=1000)

    def frame_deep(r: Reply) -> str | None:
        """The stored pixels, or (Aperture, `transfer-syntax=*`) its HTJ2K copy decoding to exactly them."""
        parts = multipart_parts(r.body or b"", r.content_type)
        if len(parts) != 1:
            return f"{len(parts)} parts, expected 1"
        headers, payload = parts[0]
        if payload == data.frame_bytes:
            return None
        if "1.2.840.10008.1.2.4.202" in " ".join(headers.values()):
            import imagecodecs

            stored = np.frombuffer(data.frame_bytes, dtype="<i2")
            decoded = np.asarray(imagecodecs.htj2k_decode(payload)).astype("<i2").ravel()
            return None if np.array_equal(decoded, stored) else "HTJ2K frame does not decode to the stored pixels"
        return f"frame is {len(payload):,} bytes, not the stored pixels"

    def rendered(r: Reply) -> str | None:
        problem = _basic(r, content_type="image/jpeg", min_bytes=100)
        if problem:
            return problem
        return None if (r.body or b"").startswith(b"\xff\xd8") else "body is not a JPEG"

    def wado_uri_dicom(r: Reply) -> str | None:
        problem = _basic(r, content_type="application/dicom", min_bytes=len(data.sop_bytes))
        if problem:
            return problem
        return None if r.body is None or r.body == data.sop_bytes else "the file returned is not the one stored"

    def wado_uri_jpeg(r: Reply) -> str | None:
        """A JPEG body; Orthanc 1.7 labels its WADO-URI JPEGs `image/png`, so only `image/` is asked of the label."""
        problem = _basic(r, content_type="image/", min_bytes=100)
        if problem:
            return problem
        return None if (r.body or b"").startswith(b"\xff\xd8") else "body is not a JPEG"

    def rendered_deep(r: Reply) -> str | None:
        with Image.open(io.BytesIO(r.body or b"")) as img:
            size = img.size
        return None if size == (data.cols, data.rows) else f"JPEG is {size}, expected {(data.cols, data.rows)}"

    lo, hi = DATE_RANGE
    dates = f"StudyDate={lo}-{hi}&limit={QIDO_LIMIT}"
    inst = f"/studies/{st}/series/{se}/instances/{sop}"
    wado = f"/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}"  # '/' unescaped, as links write it
    return [
        Probe("qido_all", f"QIDO `/studies?limit={QIDO_LIMIT}`", f"/studies?limit={QIDO_LIMIT}", ACCEPT_JSON,
              5, qido_count(min(QIDO_LIMIT, data.n_studies))),
        Probe("qido_patient", f"QIDO `/studies?PatientID={data.patient_id}`",
              f"/studies?PatientID={data.patient_id}", ACCEPT_JSON, 5, by_patient),
        Probe("qido_dates", f"QIDO `/studies?{dates}`", f"/studies?{dates}", ACCEPT_JSON, 5, date_range),
        Probe("qido_instances", f"QIDO `/studies/{{ct}}/instances` ({n_slices} results)",
              f"/studies/{st}/instances", ACCEPT_JSON, 5, qido_count(n_slices)),
        Probe("metadata", f"WADO study `/metadata`, warm ({n_slices} instances)", f"/studies/{st}/metadata",
              ACCEPT_JSON, 10, metadata),
        Probe("series-metadata", f"WADO series `/metadata`, warm ({LONG_SERIES} instances)",
              f"/studies/{data.long_study_uid}/series/{data.long_series_uid}/metadata", ACCEPT_JSON, 10,
              lambda r: _json_list(r, LONG_SERIES)[1]),
        Probe("metadata-xml", f"XML metadata: WADO study `/metadata` as DICOM XML, warm ({n_slices} instances)",
              f"/studies/{st}/metadata", ACCEPT_XML, None, metadata_xml, metadata_xml_deep),
        Probe("study", f"WADO full study ({n_slices} instances)", f"/studies/{st}", ACCEPT_DICOM, 2, study,
              large=True),
        Probe("instance", "WADO one instance", inst, ACCEPT_DICOM, 1.5, instance, instance_deep),
        Probe("frame", "WADO one frame (`/frames/1`)", f"{inst}/frames/1", ACCEPT_FRAME, 1.5, frame,
              frame_deep),
        Probe("rendered", "WADO rendered JPEG (instance), repeated", f"{inst}/rendered", ACCEPT_JPEG, 1.5, rendered,
              rendered_deep),
        Probe("rendered-fresh", "WADO rendered JPEG (instance), each request new (`quality` varies)",
              f"{inst}/rendered", ACCEPT_JPEG, 1.5, rendered, rendered_deep, vary="quality"),
        Probe("wado-uri", "WADO-URI one instance (`/wado?…&contentType=application/dicom`)",
              f"{wado}&contentType=application/dicom", None, 1.5, wado_uri_dicom, from_root=True),
        Probe("wado-uri-jpeg", "WADO-URI JPEG (`/wado?…&contentType=image/jpeg`), repeated",
              f"{wado}&contentType=image/jpeg", None, 1.5, wado_uri_jpeg, rendered_deep, from_root=True),
    ]  # fmt: skip


@dataclass
class Target:
    """A server under measurement: its client, DICOMweb root URL and server root URL."""

    name: str
    client: httpx.Client
    base: str
    paths: dict[str, str] = field(default_factory=dict)  # probe key -> path, where it differs (nginx)
    root: str = ""  # where `from_root` probes' paths start (WADO-URI)
    curl_args: tuple[str, ...] = ()  # sent with every timed request (the bearer token, as `-H @file`)

    def url(self, probe: Probe) -> str:
        return (self.root if probe.from_root else self.base) + self.paths.get(probe.key, probe.path)


def htj2k_stow_row(workdir: Path, data: BenchData, args: argparse.Namespace, on: Stow | None) -> Row:
    """The CT STOW-RS rate with background HTJ2K copies on (the run above) beside a server with them off."""
    label = "STOW-RS CT study: HTJ2K copies on (Aperture above) vs off (a second Aperture)"
    if on is None or on.error is not None:
        return Row(label, "n/a", "n/a", None, 0.9, "n/a", "≥0.9× of off")
    config = workdir / "htj2k-off.toml"
    config.write_text("[store]\nhtj2k_copies = false\n")
    server = start_aperture(workdir / "htj2k-off", ["--config", str(config), *args.aperture_arg])
    try:
        base = server.url + "/dicom-web"
        runs = []
        for files in (data.ct, *data.ct_copies):
            settle_disk()
            runs.append(stow(httpx.Client(), base, files, args.stow_batch))
            wait_for_background(server)  # nothing to wait for with copies off: the same pause as above
        off = Stow.median_of(runs)
    finally:
        server.stop()
    if off.error is not None:
        return Row(label, on.cell(), off.cell(), None, 0.9, "n/a", "≥0.9× of off")
    ratio = off.seconds / on.seconds  # rate with copies on as a share of the rate with them off
    return Row(label, on.cell(), f"off: {off.cell()}", ratio, 0.9, f"{ratio:.2f}× of off", "≥0.9× of off")


def client_ceiling_note(aperture: Timing, orthanc: Timing, nginx: Timing) -> str:
    """A note for when the full-study time is the client's, not the server's: Aperture at nginx's speed.

    nginx hands the file to the kernel (sendfile) and does almost nothing itself, so what curl
    gets from it is close to what any server can deliver to curl over loopback on this machine.
    """
    if not (aperture.ok and orthanc.ok and nginx.ok):
        return ""
    ap, ng, peer = aperture.median, nginx.median, orthanc.median
    if ap <= peer / 2 or ap > ng / 0.95:  # the goal is met, or the server (not the client) sets the time
        return ""
    return (
        f"Full study: Aperture ({ap * 1000:.0f} ms) is as fast as nginx serving the same bytes as one static file "
        f"with sendfile ({ng * 1000:.0f} ms): that time is set by the client (curl) and loopback on this machine, "
        f"not by the server. Orthanc ({peer * 1000:.0f} ms) reaches {ng / peer:.0%} of that ceiling; twice "
        f"Orthanc's speed would be {peer / 2 * 1000:.0f} ms, {ng / (peer / 2):.2f}× nginx's own speed here."
    )


def wait_for_background(server: Server, limit: float = 600.0) -> None:
    """Let Aperture finish its HTJ2K copies before timing, so they do not compete for the CPU."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        pending = httpx.get(f"{server.url}/healthz", params={"background": "1"}, timeout=30).json().get("htj2k_pending")
        if not pending:
            log(f"Aperture background HTJ2K copies done after {time.perf_counter() - start:.1f} s")
            return
        time.sleep(0.5)
    log(f"WARNING: Aperture still had HTJ2K copies to make after {limit:.0f} s; timing anyway")


def curl_times(
    url: str, accept: str | None, count: int, vary: str | None = None, start: int = 0, extra: Sequence[str] = ()
) -> list[float]:
    """Time `count` GETs of `url` over one kept-alive connection with curl (a C client).

    For small answers the client's own cost is a large share of the total: httpx needs about
    0.3 ms per request here, which would hide most of the difference between two servers. curl's
    per-transfer `time_total` covers request to last byte and excludes starting the process.
    `extra` arguments apply to every request (`-H @file`: a header file, the bearer token).
    """
    command = ["curl", "-s", "-S", "-H", "Accept-Encoding: identity", *extra]
    if accept:
        command += ["-H", f"Accept: {accept}"]
    for n in range(count):
        target = url if vary is None else f"{url}{'&' if '?' in url else '?'}{vary}={99 - (start + n) % 90}"
        command += ["-o", "/dev/null", "-w", "%{http_code} %{time_total}\n", target]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    times = []
    for line in done.stdout.strip().splitlines():
        status, seconds = line.split()
        if status != "200":
            raise RuntimeError(f"HTTP {status} from {url}")
        times.append(float(seconds))
    if len(times) != count:
        raise RuntimeError(f"curl timed {len(times)} of {count} requests: {done.stderr.strip()[:200]}")
    return times


def measure(probe: Probe, targets: Sequence[Target], repeat: int) -> dict[str, Timing]:
    """Warm up every target (checking deeply), then time ``repeat`` rounds, interleaving the targets.

    Every probe is timed with curl (a C client) in blocks of requests per target, the targets taking
    turns: five per block for small answers, one for full-study retrieves (httpx, reading 1 MB at a
    time, tops out near 2.5 GB/s here, below the faster servers, which would compress the ratios).
    """
    timings = {t.name: Timing() for t in targets}
    live: list[Target] = []
    for target in targets:
        timing = timings[target.name]
        try:
            reply = fetch(target.client, target.url(probe), probe.accept, stream=probe.large)
            timing.error = probe.check(reply) or (probe.deep_check(reply) if probe.deep_check else None)
            timing.nbytes = reply.nbytes
            timing.note = reply.content_type
        except Exception as exc:  # a server's error becomes a table cell
            timing.error = f"{type(exc).__name__}: {exc}"[:200]
        if timing.error is None:
            live.append(target)
    block = 1 if probe.large else 5
    for start in range(0, repeat, block):
        for target in list(live):
            try:
                timings[target.name].seconds += curl_times(
                    target.url(probe), probe.accept, block, probe.vary, start, target.curl_args
                )
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                timings[target.name].error = str(exc)[:200]
                live.remove(target)
    return timings


# --------------------------------------------------------------------------------------------------
# --auth smart beside --auth none (bench/auth.py)

SMART = "Aperture-smart"  # the `--auth smart` server's name in `servers` and in the targets
CONTROL = "Aperture-none-2"  # a second `--auth none` process on the same data, started beside the smart one
AUTH_GOAL = 0.95  # authorized time within 5% of open: open time ÷ authorized time ≥ 0.95
AUTH_PROBES = ("qido_owner", "qido_instances", "metadata", "frame", "study")


def auth_probes(data: BenchData) -> list[Probe]:
    """The probes timed on both sides: what a patient's viewer asks for, each answered alike with and without auth.

    QIDO asks for the token's own patient (`/studies?PatientID=<MRN>`): the authorized server
    answers a search of all studies with that patient's only, so `/studies?limit=100` would not
    be the same work on both sides.
    """
    owner = data.owner
    n_ct = 1 + len(data.ct_copies)

    def by_owner(r: Reply) -> str | None:
        items, problem = _json_list(r, n_ct)
        if problem:
            return problem
        wrong = [got for got in (_value(i, "00100020") for i in items) if got != owner.mrn]
        return f"PatientID {wrong[0]!r}, expected {owner.mrn}" if wrong else None

    studies = "1 study" if n_ct == 1 else f"{n_ct} studies"
    owner_probe = Probe(
        "qido_owner", f"QIDO `/studies?PatientID={owner.mrn}` (the token's patient: {studies})",
        f"/studies?PatientID={owner.mrn}", ACCEPT_JSON, 5, by_owner,
    )  # fmt: skip
    known = {p.key: p for p in probes(data)}
    return [owner_probe if key == "qido_owner" else known[key] for key in AUTH_PROBES]


def smart_vs_open_row(label: str, smart: Timing, open_: Timing, *, throughput: bool = False) -> Row:
    """Authorized against open: the ratio is open time ÷ authorized time, goal ≥ 0.95."""
    row = timing_row(f"Auth: {label} — `--auth smart` vs `--auth none`", smart, open_, AUTH_GOAL, throughput=throughput)
    row.aperture, row.peer = f"smart: {row.aperture}", f"none: {row.peer}"
    if row.ratio is not None:
        row.ratio_text = f"{row.ratio:.3f}× (smart {1 / row.ratio - 1:+.1%} time)"
    row.goal_text = f"≥{AUTH_GOAL:g}× (within 5%)"
    return row


def smart_vs_orthanc_row(
    label: str, smart: Timing, orthanc: Timing, goal: float | None, *, throughput: bool = False
) -> Row:
    """The issue 2 goal of the same request, with Aperture's auth on."""
    row = timing_row(f"Auth: {label} — `--auth smart` vs Orthanc", smart, orthanc, goal, throughput=throughput)
    row.aperture = f"smart: {row.aperture}"
    return row


def samples_line(label: str, timings: dict[str, Timing]) -> str:
    """Every sample of one measurement, per server, in the order they were taken (ms)."""
    parts = []
    for name, timing in timings.items():
        shown = timing.error and f"error: {timing.error}" or " ".join(f"{x * 1000:.2f}" for x in timing.seconds)
        parts.append(f"{name}: {shown}")
    return f"- {label}: " + "; ".join(parts)


def auth_rows(
    args: argparse.Namespace,
    workdir: Path,
    servers: dict[str, Server | None],
    live: list[Target],
    data: BenchData,
    rows: list[Row],
    clients: list[httpx.Client],
) -> tuple[auth.Authorized | None, list[str]]:
    """Start the EHR sandbox and the `--auth smart` server; append its rows; (its set-up, notes under the table)."""
    specs = auth_probes(data)
    if not args.auth_rows:
        for probe in specs:
            rows.append(_skipped_row(f"Auth: {probe.label}", "skipped: --no-auth-rows", AUTH_GOAL))
        return None, []
    open_target = next((t for t in live if t.name == "Aperture"), None)
    orthanc = next((t for t in live if t.name == "Orthanc"), None)
    problem = None if open_target is not None else "the --auth none Aperture was not measured"
    authorized = None
    if problem is None:
        log(f"starting the EHR sandbox and an --auth smart Aperture on the same data (token for {data.owner.ehr_id})")
        try:
            authorized = auth.start_authorized(workdir, workdir / "aperture" / "data", args.aperture_arg, data.owner)
        except PeerError as exc:
            problem = str(exc)
            log(f"--auth smart rows not measured: {exc}\n{exc.detail}")
    if authorized is None or open_target is None:
        for probe in specs:
            rows.append(_skipped_row(f"Auth: {probe.label}", f"error: {problem}"[:200], AUTH_GOAL))
        return None, [f"The --auth smart rows were not measured: {problem}"]
    servers["EHR sandbox"], servers[SMART] = authorized.ehr, authorized.server
    log(f"{SMART} at {authorized.server.url}, EHR sandbox at {authorized.ehr.url}")
    client = make_client(authorized.header)
    clients.append(client)
    smart = Target(SMART, client, authorized.server.url + "/dicom-web", root=authorized.server.url,
                   curl_args=("-H", f"@{authorized.header_file}"))  # fmt: skip
    # The control: a second --auth none process on the same data, started as the smart one was, as
    # one more side of the same rounds. Its ratio to the first is what two servers that differ in
    # nothing show here (noise, and a later start); a smart-vs-none gap within that is not measured.
    targets = [open_target, smart]
    try:
        servers[CONTROL] = control = start_aperture(
            workdir, args.aperture_arg, name=CONTROL, data=workdir / "aperture" / "data"
        )
        control_client = make_client()
        clients.append(control_client)
        targets.append(Target(CONTROL, control_client, control.url + "/dicom-web", root=control.url))
    except PeerError as exc:
        log(f"the control (a second --auth none Aperture) did not start: {exc}")
    targets += [orthanc] if orthanc else []
    lines = ["Every sample of the `--auth smart` rows, ms, in the order taken (the servers take turns, "
             "in blocks of 5 requests, 1 for the full study; `none-2` is a second --auth none process on "
             "the same data, started beside the smart one: the control for noise):"]  # fmt: skip
    for probe in specs:
        repeat = args.auth_repeat_large if probe.large else args.auth_repeat
        log(f"Auth: {probe.label}: warm-up + {repeat} rounds of {', '.join(t.name for t in targets)}")
        timings = measure(probe, targets, repeat)
        ap, sm = timings["Aperture"], timings[SMART]
        aa = timings.get(CONTROL) or Timing(error="not running")
        peer = timings.get("Orthanc") or Timing(error="not running")
        open_row = smart_vs_open_row(probe.label, sm, ap, throughput=probe.large)
        if ap.ok and aa.ok:
            open_row.ratio_text += f"; control none ÷ none-2 {ap.median / aa.median:.3f}×"
        open_row.data["control_none_2"] = aa.as_json()
        for row in (open_row, smart_vs_orthanc_row(probe.label, sm, peer, probe.goal, throughput=probe.large)):
            row.data["accept"] = probe.accept
            rows.append(row)
        lines.append(samples_line(probe.label, {"smart": sm, "none": ap, "none-2": aa, "Orthanc": peer}))
    return authorized, ["\n".join(lines)]


def download_row(
    args: argparse.Namespace, workdir: Path, authorized: auth.Authorized | None, data: BenchData, rows: list[Row]
) -> list[str]:
    """`aperture download` of the CT against curl of the same study (bench/download.py); the samples as a note.

    Two rows: loopback (reported: the server's full speed, where Python's start outweighs curl's whole
    run) and the emulated link of download.LINK, which carries the goal.
    """
    label = f"Download: `aperture download` of the {len(data.ct)}-instance CT vs curl (study GET)"
    link_label = f"{label}, {download.LINK.label}"
    goal_text = f"≥{download.GOAL:g}× (within 10%)"
    if authorized is None:
        rows.append(Row(label, "n/a (no --auth smart server)", "n/a", None, None, "n/a"))
        rows.append(Row(link_label, "n/a (no --auth smart server)", "n/a", None, download.GOAL, "n/a", goal_text))
        return []
    subject = download.Subject(authorized, data.owner.ehr_id, data.study_uid, len(data.ct))
    log(f"{label}: warm-up + {args.download_rounds} rounds, taking turns")
    try:
        got = download.measure(workdir, subject, args.download_rounds, log)
    except (RuntimeError, PeerError, OSError, subprocess.TimeoutExpired) as exc:
        rows.append(Row(label, f"n/a (error: {exc})"[:200], "n/a", None, None, "n/a"))
        rows.append(Row(link_label, "n/a (not measured)", "n/a", None, download.GOAL, "n/a", goal_text))
        return [f"The download row was not measured: {exc}"]
    dl, cu, ratio = float(got["download"]), float(got["curl"]), float(got["ratio"])  # type: ignore[arg-type]
    fixed = float(got["fixed"])  # type: ignore[arg-type]
    mbytes = int(got["bytes"]) / MB  # type: ignore[call-overload]
    transfer = max(dl - fixed, 1e-3)
    rows.append(Row(label, f"{dl * 1000:.0f} ms ({mbytes / dl:.0f} MB/s): {fixed * 1000:.0f} ms start, sign-in "
                    f"and search + {transfer * 1000:.0f} ms transfer", f"curl: {cu * 1000:.0f} ms "
                    f"({mbytes / cu:.0f} MB/s)", ratio, None,
                    f"{ratio:.2f}× of curl (the transfer alone: {cu / transfer:.2f}×)", "— (loopback: reported)",
                    data=got))  # fmt: skip
    samples = got["samples"]
    assert isinstance(samples, dict)
    notes = [
        "Every sample of the loopback download row, ms, in the order taken (curl's body "
        f"{mbytes:.1f} MB; `aperture download` includes its process start and sign-in; 'fixed' is the same "
        "command for a study no one has): "
        + "; ".join(f"{side} " + ", ".join(f"{s * 1000:.0f}" for s in values) for side, values in samples.items())
    ]
    log(f"{link_label}: {args.download_link_rounds} rounds, taking turns")
    try:
        over = download.measure_link(workdir, subject, args.download_link_rounds, log)
    except (RuntimeError, PeerError, OSError, subprocess.TimeoutExpired) as exc:
        rows.append(Row(link_label, f"n/a (error: {exc})"[:200], "n/a", None, download.GOAL, "n/a", goal_text))
        return [*notes, f"The download row over the link was not measured: {exc}"]
    dl, cu, ratio = float(over["download"]), float(over["curl"]), float(over["ratio"])  # type: ignore[arg-type]
    floor = float(over["floor"])  # type: ignore[arg-type]
    rows.append(Row(link_label, f"{dl:.2f} s", f"curl: {cu:.2f} s (the link's floor for its bytes: {floor:.2f} s)",
                    ratio, download.GOAL, f"{ratio:.2f}× of curl", goal_text, data=over))  # fmt: skip
    link_samples = over["samples"]
    assert isinstance(link_samples, dict)
    notes.append(
        f"Every sample of the download row over {download.LINK.label}, ms, in the order taken: "
        + "; ".join(f"{side} " + ", ".join(f"{s * 1000:.0f}" for s in v) for side, v in link_samples.items())
    )
    return notes


# --------------------------------------------------------------------------------------------------
# Browser (bench/browser.py)


def browser_rows(
    args: argparse.Namespace,
    workdir: Path,
    servers: dict[str, Server | None],
    live: list[Target],
    data: BenchData,
    rows: list[Row],
    authorized: auth.Authorized | None = None,
) -> list[str]:
    """Append the OHIF rows (bench/browser.py) to ``rows``; return the notes to print under the table.

    Aperture is its own `/viewer/`, Orthanc OHIF's default configuration in nginx; with ``authorized``,
    the same rows for the `--auth smart` server (token on) and, on loopback, that server beside
    `--auth none` and a control.
    """
    n = len(data.ct)
    plan = [  # (condition, measurement, goal against Orthanc)
        ("loopback", "first slice drawn", 1.0),
        ("loopback", f"all {n} frames at full resolution", 2.0),
        ("loopback", "every slice viewable (Aperture) vs all frames (Orthanc)", None),
        ("20 Mbit/s, 40 ms", "first slice drawn", 1.5),
        ("20 Mbit/s, 40 ms", "every slice viewable (Aperture) vs all frames (Orthanc)", 2.0),
        ("20 Mbit/s, 40 ms", f"all {n} frames at full resolution", None),
    ]
    runs = {"loopback": args.browser_runs, "20 Mbit/s, 40 ms": args.browser_throttled_runs}

    def label(cond: str, what: str, prefix: str = "") -> str:
        return f"{prefix}OHIF in chromium: {what} ({cond}, median of {runs[cond]})"

    limit_label = f"OHIF in chromium: all {n} frames vs the link's limit (20 Mbit/s, 40 ms)"
    names = ["", *(["Auth: "] if authorized is not None else [])]

    def skip_all(reason: str) -> list[str]:
        for prefix in names:
            rows.extend(_skipped_row(label(c, w, prefix), reason, g or 2.0) for c, w, g in plan)
            rows.append(_skipped_row(prefix + limit_label, reason, 0.87))
        return []

    if args.no_browser:
        return skip_all("skipped: --no-browser")
    sides: list[browser.Side] = []
    fronts: list[Server] = []
    notes: list[str] = []
    if servers.get("Aperture") is not None and any(t.name == "Aperture" for t in live):
        sides.append(browser.Side("Aperture", servers["Aperture"].url + "/viewer/viewer"))  # type: ignore[union-attr]
    try:
        if servers.get("Orthanc") is not None and any(t.name == "Orthanc" for t in live):
            try:
                front = browser.start_front(workdir, "Orthanc", servers["Orthanc"].url)  # type: ignore[union-attr]
                fronts.append(front)
                sides.append(browser.Side("Orthanc", front.url + "/viewer"))
            except PeerError as exc:
                notes.append(f"OHIF: nginx in front of Orthanc did not start: {exc}")
        if authorized is not None:
            sides.append(browser.Side(SMART, authorized.server.url + "/viewer/viewer", authorized.token))
            if servers.get(CONTROL) is not None:
                control = browser.Side(CONTROL, servers[CONTROL].url + "/viewer/viewer", throttled=False)  # type: ignore[union-attr]
                sides.append(control)
        start = time.perf_counter()
        log(f"OHIF in chromium: {args.browser_runs} loopback, {args.browser_throttled_runs} throttled load(s) a side")
        try:
            conditions, reason = browser.compare(
                workdir, sides, data.study_uid, runs=args.browser_runs,
                throttled_runs=args.browser_throttled_runs, log=log,
            )  # fmt: skip
        except Exception as exc:  # the comparison is extra: its failure must not lose the table
            log(f"OHIF comparison failed: {type(exc).__name__}: {exc}")
            return skip_all(f"error: {type(exc).__name__}: {exc}"[:200])
    finally:
        for server in fronts:
            server.stop()
    if reason is not None:
        return skip_all(reason)
    log(f"OHIF in chromium: done in {time.perf_counter() - start:.0f} s")
    by_name = {c.name: c for c in conditions}

    def timing(measure: browser.Measure, name: str) -> Timing:
        return ohif_timing(measure, name, sides)

    for prefix, ours in (("", "Aperture"), ("Auth: ", SMART)):
        if prefix not in names:
            continue
        for cond_name, what, goal in plan:
            cond = by_name[cond_name]
            if cond.throttled and args.browser_throttled_runs == 0:
                rows.append(_skipped_row(label(cond_name, what, prefix), "skipped: --browser-throttled-runs 0"))
                continue
            if what.startswith("first"):
                ap, peer = timing(cond.first_slice, ours), timing(cond.first_slice, "Orthanc")
            elif what.startswith("every"):
                ap, peer = timing(cond.every_slice, ours), timing(cond.all_frames, "Orthanc")
            else:
                ap, peer = timing(cond.all_frames, ours), timing(cond.all_frames, "Orthanc")
            row = timing_row(label(cond_name, what, prefix), ap, peer, goal)
            if goal is None:
                row.goal_text = "—"
            rows.append(row)
        throttled = by_name["20 Mbit/s, 40 ms"]
        ap = timing(throttled.all_frames, ours)
        sent = throttled.bytes_sent.get(ours, [])
        if args.browser_throttled_runs == 0:
            rows.append(_skipped_row(prefix + limit_label, "skipped: --browser-throttled-runs 0", 0.87))
        elif not ap.ok or not sent:
            rows.append(Row(prefix + limit_label, ap.cell(), "n/a", None, 0.87, "n/a", "within 15%"))
        else:
            limit = browser.link_limit(statistics.median(sent))
            rows.append(Row(
                prefix + limit_label, ap.cell(),
                f"limit: {statistics.median(sent) / MB:.1f} MB ÷ 20 Mbit/s = {_ms(limit)}",
                limit / ap.median, 1 / 1.15, f"{ap.median / limit:.2f}× the limit", "≤1.15× the limit",
                data={"aperture": ap.as_json(), "bytes_sent": sent, "limit_s": limit},
            ))  # fmt: skip
    for cond in conditions:
        notes += [f"OHIF: {note}" for note in cond.notes]
        lines = [f"Every sample of the OHIF rows ({cond.name}), ms, in the order taken (one page load each):"]
        for what, measure in (("first slice", cond.first_slice), ("every slice viewable", cond.every_slice),
                              ("all frames", cond.all_frames)):  # fmt: skip
            lines.append(samples_line(what, {s.name: timing(measure, s.name) for s in sides if s.name in cond.loads}))
        notes.append("\n".join(lines))
    if authorized is not None:
        notes += auth_ohif_rows(args, workdir, sides, data, rows)
    return notes


def ohif_timing(measure: browser.Measure, name: str, sides: list[browser.Side]) -> Timing:
    """One side's samples of an OHIF measurement, or why there are none."""
    if name in measure.errors:
        return Timing(error=measure.errors[name])
    if measure.samples.get(name):
        return Timing(seconds=measure.samples[name])
    return Timing(error="not measured" if any(s.name == name for s in sides) else "not running")


def auth_ohif_rows(
    args: argparse.Namespace, workdir: Path, sides: list[browser.Side], data: BenchData, rows: list[Row]
) -> list[str]:
    """The smart-vs-none OHIF rows, from rounds of their own: only the three Aperture processes, on loopback.

    Their goal is a 5% difference, and one page load varies by more than that here, so three loads a
    side (the rows against Orthanc) cannot tell it from noise. These rounds give each side
    `--auth-browser-runs` loads, in every order of the three in turn (browser.turn_order); the
    control (a second `--auth none` process) shows how far two identical servers differ.
    """
    n, runs = len(data.ct), args.auth_browser_runs
    names = {"first": "first slice drawn", "all": f"all {n} frames"}
    label = {key: f"OHIF in chromium: {what} (loopback, median of {runs}, rounds of their own)"
             for key, what in names.items()}  # fmt: skip
    ours = [s for s in sides if s.name in ("Aperture", SMART, CONTROL)]
    reason = None
    if runs == 0:
        reason = "skipped: --auth-browser-runs 0"
    elif not any(s.name == "Aperture" for s in ours) or not any(s.name == SMART for s in ours):
        reason = "error: the --auth none or --auth smart viewer was not measured"
    if reason is None:
        log(f"OHIF smart vs none: {runs} loopback loads of {', '.join(s.name for s in ours)}")
        try:
            conditions, reason = browser.compare(workdir, ours, data.study_uid, runs=runs, throttled_runs=0, log=log)
        except Exception as exc:  # extra rows: their failure must not lose the table
            reason = f"error: {type(exc).__name__}: {exc}"[:200]
    if reason is not None:
        for key in names:
            rows.append(_skipped_row(label[key] + " — `--auth smart` vs `--auth none`", reason, AUTH_GOAL))
        return []
    loop = next(c for c in conditions if not c.throttled)

    lines = ["Every sample of the OHIF smart-vs-none rows (loopback, rounds of their own), ms, in the order taken:"]
    for key, measure in (("first", loop.first_slice), ("all", loop.all_frames)):
        smart, open_, control = (ohif_timing(measure, name, ours) for name in (SMART, "Aperture", CONTROL))
        row = smart_vs_open_row(label[key], smart, open_)
        if open_.ok and control.ok:
            row.ratio_text += f"; control none ÷ none-2 {open_.median / control.median:.3f}×"
        rows.append(row)
        lines.append(samples_line(names[key], {"smart": smart, "none": open_, "none-2": control}))
    return ["\n".join(lines)]


def _skipped_row(label: str, reason: str, goal: float = 2.0) -> Row:
    return Row(label, f"n/a ({reason})", f"n/a ({reason})", None, goal, "n/a", f"≥{goal:g}×")


# --------------------------------------------------------------------------------------------------
# Report


def environment(servers: dict[str, Server | None]) -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "client": f"httpx {httpx.__version__}, HTTP/1.1 keep-alive, Accept-Encoding: identity, sequential",
    }
    for name, server in servers.items():
        env[name] = server.version if server else "not running"
    return env


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_table(rows: Iterable[Row]) -> str:
    lines = [
        "| Measurement | Aperture | Peer | Peer ÷ Aperture time | Goal | Result |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = (row.label, row.aperture, row.peer, row.ratio_text, row.goal_text, row.result)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=300, help="CT slices (512x512, 16-bit); default 300")
    parser.add_argument("--small", type=int, default=2000, help="one-instance studies to load; default 2000")
    parser.add_argument("--repeat", type=int, default=20, help="timed repeats of the fast calls; default 20")
    parser.add_argument(
        "--repeat-large", type=int, default=5, help="timed repeats of the full-study retrieve; default 5"
    )
    parser.add_argument("--stow-batch", type=int, default=50, help="CT instances per STOW-RS request; default 50")
    parser.add_argument(
        "--stow-repeat", type=int, default=3, help="CT studies stored (new UIDs each), median shown; default 3"
    )
    parser.add_argument("--small-batch", type=int, default=100, help="small studies per STOW-RS request; default 100")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (data, configs, logs)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument(
        "--aperture-arg", action="append", default=[], metavar="ARG",
        help="extra argument for `aperture serve` (repeatable), e.g. --aperture-arg=--workers=2",
    )  # fmt: skip
    parser.add_argument(
        "--auth-rows", action=argparse.BooleanOptionalAction, default=True,
        help="time a second Aperture with --auth smart (EHR sandbox, a patient's bearer token) beside the\n"
        "--auth none one and Orthanc, on the same data, and OHIF through it on loopback; default on",
    )  # fmt: skip
    parser.add_argument(
        "--auth-repeat", type=int, default=100, help="timed repeats of each fast call in the auth rows; default 100"
    )
    parser.add_argument(
        "--auth-repeat-large", type=int, default=20, help="timed full-study retrieves in the auth rows; default 20"
    )
    parser.add_argument(
        "--download-rounds", type=int, default=5, help="timed `aperture download` / curl pairs of the CT; default 5"
    )
    parser.add_argument(
        "--download-link-rounds", type=int, default=3, help="the same pairs over the emulated link (13 s a side)"
    )
    parser.add_argument(
        "--auth-browser-runs", type=int, default=12,
        help="OHIF loopback loads a side in the smart-vs-none rows' own rounds (the three Aperture\n"
        "processes only, every order of the three in turn); default 12, 0 skips those rows",
    )  # fmt: skip
    parser.add_argument("--no-browser", action="store_true", help="skip the OHIF-in-chromium comparison")
    parser.add_argument("--browser-runs", type=int, default=3, help="OHIF page loads per server on loopback; default 3")
    parser.add_argument(
        "--browser-throttled-runs", type=int, default=3,
        help="OHIF page loads per server at 20 Mbit/s, 40 ms; default 3 (0 skips that condition)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.browser_runs < 1 or args.browser_throttled_runs < 0:
        parser.error("--browser-runs must be at least 1 and --browser-throttled-runs at least 0")
    if args.slices < 1 or args.small < 1 or args.repeat < 1 or args.repeat_large < 1:
        parser.error("--slices, --small, --repeat and --repeat-large must be at least 1")
    if args.auth_browser_runs < 0:
        parser.error("--auth-browser-runs must be at least 0")
    if args.auth_repeat < 1 or args.auth_repeat_large < 1:
        parser.error("--auth-repeat and --auth-repeat-large must be at least 1")
    if args.stow_batch < 1 or args.small_batch < 1:
        parser.error("batch sizes must be at least 1")
    if args.stow_repeat < 1:
        parser.error("--stow-repeat must be at least 1")
    return args


def _requests(n: int, batch: int) -> str:
    return f"{n} request of ≤{batch}" if n == 1 else f"{n} requests of ≤{batch}"


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # even if started with SIGINT ignored
        signal.signal(signum, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="aperture-bench-"))
    log(f"work directory {workdir}")
    servers: dict[str, Server | None] = {"Aperture": None, "Orthanc": None, "nginx": None}
    clients: list[httpx.Client] = []
    try:
        return run(args, workdir, servers, clients)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except PeerError as exc:
        log(f"harness failure: {exc}\n{exc.detail}")
        return 1
    finally:
        for client in clients:
            client.close()
        for name, server in servers.items():
            if server is not None:
                log(f"stopping {name} (pid {server.proc.pid})")
                server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path, servers: dict[str, Server | None], clients: list[httpx.Client]) -> int:
    load_before = os.getloadavg()
    if load_before[0] > BUSY_LOAD:
        log(f"WARNING: load average {load_before[0]:.2f} before the run: other work will add noise to the numbers")
    data = generate(args.slices, args.small, args.stow_repeat)
    harness_problems: list[str] = []
    creation_us = file_creation_cost(workdir)
    if creation_us > SLOW_CREATE_US:
        log(
            f"WARNING: creating a file takes {creation_us:.0f} µs here (usually ~20 µs): many files were deleted "
            "nearby in the last minutes. STOW-RS rows will be slow; wait 5 minutes, or set TMPDIR elsewhere."
        )

    servers["Orthanc"] = orthanc = start_orthanc(workdir)
    log(f"Orthanc {orthanc.version} at {orthanc.url} (pid {orthanc.proc.pid})")
    if not orthanc.version.startswith("1.10"):
        log(f"WARNING: expected the packaged Orthanc 1.10, got {orthanc.version}")
    aperture_error: str | None = None
    try:
        servers["Aperture"] = aperture = start_aperture(workdir, args.aperture_arg)
        log(f"Aperture {aperture.version} at {aperture.url} (pid {aperture.proc.pid})")
    except PeerError as exc:
        aperture_error = str(exc)
        log(f"Aperture is not available, its column will read n/a: {exc}\n{exc.detail}")

    targets: list[Target] = []
    for name in ("Aperture", "Orthanc"):
        server = servers[name]
        if server is not None:
            client = make_client()
            clients.append(client)
            targets.append(Target(name, client, server.url + "/dicom-web", root=server.url))

    # Load.
    n_ct_req = math.ceil(len(data.ct) / args.stow_batch)
    n_small_req = math.ceil(len(data.small) / args.small_batch)
    stows: dict[str, dict[str, Stow]] = {"ct": {}, "small": {}}
    ct_runs: dict[str, list[Stow]] = {t.name: [] for t in targets}
    for number, files in enumerate([data.ct, *data.ct_copies], start=1):
        for target in targets if number % 2 else targets[::-1]:  # who goes first alternates
            if any(r.error is not None for r in ct_runs[target.name]):
                continue
            if servers.get("Aperture") is not None:  # every sample starts with both servers quiet
                wait_for_background(servers["Aperture"])  # type: ignore[arg-type]
            settle_disk()
            log(f"STOW-RS CT study #{number} into {target.name}: {len(files)} instances in {n_ct_req} requests")
            ct_runs[target.name].append(stow(target.client, target.base, files, args.stow_batch))
    for target in targets:
        stows["ct"][target.name] = result = Stow.median_of(ct_runs[target.name])
        if result.error is None:
            log(f"STOW-RS small studies into {target.name}: {len(data.small)} in {n_small_req} requests")
            stows["small"][target.name] = stow(target.client, target.base, data.small, args.small_batch)
            long_load = stow(target.client, target.base, data.long_series, 100)
            if long_load.error is not None:
                stows["small"][target.name] = long_load  # the series metadata probe needs it loaded
        for kind in ("ct", "small"):
            error = stows[kind].get(target.name, Stow(error="not loaded")).error
            if error is not None:
                log(f"{target.name} STOW-RS ({kind}) failed: {error}")
                if target.name == "Orthanc":
                    harness_problems.append(f"Orthanc rejected the {kind} STOW-RS: {error}")
    live = [t for t in targets if all(t.name in s and s[t.name].error is None for s in stows.values())]
    if servers.get("Aperture") is not None:
        wait_for_background(servers["Aperture"])  # type: ignore[arg-type]
    # What Aperture's cells say when it could not be measured; the reason is printed below the table.
    absent = "not running, see below"
    if aperture_error is None and "Aperture" not in {t.name for t in live}:
        aperture_error = "STOW-RS of the benchmark data failed (see the STOW rows)"
        absent = "data not loaded, see the STOW rows"

    rows: list[Row] = []
    stow_labels = {
        "ct": f"STOW-RS CT study, {len(data.ct)} instances, {data.ct_bytes / MB:.0f} MB "
        f"({_requests(n_ct_req, args.stow_batch)}; each time new UIDs)",
        "small": f"STOW-RS {len(data.small)} one-instance studies ({_requests(n_small_req, args.small_batch)})",
    }
    for kind, label in stow_labels.items():
        ap_stow = stows[kind].get("Aperture") or Stow(error=absent)
        peer_stow = stows[kind].get("Orthanc") or Stow(error="not loaded")
        ratio = peer_stow.seconds / ap_stow.seconds if ap_stow.error is None and peer_stow.error is None else None
        ratio_text = "n/a" if ratio is None else f"{ratio:.2f}×"
        data_json = {"aperture": vars(ap_stow), "peer": vars(peer_stow)}
        goal = 3.0 if kind == "ct" else None  # the goal: STOW of the CT study at 3x Orthanc's rate
        goal_text = "—" if goal is None else f"≥{goal:g}×"
        rows.append(Row(label, ap_stow.cell(), peer_stow.cell(), ratio, goal, ratio_text, goal_text, data=data_json))
    rows.append(htj2k_stow_row(workdir, data, args, stows["ct"].get("Aperture")))

    # nginx serves, as a static file with sendfile, the bytes of Aperture's full-study answer (Orthanc's
    # if Aperture is out); it is measured in the same rounds as the full-study retrieve of both servers.
    all_probes = probes(data)
    study_probe = next(p for p in all_probes if p.key == "study")
    nginx_label = "Full study: Aperture vs nginx (same bytes, static file)"
    nginx_target = None
    source = next((t for t in live if t.name == "Aperture"), None) or next(
        (t for t in live if t.name == "Orthanc"), None
    )
    if source is None:
        harness_problems.append("no full-study answer to serve from nginx")
    else:
        if source.name != "Aperture":
            nginx_label += " — nginx serves Orthanc's answer"
        study_file = workdir / "www" / "study.multipart"
        study_file.parent.mkdir(parents=True, exist_ok=True)
        log(f"saving {source.name}'s full-study answer for nginx")
        reply = fetch(source.client, source.url(study_probe), study_probe.accept, stream=True, sink=study_file)
        problem = study_probe.check(reply)
        if problem:
            harness_problems.append(f"no full-study answer to serve from nginx: {source.name}: {problem}")
        else:
            servers["nginx"] = nginx = start_nginx(workdir, study_file, reply.content_type)
            log(f"nginx {nginx.version} at {nginx.url} (pid {nginx.proc.pid}) serves {source.name}'s answer")
            client = make_client()
            clients.append(client)
            nginx_target = Target("nginx", client, nginx.url, paths={"study": "/" + study_file.name})

    ceiling_note = ""
    for probe in all_probes:
        repeat = args.repeat_large if probe.large else args.repeat
        targets_now = [*live, nginx_target] if probe is study_probe and nginx_target else live
        log(f"{probe.label}: warm-up + {repeat} rounds of {', '.join(t.name for t in targets_now)}")
        timings = measure(probe, targets_now, repeat)
        ap = timings.get("Aperture") or Timing(error=absent)
        peer = timings.get("Orthanc") or Timing(error="not running")
        if peer.error:
            harness_problems.append(f"Orthanc failed '{probe.label}': {peer.error}")
        row = timing_row(probe.label, ap, peer, probe.goal, throughput=probe.large)
        row.data["accept"] = probe.accept
        rows.append(row)
        if probe is study_probe:
            ng = timings.get("nginx") or Timing(error="not running")
            if nginx_target and ng.error:
                harness_problems.append(f"nginx failed: {ng.error}")
            row = timing_row(nginx_label, ap, ng, 0.75, throughput=True)
            row.peer = f"nginx: {row.peer}"
            row.ratio_text = "n/a" if row.ratio is None else f"{row.ratio:.0%} of nginx throughput"
            row.goal_text = "≥75%"
            rows.append(row)
            ceiling_note = client_ceiling_note(ap, peer, ng)

    authorized, auth_notes = auth_rows(args, workdir, servers, live, data, rows, clients)
    auth_notes += download_row(args, workdir, authorized, data, rows)
    browser_notes = browser_rows(args, workdir, servers, live, data, rows, authorized)
    browser_notes = auth_notes + browser_notes
    if ceiling_note:
        browser_notes.insert(0, ceiling_note)

    # Report.
    env = environment(servers)
    busy = " — the machine was busy: expect noise" if load_before[0] > BUSY_LOAD else ""
    env["load average before the run"] = " / ".join(f"{x:.2f}" for x in load_before) + f" (1/5/15 min){busy}"
    slow = " — slow: files were deleted nearby in the last minutes" if creation_us > SLOW_CREATE_US else ""
    env["file creation in the data folders"] = f"{creation_us:.0f} µs per file{slow}"
    env["dataset"] = (
        f"CT {len(data.ct)} × {data.rows}×{data.cols} 16-bit ({data.ct_bytes / MB:.1f} MB), "
        f"{len(data.small)} one-instance studies; {data.n_studies} studies in total"
    )
    if authorized is not None:
        entry = f"token for seed patient {data.owner.ehr_id} ({auth.APP}, `{auth.APP_SCOPE}`), "
        entry += f"unlisted_studies {auth.unlisted_policy(authorized.introspection, data.owner)}; "
        entry += "introspected at the EHR sandbox, cached per token for auth.cache_seconds (default 5 s)"
        env["--auth smart"] = entry
    env["timing"] = (
        f"median and p95 of {args.repeat} repeats ({args.repeat_large} for full-study retrieves) "
        "after one warm-up request per server; servers measured alternately"
    )
    print(f"\n## Aperture vs Orthanc {servers['Orthanc'].version if servers['Orthanc'] else ''}\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    print()
    print(render_table(rows))
    goals = [r for r in rows if r.goal is not None]
    met = sum(r.result == "PASS" for r in goals)
    unmeasured = sum(r.result == "n/a" for r in goals)
    summary = f"{met} of {len(goals)} goals met" + (f" ({unmeasured} not measured)" if unmeasured else "")
    print(f"\n{summary}. Peer = Orthanc unless stated; a ratio above 1 means Aperture is faster.")
    for note in browser_notes:
        print(f"\n{note}")
    if aperture_error:
        print(f"\nAperture was not measured: {aperture_error}")
    for problem in harness_problems:
        print(f"\nHARNESS PROBLEM: {problem}")
    if args.json:
        payload = {
            "environment": env,
            "rows": [
                {
                    "measurement": r.label,
                    "aperture": r.aperture,
                    "peer": r.peer,
                    "ratio": r.ratio,
                    "goal": r.goal,
                    "result": r.result,
                    **r.data,
                }
                for r in rows
            ],  # fmt: skip
            "aperture_error": aperture_error,
            "harness_problems": harness_problems,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        log(f"wrote {args.json}")
    return 1 if harness_problems else 0


if __name__ == "__main__":
    sys.exit(main())
