"""Orthanc (Debian's 1.10 with the DICOMweb plugin 1.7) as a DICOMweb client of Aperture.

One Orthanc per module, with the shared Aperture server declared as its DICOMweb server
"aperture". Orthanc's REST API for the plugin's client side is what drives the peer:
`POST /dicom-web/servers/aperture/get` (any GET, QIDO or metadata, answer relayed),
`.../qido` (QIDO, answer converted to Orthanc's tag format), `.../retrieve` (WADO-RS into
Orthanc's store) and `.../stow` (STOW-RS of Orthanc's instances into Aperture).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.conftest import ApertureServer, free_port
from tests.helpers import make_instance, sequence_items, stow

pytestmark = pytest.mark.interop

ORTHANC = Path("/usr/sbin/Orthanc")
AS_STORED = "application/dicom; transfer-syntax=*"


@dataclass
class Orthanc:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    http: httpx.Client

    def post(self, path: str, body: object) -> httpx.Response:
        response = self.http.post(path, content=json.dumps(body))
        assert response.status_code == 200, f"Orthanc {path}: {response.status_code} {response.text}\n{self.tail()}"
        return response

    def get(self, path: str) -> httpx.Response:
        response = self.http.get(path)
        assert response.status_code == 200, f"Orthanc {path}: {response.status_code} {response.text}\n{self.tail()}"
        return response

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def lookup(self, uid: str, level: str) -> str | None:
        """Orthanc's ID of the study/series/instance with this DICOM UID, or None."""
        response = self.http.post("/tools/lookup", content=uid)  # the bare UID, not JSON
        assert response.status_code == 200, f"Orthanc /tools/lookup: {response.status_code} {response.text}"
        for hit in response.json():
            if hit["Type"] == level:
                return str(hit["ID"])
        return None


