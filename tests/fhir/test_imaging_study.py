"""The imaging server's FHIR R4 endpoint (/fhir): ImagingStudy search and read, Endpoint, metadata.

A real `aperture serve --auth none` with a `[fhir]` table; studies are stored over STOW-RS and found
again through /fhir, then retrieved from the Endpoint's address as the two published SMART imaging
clients do (../shared/notes/smart-imaging-clients.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import ApertureServer, start_server
from tests.fhir import r4
from tests.helpers import make_instance, sample_with_new_uids, stow

ISSUER = "urn:oid:2.16.840.1.113883.3.1"
MRN_SYSTEM = "http://aperture.example.org/fhir/sid/mrn"
EHR = "https://ehr.example.org/fhir"
CONFIG = f"""
[server]
access_log = true
[store]
htj2k_copies = false
[dicomweb]
allow_delete = true
[fhir]
ehr_base = "{EHR}"
default_issuer = "{ISSUER}"
[fhir.patient_identifier_systems]
"{MRN_SYSTEM}" = "APERTURE-GH"
"""
FHIR_JSON = {"Accept": "application/fhir+json"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fhir_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApertureServer]:
    """The index in SQLite and in PostgreSQL: the FHIR searches are SQL of their own."""
    config = CONFIG
    if request.param == "postgresql":
        cluster: Any = request.getfixturevalue("postgres")
        url = cluster.create_database("fhir")
        config = config.replace("htj2k_copies = false\n", f'htj2k_copies = false\ndatabase_url = "{url}"\n')
    srv = start_server(tmp_path_factory.mktemp("fhir") / "data", config=config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stored(fhir_server: ApertureServer) -> dict[str, Any]:
    """Patient PAT-7 (default issuer): one CT-like two-series study, then four more one-instance studies.

    The same PatientID under another issuer, and an MRN-issued patient, are stored as well.
    """
    with httpx.Client(base_url=fhir_server.dicomweb, timeout=60) as dicomweb:
        study, s1, s2 = generate_uid(), generate_uid(), generate_uid()
        parts = [
            make_instance(study=study, series=s1, patient_id="PAT-7", modality="CT", instance_number=1),
            make_instance(study=study, series=s1, patient_id="PAT-7", modality="CT", instance_number=2),
            make_instance(study=study, series=s2, patient_id="PAT-7", modality="SR", series_number=2),
        ]
        assert stow(dicomweb, parts).status_code == 200
        before_more = int(time.time())
        time.sleep(1.1)  # _lastUpdated has whole-second resolution: the later studies are strictly later
        others = []
        for n in range(4):
            uid = generate_uid()
            others.append(uid)
            assert (
                stow(dicomweb, [make_instance(study=uid, patient_id="PAT-7", accession=f"ACC-{n}")]).status_code == 200
            )
        stranger = generate_uid()
        assert (
            stow(dicomweb, [make_instance(study=stranger, patient_id="PAT-7", issuer="OTHER-HOSPITAL")]).status_code
            == 200
        )
        mrn_study = generate_uid()
        mrn_part = make_instance(study=mrn_study, patient_id="AGH-100234", issuer="APERTURE-GH")
        assert stow(dicomweb, [mrn_part]).status_code == 200
    return {
        "study": study, "parts": parts, "others": others, "stranger": stranger, "before_more": before_more,
        "mrn_study": mrn_study, "mrn_part": mrn_part,
    }  # fmt: skip


@pytest.fixture
def fhir(fhir_server: ApertureServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{fhir_server.url}/fhir", timeout=60) as http:
        yield http


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    r4.bundle(bundle)
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def uids(bundle: dict[str, Any]) -> set[str]:
    return {s["identifier"][0]["value"].removeprefix("urn:oid:") for s in matches(bundle)}


def search(fhir: httpx.Client, **params: str) -> dict[str, Any]:
    answer = fhir.get("/ImagingStudy", params=params, headers=FHIR_JSON)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = answer.json()
    return body


def test_patient_search_by_bare_and_typed_id(fhir: httpx.Client, stored: dict[str, Any]) -> None:
    mine = {stored["study"], *stored["others"]}
    assert uids(search(fhir, patient="PAT-7")) == mine
    assert uids(search(fhir, patient="Patient/PAT-7")) == mine  # the other issuer's PAT-7 is someone else


def test_patient_identifier_chain_is_issuer_qualified(fhir: httpx.Client, stored: dict[str, Any]) -> None:
    assert uids(search(fhir, **{"patient.identifier": f"{MRN_SYSTEM}|AGH-100234"})) == {stored["mrn_study"]}
    assert uids(search(fhir, **{"patient.identifier": f"{MRN_SYSTEM}|PAT-7"})) == set()
    unknown = fhir.get("/ImagingStudy", params={"patient.identifier": "http://elsewhere.example|PAT-7"})
    assert unknown.status_code == 400
    r4.operation_outcome(unknown.json())


def test_study_resource_follows_the_smart_imaging_study_profile(fhir: httpx.Client, stored: dict[str, Any]) -> None:
    bundle = search(fhir, patient="PAT-7", identifier=f"urn:oid:{stored['study']}")
    (study,) = matches(bundle)
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{stored['study']}"}
    assert study["status"] == "available"
    assert study["subject"]["reference"] == f"{EHR}/Patient/PAT-7"
    assert {m["code"] for m in study["modality"]} == {"CT", "SR"}
    assert study["started"] == "2024-01-05"
    assert (study["numberOfSeries"], study["numberOfInstances"]) == (2, 3)
    assert [len(s["instance"]) for s in study["series"]] == [2, 1]
    assert study["series"][0]["instance"][0]["sopClass"]["code"] == "urn:oid:1.2.840.10008.5.1.4.1.1.7"
    assert study["basedOn"][0]["identifier"]["value"] == "ACC-1"
    # the Endpoint every study references is on the same page, even without _include
    included = {e["fullUrl"]: e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    endpoint = included[study["endpoint"][0]["reference"]]
    assert endpoint["address"] == f"{fhir.base_url.scheme}://{fhir.base_url.netloc.decode()}/dicom-web"


def test_last_updated_prefixes(fhir: httpx.Client, stored: dict[str, Any]) -> None:
    cut = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stored["before_more"]))
    later, first = set(stored["others"]), {stored["study"]}
    assert uids(search(fhir, patient="PAT-7", _lastUpdated=f"gt{cut}")) == later
    assert uids(search(fhir, patient="PAT-7", _lastUpdated=f"le{cut}")) == first
    assert uids(search(fhir, patient="PAT-7", _lastUpdated=f"lt{cut}")) <= first
    assert uids(search(fhir, patient="PAT-7", _lastUpdated=f"ge{cut}")) >= later
    assert uids(search(fhir, patient="PAT-7", _lastUpdated="gt2999-01-01")) == set()
    bad = fhir.get("/ImagingStudy", params={"patient": "PAT-7", "_lastUpdated": "gtyesterday"})
    assert bad.status_code == 400
    r4.operation_outcome(bad.json())


def test_last_updated_follows_a_delete_in_the_study(fhir_server: ApertureServer, fhir: httpx.Client) -> None:
    study, kept, dropped = generate_uid(), generate_uid(), generate_uid()
    parts = [make_instance(study=study, series=s, patient_id="PAT-DEL") for s in (kept, dropped)]
    with httpx.Client(base_url=fhir_server.dicomweb, timeout=60) as dicomweb:
        assert stow(dicomweb, parts).status_code == 200
        (before,) = matches(search(fhir, patient="PAT-DEL"))
        time.sleep(1.1)  # whole seconds in the index
        assert dicomweb.delete(f"/studies/{study}/series/{dropped}").status_code in (200, 202, 204)
    (after,) = matches(search(fhir, patient="PAT-DEL", _lastUpdated=f"gt{before['meta']['lastUpdated']}"))
    assert after["numberOfSeries"] == 1 and after["series"][0]["uid"] == kept


def test_count_paging_follows_next_links_to_the_end(fhir: httpx.Client, stored: dict[str, Any]) -> None:
    seen: list[str] = []
    url: str | None = (
        str(fhir.base_url).rstrip("/") + "/ImagingStudy?patient=PAT-7&_count=2&_include=ImagingStudy:endpoint"
    )
    for _ in range(10):  # bounded: 5 studies in pages of 2
        assert url is not None
        bundle = fhir.get(url, headers=FHIR_JSON).json()
        page = matches(bundle)
        assert len(page) <= 2 and bundle["total"] == 5
        for study in page:  # every referenced Endpoint is on this page
            refs = {e["fullUrl"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
            assert study["endpoint"][0]["reference"] in refs
        seen += [s["id"] for s in page]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        if url is None:
            break
    assert url is None
    assert sorted(seen) == sorted({stored["study"], *stored["others"]}) and len(seen) == 5


def test_read_and_endpoint_read(fhir: httpx.Client, stored: dict[str, Any]) -> None:
    answer = fhir.get(f"/ImagingStudy/{stored['study']}", headers={"Accept": "application/json"})
    assert answer.status_code == 200
    study = answer.json()
    r4.imaging_study(study)
    assert study["id"] == stored["study"]
    reference = study["endpoint"][0]["reference"]
    endpoint = fhir.get(reference, headers=FHIR_JSON)  # absolute: the Endpoint's own URL
    assert endpoint.status_code == 200
    r4.endpoint(endpoint.json())
    kind, _, endpoint_id = reference.rpartition("/")[0].rpartition("/")[2], "", reference.rpartition("/")[2]
    assert kind == "Endpoint"
    assert fhir.get(f"/Endpoint/{endpoint_id}").json() == endpoint.json()


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        (f"/ImagingStudy/{'1.2.3.4.5.6.999'}", {}, 404),
        ("/Endpoint/nope", {}, 404),
        ("/Patient/PAT-7", {}, 404),
        ("/ImagingStudy?patient=PAT-7", {"Accept": "application/dicom+xml"}, 406),
        ("/ImagingStudy?identifier=urn:oid:1.2.3", {}, 400),
        ("/ImagingStudy?patient=PAT-7&_count=zero", {}, 400),
        ("/ImagingStudy?patient=PAT-7&identifier=1.2.3", {}, 400),
    ],
)
def test_errors_are_operation_outcomes(fhir: httpx.Client, path: str, headers: dict[str, str], status: int) -> None:
    answer = fhir.get(path, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    r4.operation_outcome(answer.json())


def test_writes_are_refused_as_operation_outcomes(fhir: httpx.Client) -> None:
    answer = fhir.post("/ImagingStudy", json={"resourceType": "ImagingStudy"})
    assert answer.status_code == 405
    r4.operation_outcome(answer.json())


def test_metadata_is_a_smart_imaging_server_capability_statement(fhir: httpx.Client) -> None:
    statement = fhir.get("/metadata", headers=FHIR_JSON).json()
    r4.capability_statement(statement)
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance" and statement["status"] == "active" and statement["date"]
    (rest,) = statement["rest"]
    assert rest["mode"] == "server"
    kinds = {r["type"]: r for r in rest["resource"]}
    study = kinds["ImagingStudy"]
    assert {i["code"] for i in study["interaction"]} == {"read", "search-type"}
    assert study["searchInclude"] == ["ImagingStudy:endpoint"]
    assert {p["name"] for p in study["searchParam"]} >= {"patient", "identifier", "_lastUpdated"}
    assert (
        "http://fhir.org/argonaut/smart-imaging/CapabilityStatement/smart-imaging-server" in statement["instantiates"]
    )
    assert {i["code"] for i in kinds["Endpoint"]["interaction"]} == {"read"}
    audit = kinds["AuditEvent"]
    assert {i["code"] for i in audit["interaction"]} == {"search-type"}
    assert {p["name"] for p in audit["searchParam"]} == {"patient", "date", "outcome", "client"}


def test_smart_configuration_is_absent_without_an_authorization_server(fhir: httpx.Client) -> None:
    answer = fhir.get("/.well-known/smart-configuration")
    assert answer.status_code == 404
    assert "--auth none" in answer.json()["issue"][0]["diagnostics"]


def split_multipart(response: httpx.Response) -> list[bytes]:
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    assert message.is_multipart()
    return [part.get_payload(decode=True) for part in message.iter_parts()]


def resolve(bundle: dict[str, Any], fhir: httpx.Client, reference: str) -> dict[str, Any]:
    """As both clients do: contained `#id`, an included entry's fullUrl, else read `Endpoint/{id}`."""
    for entry in bundle.get("entry", []):
        if entry["fullUrl"] == reference:
            found: dict[str, Any] = entry["resource"]
            return found
    answer: dict[str, Any] = fhir.get(reference, headers=FHIR_JSON).json()
    return answer


