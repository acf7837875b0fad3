"""`aperture demo`: the imaging server with sample studies loaded, printing the URLs to open.

Sample studies: a synthetic CT series and every storable file of pydicom's test data set (real
files from many vendors, compressed and odd ones included). They are stored through the same
STOW-RS path a modality would use, once the server answers.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("demo", help="start the server with sample studies and print the URLs")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: a new temporary one)")
    parser.add_argument("--no-wait", action="store_true", help="load the samples and exit (for checks)")
    parser.set_defaults(handler=run)


def _sample_files() -> list[bytes]:
    import pydicom
    from pydicom.data import get_testdata_files

    from aperture.dicom.synthetic import ct_study

    files = list(ct_study(n_slices=40, rows=256, cols=256, patient_id="DEMO-CT", patient_name="Demo^Ct"))
    seen: set[str] = set()
    for name in sorted(get_testdata_files("*.dcm")):
        data = Path(name).read_bytes()
        try:
            uid = str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True).get("SOPInstanceUID", ""))
        except Exception:
            uid = ""
        if uid and uid in seen:
            continue  # pydicom's data set has variants of one instance; the first one is the sample
        seen.add(uid)
        files.append(data)
    return files


def _stow(client: httpx.Client, base: str, files: list[bytes]) -> tuple[int, int]:
    stored = failed = 0
    for start in range(0, len(files), 25):
        boundary = "aperture-demo-boundary"
        body = (
            b"".join(
                b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
                for data in files[start : start + 25]
            )
            + b"--"
            + boundary.encode()
            + b"--\r\n"
        )
        response = client.post(
            f"{base}/studies",
            content=body,
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                     "Accept": "application/dicom+json"},
        )  # fmt: skip
        answer = response.json() if response.content else {}
        stored += len((answer.get("00081199") or {}).get("Value", []))
        failed += len((answer.get("00081198") or {}).get("Value", []))
    return stored, failed


def run(args: argparse.Namespace) -> int:
    data = args.data or Path(tempfile.mkdtemp(prefix="aperture-demo-"))
    base = f"http://127.0.0.1:{args.port}/dicom-web"
    command = [sys.executable, "-m", "aperture", "serve", "--host", "127.0.0.1", "--port", str(args.port),
               "--data", str(data), "--auth", "none"]  # fmt: skip
    data.mkdir(parents=True, exist_ok=True)
    log_path = data / "server.log"
    log = open(log_path, "ab")
    server = subprocess.Popen(command, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)
    warnings.simplefilter("ignore")  # pydicom's warnings about odd sample files are not news here
    try:
        with httpx.Client(timeout=60) as client:
            for _ in range(200):
                try:
                    if client.get(f"http://127.0.0.1:{args.port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                print(f"aperture demo: the server did not start; see {log_path}.", file=sys.stderr)
                return 1
            stored, failed = _stow(client, base, _sample_files())
            studies = client.get(f"{base}/studies", params={"limit": 1000}).json()
        print()
        print(f"Aperture demo is running ({stored} sample instances stored, {failed} refused as unstorable).")
        print(f"  DICOMweb base (QIDO/WADO/STOW): {base}")
        print(f"  All studies:                    {base}/studies")
        if studies:
            uid = studies[0]["0020000D"]["Value"][0]
            print(f"  A study's metadata:             {base}/studies/{uid}/metadata")
            print(f"  Download it as a zip:           {base}/studies/{uid}?accept=application/zip")
        print(f"  Health:                         http://127.0.0.1:{args.port}/healthz")
        print(f"  Data folder:                    {data}")
        print(f"  Server log:                     {log_path}")
        if args.no_wait:
            print("(--no-wait: stopping the server now.)", flush=True)
            return 0
        print("Press Ctrl-C to stop.", flush=True)
        server.wait()
        return server.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