def wait_for_orthanc(process: subprocess.Popen[bytes], http: httpx.Client, log: Path, seconds: float = 30) -> None:
    """Until Orthanc answers /system; fails the test with its log if it exits or stays silent."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            pytest.fail(f"Orthanc exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if http.get("/system").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"Orthanc did not answer /system in {seconds:.0f} s:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def dicomweb_plugin() -> Path:
    """The orthanc-dicomweb plugin library, as the Debian package installs it."""
    missing = (
        "the orthanc-dicomweb plugin is not installed; `make install` installs it (apt-get install orthanc-dicomweb)"
    )
    if shutil.which("dpkg") is None:
        pytest.fail(missing)
    listing = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True)
    if listing.returncode != 0:
        pytest.fail(missing)
    libraries = [Path(line) for line in listing.stdout.splitlines() if "libOrthancDicomWeb.so" in line]
    libraries = [path for path in libraries if path.is_file()]
    if not libraries:
        pytest.fail(missing)
    # the unversioned name in Orthanc's plugin folder first, else the versioned library
    return sorted(libraries, key=lambda path: (not path.name.endswith(".so"), str(path)))[0]


@pytest.fixture(scope="module")
def orthanc(server: ApertureServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    if not ORTHANC.exists():
        pytest.fail(f"{ORTHANC} is missing: `make install` installs the Debian packages orthanc and orthanc-dicomweb")
    root = tmp_path_factory.mktemp("orthanc")
    port = free_port()
    config = {
        "Name": "aperture-interop",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpServerEnabled": True,
        "HttpPort": port,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(dicomweb_plugin())],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "Servers": {"aperture": [f"{server.dicomweb}/"]},
        },
    }
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = root / "orthanc.log"
    handle = open(log, "wb")  # kept open for the process's lifetime
    process = subprocess.Popen([str(ORTHANC), str(config_path)], stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, timeout=120)
    try:
        wait_for_orthanc(process, http, log)
        yield Orthanc(process, url, log, http)
    finally:
        http.close()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        handle.close()


def unique_patient(prefix: str) -> str:
    return f"{prefix}-{generate_uid()[-12:]}"


@dataclass
class StoredStudy:
    patient: str
    study: str
    series: str
    files: dict[str, bytes]  # SOP Instance UID -> the Part-10 bytes stored in Aperture


def store_synthetic_study(client: httpx.Client, prefix: str, count: int = 3) -> StoredStudy:
    patient = unique_patient(prefix)
    study, series = generate_uid(), generate_uid()
    files = {}
    for number in range(1, count + 1):
        sop = generate_uid()
        files[sop] = make_instance(
            study=study, series=series, sop=sop, patient_id=patient, instance_number=number, accession=prefix[:16]
        )
    response = stow(client, files.values())
    assert response.status_code == 200, response.text
    assert len(sequence_items(response.json(), "00081199")) == count
    return StoredStudy(patient, study, series, files)


def store_pydicom_file(client: httpx.Client, name: str, prefix: str) -> StoredStudy:
    """A pydicom-data file, given new UIDs and Patient ID, alone in its own study."""
    path = get_testdata_file(name)
    assert path is not None, f"pydicom-data has no {name}"
    ds = pydicom.dcmread(path)
    ds.PatientID = unique_patient(prefix)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    response = stow(client, [data])
    assert response.status_code == 200, response.text
    return StoredStudy(ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, {ds.SOPInstanceUID: data})


def orthanc_files_of_study(orthanc: Orthanc, study_uid: str) -> dict[str, bytes]:
    """SOP Instance UID -> the bytes Orthanc holds, for every instance of the study in Orthanc."""
    study_id = orthanc.lookup(study_uid, "Study")
    assert study_id is not None, f"Orthanc has no study {study_uid}"
    files = {}
    for instance in orthanc.get(f"/studies/{study_id}/instances").json():
        sop = instance["MainDicomTags"]["SOPInstanceUID"]
        files[sop] = orthanc.get(f"/instances/{instance['ID']}/file").content
    return files


def test_orthanc_knows_aperture_as_a_dicomweb_server(orthanc: Orthanc, server: ApertureServer) -> None:
    assert orthanc.get("/dicom-web/servers").json() == ["aperture"]
    plugins = orthanc.get("/plugins").json()
    assert "dicom-web" in plugins


def test_orthanc_finds_the_study_with_qido(orthanc: Orthanc, client: httpx.Client) -> None:
    stored = store_synthetic_study(client, "ORTHQIDO")
    answer = orthanc.post(
        "/dicom-web/servers/aperture/get", {"Uri": "/studies", "Arguments": {"PatientID": stored.patient}}
    ).json()
    assert len(answer) == 1
    assert answer[0]["0020000D"]["Value"] == [stored.study]
    assert answer[0]["00100020"]["Value"] == [stored.patient]
    assert answer[0]["00201208"]["Value"] == [3]  # NumberOfStudyRelatedInstances
    # the plugin's own QIDO call, which converts the answer to Orthanc's tag format
    converted = orthanc.post(
        "/dicom-web/servers/aperture/qido", {"Uri": "/studies", "Arguments": {"PatientID": stored.patient}}
    ).json()
    assert [study["0020000D"]["Value"] for study in converted] == [stored.study]
    # and a search that matches nothing is an empty answer, not an error
    nothing = orthanc.post(
        "/dicom-web/servers/aperture/get", {"Uri": "/studies", "Arguments": {"PatientID": unique_patient("NONE")}}
    )
    assert json.loads(nothing.content or b"[]") == []


def test_orthanc_lists_series_instances_and_metadata(orthanc: Orthanc, client: httpx.Client) -> None:
    stored = store_synthetic_study(client, "ORTHGET")
    series = orthanc.post("/dicom-web/servers/aperture/get", {"Uri": f"/studies/{stored.study}/series"}).json()
    assert [s["0020000E"]["Value"] for s in series] == [[stored.series]]
    instances = orthanc.post(
        "/dicom-web/servers/aperture/get", {"Uri": f"/studies/{stored.study}/series/{stored.series}/instances"}
    ).json()
    assert sorted(i["00080018"]["Value"][0] for i in instances) == sorted(stored.files)
    metadata = orthanc.post(
        "/dicom-web/servers/aperture/get", {"Uri": f"/studies/{stored.study}/series/{stored.series}/metadata"}
    ).json()
    assert sorted(m["00080018"]["Value"][0] for m in metadata) == sorted(stored.files)
    assert all("BulkDataURI" in m["7FE00010"] for m in metadata)


def test_orthanc_retrieves_a_study(orthanc: Orthanc, client: httpx.Client) -> None:
    stored = store_synthetic_study(client, "ORTHSTUDY")
    before = set(orthanc.get("/instances").json())
    answer = orthanc.post("/dicom-web/servers/aperture/retrieve", {"Resources": [{"Study": stored.study}]}).json()
    assert int(answer["ReceivedInstancesCount"]) == 3
    after = set(orthanc.get("/instances").json())
    assert len(after - before) == 3
    received = orthanc_files_of_study(orthanc, stored.study)
    assert received.keys() == stored.files.keys()
    for sop, data in stored.files.items():
        assert received[sop] == data, f"Orthanc's copy of {sop} differs from what Aperture stored"


def test_orthanc_retrieves_a_pydicom_data_study(orthanc: Orthanc, client: httpx.Client) -> None:
    stored = store_pydicom_file(client, "CT_small.dcm", "ORTHCT")
    found = orthanc.post(
        "/dicom-web/servers/aperture/get", {"Uri": "/studies", "Arguments": {"PatientID": stored.patient}}
    ).json()
    assert [study["0020000D"]["Value"][0] for study in found] == [stored.study]
    answer = orthanc.post("/dicom-web/servers/aperture/retrieve", {"Resources": [{"Study": stored.study}]}).json()
    assert int(answer["ReceivedInstancesCount"]) == 1
    assert orthanc_files_of_study(orthanc, stored.study) == stored.files
    served = client.get(
        f"/studies/{stored.study}/series/{stored.series}/instances/{next(iter(stored.files))}",
        headers={"Accept": AS_STORED},
    )
    assert served.content == next(iter(stored.files.values()))


def test_orthanc_retrieves_one_series_and_one_instance(orthanc: Orthanc, client: httpx.Client) -> None:
    stored = store_synthetic_study(client, "ORTHPART")
    other_series = generate_uid()
    extra_sop = generate_uid()
    extra = make_instance(study=stored.study, series=other_series, sop=extra_sop, patient_id=stored.patient)
    assert stow(client, [extra]).status_code == 200
    answer = orthanc.post(
        "/dicom-web/servers/aperture/retrieve", {"Resources": [{"Study": stored.study, "Series": other_series}]}
    ).json()
    assert int(answer["ReceivedInstancesCount"]) == 1
    assert orthanc_files_of_study(orthanc, stored.study) == {extra_sop: extra}
    sop = sorted(stored.files)[0]
    answer = orthanc.post(
        "/dicom-web/servers/aperture/retrieve",
        {"Resources": [{"Study": stored.study, "Series": stored.series, "Instance": sop}]},
    ).json()
    assert int(answer["ReceivedInstancesCount"]) == 1
    assert orthanc_files_of_study(orthanc, stored.study) == {extra_sop: extra, sop: stored.files[sop]}


def test_orthanc_stores_into_aperture_with_stow(orthanc: Orthanc, client: httpx.Client) -> None:
    patient = unique_patient("ORTHSTOW")
    study, sop = generate_uid(), generate_uid()
    data = make_instance(study=study, sop=sop, patient_id=patient)
    uploaded = orthanc.http.post("/instances", content=data)
    assert uploaded.status_code == 200, uploaded.text
    instance_id = uploaded.json()["ID"]
    orthanc.post("/dicom-web/servers/aperture/stow", {"Resources": [instance_id]})
    found = client.get("/instances", params={"SOPInstanceUID": sop})
    assert found.status_code == 200
    assert [item["0020000D"]["Value"][0] for item in found.json()] == [study]
    series = found.json()[0]["0020000E"]["Value"][0]
    served = client.get(f"/studies/{study}/series/{series}/instances/{sop}", headers={"Accept": AS_STORED})
    assert served.status_code == 200
    assert served.content == orthanc.get(f"/instances/{instance_id}/file").content


def test_wado_uri_agrees_with_orthanc_where_ps3_18_is_clear(
    orthanc: Orthanc, client: httpx.Client, server: ApertureServer
) -> None:
    """The same file in both servers, the same WADO-URI requests at each one's /wado (PS3.18 §9).

    Compared where the standard leaves no choice: application/dicom of an Explicit VR Little Endian
    file is that file; no contentType (with Accept */*, §9.3) and image/jpeg give a JPEG of the
    stored size, image/png a PNG. Orthanc departs from §9 twice, and the test pins both so a change
    shows: it labels every rendered answer image/png, its JPEGs too; a missing requestType is a 400
    (§9.4.2.1), Orthanc's a 404.
    Orthanc's plugin does not transcode, window or scale, so those are checked against Aperture
    alone (tests/dicomweb/test_wado_uri.py).
    """
    stored = store_pydicom_file(client, "CT_small.dcm", "WADOURI")
    ((sop, data),) = stored.files.items()
    uploaded = orthanc.http.post("/instances", content=data)
    assert uploaded.status_code == 200, uploaded.text
    params = {"requestType": "WADO", "studyUID": stored.study, "seriesUID": stored.series, "objectUID": sop}

    def url(query: dict[str, str]) -> str:  # '/' left as is, as links write it (Orthanc does not decode %2F)
        return "/wado?" + urlencode(query, safe="/")

    with httpx.Client(base_url=server.url, timeout=60) as ours:
        for extra in (
            {"contentType": "application/dicom"},
            {},
            {"contentType": "image/jpeg"},
            {"contentType": "image/png"},
        ):
            theirs = orthanc.http.get(url({**params, **extra}), headers={"Accept": "*/*"})
            mine = ours.get(url({**params, **extra}), headers={"Accept": "*/*"})
            assert theirs.status_code == mine.status_code == 200, (extra, theirs.text[:300], mine.text[:300])
            if extra.get("contentType") == "application/dicom":
                assert mine.headers["content-type"] == theirs.headers["content-type"] == "application/dicom"
                assert mine.content == theirs.content == data
                continue
            a, b = Image.open(io.BytesIO(mine.content)), Image.open(io.BytesIO(theirs.content))
            assert a.size == b.size == (128, 128), extra
            wanted = extra.get("contentType", "image/jpeg")  # §9.3: no contentType with */* is image/jpeg
            assert a.format == b.format == wanted.split("/")[1].upper(), extra
            assert mine.headers["content-type"] == wanted, extra
            assert theirs.headers["content-type"] == "image/png", extra  # Orthanc's label, JPEG body or not
        missing = url({k: v for k, v in params.items() if k != "requestType"})
        assert ours.get(missing).status_code == 400  # §9.4.2.1; Orthanc's plugin 1.7 answers 404
        assert orthanc.http.get(missing).status_code == 404
