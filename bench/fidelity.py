"""Fidelity beside Orthanc, in the same run: which pydicom-data files come back byte-identical.

Every distinct instance of pydicom-data (the first file of each SOP Instance UID, as
`tests/data.py` picks them) is sent alone with STOW-RS to Aperture and to Orthanc, then fetched
with WADO-RS `transfer-syntax=*` and compared with the uploaded bytes. Each file lands in one of:
identical, refused (the server said so: FailedSOPSequence or an error status), or changed (stored
but served different bytes: the outcome that must never happen).

Run: `.venv/bin/python bench/fidelity.py` (also part of `make bench`).
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.peers import start_aperture, start_orthanc  # noqa: E402
from tests.data import PYDICOM_DATA  # noqa: E402

BOUNDARY = "aperture-fidelity-boundary"


def check(client: httpx.Client, base: str, path: Path) -> str:
    original = path.read_bytes()
    body = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + original
    body += f"\r\n--{BOUNDARY}--\r\n".encode()
    response = client.post(
        f"{base}/studies",
        content=body,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
                 "Accept": "application/dicom+json"},
    )  # fmt: skip
    if response.status_code >= 500:
        return "server error"
    try:
        answer = response.json()
    except ValueError:
        return "refused"
    referenced = (answer.get("00081199") or {}).get("Value") or []
    if not referenced or response.status_code not in (200, 202):
        return "refused"
    url = referenced[0]["00081190"]["Value"][0]
    served = client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    if served.status_code != 200:
        return "stored, not retrievable"
    start = served.content.find(b"\r\n\r\n") + 4
    end = served.content.rfind(b"\r\n--")
    return "identical" if served.content[start:end] == original else "changed"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="aperture-fidelity-") as scratch:
        work = Path(scratch)
        servers = {"Aperture": start_aperture(work), "Orthanc": start_orthanc(work)}
        try:
            results: dict[str, Counter[str]] = {}
            with httpx.Client(timeout=60) as client:
                for name, server in servers.items():
                    base = server.url + "/dicom-web"
                    results[name] = Counter(check(client, base, path) for path in PYDICOM_DATA)
        finally:
            for server in servers.values():
                server.stop()
    with_uid = sum(1 for _ in PYDICOM_DATA)
    print(f"\npydicom-data: {with_uid} distinct files (first file per SOP Instance UID; unreadable files each count)")
    print("| Outcome | Aperture | Orthanc |\n|---|---|---|")
    for outcome in ("identical", "refused", "changed", "stored, not retrievable", "server error"):
        print(f"| {outcome} | {results['Aperture'][outcome]} | {results['Orthanc'][outcome]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