def test_reference_viewer_call_sequence(fhir: httpx.Client, stored: dict[str, Any]) -> None:
    """jmandel/smart-imaging viewer: search with Patient/{id}, identifier[0] minus 8 chars, full study."""
    answer = fhir.get(
        "/ImagingStudy?_include=ImagingStudy:endpoint&patient=Patient/PAT-7", headers={"Accept": "application/json"}
    )
    bundle = answer.json()
    study = next(s for s in matches(bundle) if s["identifier"][0]["value"][8:] == stored["study"])
    address = resolve(bundle, fhir, study["endpoint"][0]["reference"])["address"]
    accept = "multipart/related; type=application/dicom; transfer-syntax=*"
    retrieved = httpx.get(f"{address}/studies/{stored['study']}", headers={"Accept": accept}, timeout=60)
    assert retrieved.status_code == 200
    assert sorted(split_multipart(retrieved)) == sorted(stored["parts"])


def test_dcmjs_patient_access_call_sequence(fhir: httpx.Client, stored: dict[str, Any]) -> None:
    """dcmjs-commands patient-access: bare id + identifier + _include, then QIDO, series, metadata, frames."""
    uid = stored["mrn_study"]
    params = {
        "patient.identifier": f"{MRN_SYSTEM}|AGH-100234",
        "identifier": f"urn:oid:{uid}",
        "_include": "ImagingStudy:endpoint",
    }
    bundle = fhir.get("/ImagingStudy", params=params, headers=FHIR_JSON).json()
    (study,) = matches(bundle)
    endpoint = resolve(bundle, fhir, study["endpoint"][0]["reference"])
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    base = endpoint["address"]
    with httpx.Client(timeout=60) as wado:
        assert wado.get(f"{base}/studies", params={"StudyInstanceUID": uid}).json()[0]["0020000D"]["Value"] == [uid]
        (series,) = wado.get(f"{base}/studies/{uid}/series").json()
        series_uid = series["0020000E"]["Value"][0]
        (meta,) = wado.get(f"{base}/studies/{uid}/series/{series_uid}/metadata").json()
        sop = meta["00080018"]["Value"][0]
        octets = "multipart/related; type=application/octet-stream; transfer-syntax=*"
        frames = wado.get(
            f"{base}/studies/{uid}/series/{series_uid}/instances/{sop}/frames/1", headers={"Accept": octets}
        )
        assert frames.status_code == 200
        (frame,) = split_multipart(frames)
        assert frame in stored["mrn_part"]  # the stored pixel bytes, unchanged
        whole = wado.get(
            f"{base}/studies/{uid}", headers={"Accept": "multipart/related; type=application/dicom; transfer-syntax=*"}
        )
        assert split_multipart(whole) == [stored["mrn_part"]]


def test_pydicom_data_file_appears_with_its_sop_class(fhir_server: ApertureServer, fhir: httpx.Client) -> None:
    data = sample_with_new_uids("CT_small.dcm")
    with httpx.Client(base_url=fhir_server.dicomweb, timeout=60) as dicomweb:
        answer = stow(dicomweb, [data]).json()
    url = answer["00081199"]["Value"][0]["00081190"]["Value"][0]
    uid = url.split("/studies/")[1].split("/")[0]
    study = fhir.get(f"/ImagingStudy/{uid}", headers=FHIR_JSON).json()
    r4.imaging_study(study)
    assert study["series"][0]["instance"][0]["sopClass"]["code"] == "urn:oid:1.2.840.10008.5.1.4.1.1.2"
    assert study["modality"][0]["code"] == "CT"


def test_unresolvable_patient_without_a_default_issuer(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data")
    try:
        answer = httpx.get(f"{srv.url}/fhir/ImagingStudy", params={"patient": "PAT-7"}, timeout=30)
        assert answer.status_code == 400
        assert "fhir.default_issuer" in answer.json()["issue"][0]["diagnostics"]
    finally:
        srv.stop()
