"""`aperture transmit` to Orthanc (Debian) over STOW-RS and C-STORE, verified on the receiver.

Orthanc's DICOM port takes only Explicit and Implicit VR Little Endian (AcceptedTransferSyntaxes),
so a JPEG instance must be transcoded for C-STORE. Refusals come from receivers that refuse for
real: another Aperture holding different content under the same UIDs (STOW-RS, 0111) and a
pynetdicom SCP failing some instances (C-STORE, A900). A small TCP front that resets its first
connection stands for a transient failure.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE, build_context, evt

from aperture.clients.transmit.address import Peer
from aperture.clients.transmit.dimse import DimseSender
from aperture.clients.transmit.retry import Backoff
from aperture.clients.transmit.run import transmit
from aperture.clients.transmit.source import DicomwebSource, FolderSource
from aperture.clients.transmit.stow import StowSender
from tests.conftest import ApertureServer, free_port
from tests.data import PYDICOM_DATA
from tests.helpers import make_instance, stow
from tests.interop.test_orthanc_peer import ORTHANC, Orthanc, dicomweb_plugin, unique_patient, wait_for_orthanc

pytestmark = pytest.mark.interop

AET = "ORTHANCT"
FAST = Backoff(attempts=4, base=0.2)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, int]]:
    if not ORTHANC.exists():
        pytest.fail(f"{ORTHANC} is missing: `make install` installs the Debian packages orthanc and orthanc-dicomweb")
    root = tmp_path_factory.mktemp("orthanc-receiver")
    port, dicom_port = free_port(), free_port()
    config = {
        "Name": "transmit-receiver",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": True,
        "DicomAet": AET,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "AcceptedTransferSyntaxes": ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"],
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(dicomweb_plugin())],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = root / "orthanc.log"
    handle = open(log, "wb")
    process = subprocess.Popen([str(ORTHANC), str(root / "orthanc.json")], stdout=handle, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        wait_for_orthanc(process, http, log)
        yield Orthanc(process, f"http://127.0.0.1:{port}", log, http), dicom_port
    finally:
        http.close()
        process.terminate()
        process.wait(timeout=20)
        handle.close()


def put_study(client: httpx.Client, prefix: str, count: int = 3, refuse: int = 0) -> tuple[str, dict[str, bytes]]:
    """A study in Aperture: `count` instances, the last `refuse` of them in a series Orthanc refuses."""
    patient, study = unique_patient(prefix), generate_uid()
    files = {}
    for number in range(1, count + 1):
        sop = generate_uid()
        description = "REFUSE" if number > count - refuse else "Test series"
        files[sop] = make_instance(study=study, sop=sop, patient_id=patient, instance_number=number,
                                   extra={"SeriesDescription": description})  # fmt: skip
    response = stow(client, files.values())
    assert response.status_code == 200, response.text
    return study, files


def put_file(client: httpx.Client, name: str, study: str, like: bytes) -> tuple[str, bytes]:
    """A pydicom-data file added to `study`, with the patient of the instance `like`."""
    path = get_testdata_file(name)
    assert path is not None
    ds = pydicom.dcmread(path)
    patient = pydicom.dcmread(io.BytesIO(like), stop_before_pixels=True)
    for keyword in ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex"):
        setattr(ds, keyword, patient.get(keyword))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    response = stow(client, [out.getvalue()])
    assert response.status_code == 200, response.text
    return ds.SOPInstanceUID, out.getvalue()


def orthanc_file(orthanc: Orthanc, sop: str) -> bytes | None:
    found = orthanc.lookup(sop, "Instance")
    return None if found is None else orthanc.get(f"/instances/{found}/file").content


def data_set(part10: bytes) -> bytes:
    """The bytes after the file meta group (C-STORE sends the data set; the receiver writes its own meta)."""
    assert part10[128:132] == b"DICM"
    meta_length = int.from_bytes(part10[140:144], "little")  # (0002,0000) File Meta Information Group Length
    return part10[144 + meta_length :]


def same_elements(theirs: bytes, ours: bytes) -> bool:
    """Every data element's value bytes equal, group lengths aside: Orthanc's DCMTK recomputes or drops the
    retired (gggg,0000) elements some pydicom-data files hold, and re-encodes undefined lengths."""

    def elements(data: bytes) -> dict[int, object]:
        ds = pydicom.dcmread(io.BytesIO(data))
        return {int(e.tag): e.value for e in ds.iterall() if e.tag.element != 0 and e.VR != "SQ"}

    return elements(theirs) == elements(ours)


def test_stow_rs_to_orthanc_byte_for_byte_and_idempotent(
    receiver: tuple[Orthanc, int], client: httpx.Client, server: ApertureServer, tmp_path: Path
) -> None:
    orthanc, _ = receiver
    study, files = put_study(client, "TXSTOW")
    jpeg_sop, jpeg = put_file(client, "SC_rgb_jpeg_dcmtk.dcm", study, next(iter(files.values())))
    files[jpeg_sop] = jpeg
    source = DicomwebSource(server.dicomweb, studies=[study])
    sender = StowSender(f"{orthanc.url}/dicom-web", backoff=FAST)
    report = transmit(source, sender, "dicomweb:orthanc")
    assert report.complete, report.to_json()
    assert {r.sop_instance for r in report.results} == set(files)
    for sop, data in files.items():
        assert orthanc_file(orthanc, sop) == data, f"Orthanc's copy of {sop} differs"
    before = len(orthanc.get("/instances").json())
    again = transmit(source, sender, "dicomweb:orthanc")  # the receiver has them all: still acknowledged
    assert again.complete and again.counts()["sent"] == len(files)
    assert len(orthanc.get("/instances").json()) == before


def test_c_store_to_orthanc_sends_as_stored_and_transcodes_only_the_refused_syntax(
    receiver: tuple[Orthanc, int], client: httpx.Client, server: ApertureServer
) -> None:
    orthanc, dicom_port = receiver
    study, files = put_study(client, "TXDIMSE")
    jpeg_sop, jpeg = put_file(client, "SC_rgb_jpeg_dcmtk.dcm", study, next(iter(files.values())))
    sender = DimseSender(Peer(AET, "127.0.0.1", dicom_port), backoff=FAST)
    report = transmit(DicomwebSource(server.dicomweb, studies=[study]), sender, "dimse:x")
    assert report.complete, report.to_json()
    by_sop = {r.sop_instance: r for r in report.results}
    for sop, data in files.items():  # Explicit VR LE, accepted as stored: the data set byte for byte
        assert by_sop[sop].sent_as == by_sop[sop].transfer_syntax
        received = orthanc_file(orthanc, sop)
        assert received is not None and data_set(received) == data_set(data)
    # JPEG Baseline is not accepted by this Orthanc: decoded to little endian, so pixels are compared
    assert by_sop[jpeg_sop].transfer_syntax == "1.2.840.10008.1.2.4.50"
    assert by_sop[jpeg_sop].sent_as in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
    received = orthanc_file(orthanc, jpeg_sop)
    assert received is not None
    theirs = pydicom.dcmread(io.BytesIO(received))
    ours = pydicom.dcmread(io.BytesIO(jpeg))
    assert np.array_equal(theirs.pixel_array, ours.pixel_array)


def start_refusing_scp() -> tuple[int, Any]:
    """A pynetdicom Storage SCP that fails (A900) every instance whose Series Description is REFUSE:
    (its port, the server to `shutdown()`)."""

    def handle_store(event: Any) -> int:
        return 0xA900 if event.dataset.get("SeriesDescription") == "REFUSE" else 0x0000

    ae = AE(ae_title="REFUSER")
    ae.supported_contexts = [build_context(SecondaryCaptureImageStorage, [ExplicitVRLittleEndian])]
    port = free_port()
    scp = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    return port, scp


@pytest.fixture
def refusing_scp() -> Iterator[int]:
    port, scp = start_refusing_scp()
    yield port
    scp.shutdown()


def prestore_conflicts(receiver: ApertureServer, files: dict[str, bytes]) -> None:
    """Give `receiver` other content under the last two SOP Instance UIDs: it refuses those (0111)."""
    with httpx.Client(base_url=receiver.dicomweb, timeout=60) as http:
        for sop in list(files)[2:]:
            ds = pydicom.dcmread(io.BytesIO(files[sop]))
            ds.SeriesDescription = "Other content"
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            assert stow(http, [out.getvalue()]).status_code == 200


@pytest.mark.parametrize("protocol", ["stow", "dimse"])
def test_refused_instances_are_reported_and_exit_non_zero(
    protocol: str,
    client: httpx.Client,
    server: ApertureServer,
    fresh_server: ApertureServer,
    refusing_scp: int,
    tmp_path: Path,
) -> None:
    """STOW-RS to another Aperture that holds different content under two of the UIDs (0111, 409/202),
    C-STORE to a pynetdicom SCP that fails two instances (A900): both listed as refused, with reasons."""
    study, files = put_study(client, f"TXREF{protocol}", count=4, refuse=2)
    if protocol == "stow":
        prestore_conflicts(fresh_server, files)
        to = f"dicomweb:{fresh_server.dicomweb}"
    else:
        to = f"dimse:REFUSER@127.0.0.1:{refusing_scp}"
    report_path = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "aperture", "transmit", "--source", server.dicomweb, "--study", study, "--to", to,
         "--report", str(report_path), "--retries", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    document = json.loads(report_path.read_text())
    outcomes = {item["sop_instance"]: item for item in document["instances"]}
    expected = sorted(list(files)[2:])
    refused = sorted(sop for sop, item in outcomes.items() if item["outcome"] == "refused")
    assert refused == expected, document
    assert {outcomes[sop]["status"] for sop in refused} == {"0111" if protocol == "stow" else "A900"}
    assert all(outcomes[sop]["reason"] and outcomes[sop]["attempts"] == 1 for sop in refused)  # never retried
    assert all(outcomes[sop]["outcome"] == "sent" for sop in list(files)[:2])
    assert all(sop in done.stderr for sop in refused)  # listed as it happens
    if protocol == "stow":  # the receiver has what was reported sent, byte for byte
        with httpx.Client(base_url=fresh_server.dicomweb, timeout=60) as http:
            for sop in list(files)[:2]:
                served = http.get(f"/studies/{study}/series/{outcomes[sop]['series']}/instances/{sop}",
                                  headers={"Accept": "application/dicom; transfer-syntax=*"})  # fmt: skip
                assert served.content == files[sop]
    # a rerun that skips what the report says was acknowledged sends only the refused ones again
    again = subprocess.run(
        [sys.executable, "-m", "aperture", "transmit", "--source", server.dicomweb, "--study", study, "--to", to,
         "--skip-acknowledged", str(report_path), "--report", str(tmp_path / "again.json"), "--retries", "0"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert again.returncode == 1
    rerun = {i["sop_instance"]: i["outcome"] for i in json.loads((tmp_path / "again.json").read_text())["instances"]}
    assert rerun == {**{sop: "skipped" for sop in list(files)[:2]}, **{sop: "refused" for sop in expected}}


class ResetFirst:
    """A TCP front for 127.0.0.1:`target` that resets its first `drops` connections, then relays."""

    def __init__(self, target: int, drops: int = 1, answer: bytes | None = None) -> None:
        self.target, self.drops, self.accepted, self.answer = target, drops, 0, answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drops and self.answer is not None:  # read the request, answer, close
                conn.settimeout(10)
                received = b""
                try:
                    while b"--\r\n" not in received[-64:]:  # the multipart body's closing delimiter
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        received += chunk
                    conn.sendall(self.answer)
                finally:
                    conn.close()
                continue
            if self.accepted <= self.drops:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()  # RST
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("protocol", ["stow", "dimse"])
def test_a_reset_connection_is_retried(
    protocol: str, receiver: tuple[Orthanc, int], client: httpx.Client, server: ApertureServer
) -> None:
    orthanc, dicom_port = receiver
    study, files = put_study(client, f"TXRST{protocol}")
    target = int(orthanc.url.rsplit(":", 1)[1]) if protocol == "stow" else dicom_port
    front = ResetFirst(target)
    try:
        if protocol == "stow":
            sender: StowSender | DimseSender = StowSender(f"http://127.0.0.1:{front.port}/dicom-web", backoff=FAST)
        else:
            sender = DimseSender(Peer(AET, "127.0.0.1", front.port), backoff=FAST)
        report = transmit(DicomwebSource(server.dicomweb, studies=[study]), sender, "x")
    finally:
        front.close()
    assert report.complete, report.to_json()
    assert front.accepted >= 2
    assert all(r.attempts == 2 for r in report.results), report.to_json()
    for sop, data in files.items():
        received = orthanc_file(orthanc, sop)
        assert received is not None and data_set(received) == data_set(data)


@pytest.mark.parametrize("protocol", ["stow", "dimse"])
def test_pydicom_data_odd_files_are_sent_or_refused_never_claimed(
    protocol: str, receiver: tuple[Orthanc, int], fresh_server: ApertureServer, tmp_path: Path
) -> None:
    """Every pydicom-data file Aperture stores, from a folder source: each one the report calls sent is on
    Orthanc (STOW-RS: the same file; C-STORE as stored: the same data set; transcoded: the same pixels),
    and each one it does not is listed with a reason."""
    orthanc, dicom_port = receiver
    folder = tmp_path / "odd"
    folder.mkdir()
    with httpx.Client(base_url=fresh_server.dicomweb, timeout=60) as http:
        for number, path in enumerate(PYDICOM_DATA):
            if stow(http, [path.read_bytes()]).status_code == 200:  # what Aperture accepts, as a folder to send
                (folder / f"{number:04d}.dcm").write_bytes(path.read_bytes())
    source = FolderSource(folder)
    if protocol == "stow":
        sender: StowSender | DimseSender = StowSender(f"{orthanc.url}/dicom-web", backoff=FAST)
    else:
        sender = DimseSender(Peer(AET, "127.0.0.1", dicom_port), backoff=FAST)
    report = transmit(source, sender, protocol)
    assert len(report.results) >= 50
    counts = report.counts()
    assert counts["sent"] >= len(report.results) // 2, counts
    for result in report.results:
        ours = Path(str(result.source)).read_bytes()
        theirs = orthanc_file(orthanc, result.sop_instance)
        if result.outcome != "sent":
            assert result.reason, result
            continue
        assert theirs is not None, f"reported sent, missing on Orthanc: {result}"
        if protocol == "stow":
            assert theirs == ours, result.source
        elif result.sent_as == result.transfer_syntax:
            assert data_set(theirs) == data_set(ours) or same_elements(theirs, ours), result.source
        else:
            a, b = pydicom.dcmread(io.BytesIO(theirs)), pydicom.dcmread(io.BytesIO(ours))
            assert np.array_equal(a.pixel_array, b.pixel_array), result.source


def test_stow_503_with_retry_after_is_retried(
    receiver: tuple[Orthanc, int], client: httpx.Client, server: ApertureServer
) -> None:
    orthanc, _ = receiver
    study, files = put_study(client, "TX503")
    busy = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    front = ResetFirst(int(orthanc.url.rsplit(":", 1)[1]), answer=busy)
    try:
        started = time.monotonic()
        report = transmit(DicomwebSource(server.dicomweb, studies=[study]),
                          StowSender(f"http://127.0.0.1:{front.port}/dicom-web", backoff=FAST), "x")  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        front.close()
    assert report.complete, report.to_json()
    assert all(r.attempts == 2 for r in report.results)
    assert elapsed >= 1.0  # waited as Retry-After said, not the 0.2 s backoff
    for sop, data in files.items():
        assert orthanc_file(orthanc, sop) == data
