"""What an imaging app does against the demo stack, step by step, and what the demo stored to compare with.

The calls follow the published SMART imaging clients (shared notes, smart-imaging-clients.md):
discovery at the EHR, `ImagingStudy?patient=&_include=ImagingStudy:endpoint` at the imaging FHIR
server, then WADO-RS at the included Endpoint's `address`. Nothing here knows the imaging server's
URLs except through those answers.

What was stored: `aperture demo` stores the seed patients' studies from
`aperture.cli.demo._seed_studies()`, which is deterministic (its UIDs derive from the seed's
StudyInstanceUIDs, its pixels from formulas; `test_seed_studies_are_deterministic` checks two runs
agree), so regenerating it in the test yields the very bytes the demo sent through STOW-RS.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from functools import cache
from typing import Any

import httpx
import pydicom

from aperture.ehr.people import Directory, load_directory

SMART_IMAGING_ACCESS = "smart-imaging-access"  # the associated endpoint's capability (SMART Imaging Access)
WHOLE_STUDY = 'multipart/related; type="application/dicom"; transfer-syntax=*'  # as stored (PS3.18 §8.7.3.5.2)
FHIR_JSON = {"Accept": "application/fhir+json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def imaging_fhir_base(ehr_fhir: str) -> str:
    """The imaging FHIR base the EHR advertises: the first `associated_endpoints` entry with smart-imaging-access."""
    document = httpx.get(f"{ehr_fhir}/.well-known/smart-configuration", timeout=30).raise_for_status().json()
    for endpoint in document.get("associated_endpoints", []):
        if SMART_IMAGING_ACCESS in endpoint.get("capabilities", []):
            return str(endpoint["url"])
    raise AssertionError(f"no associated endpoint with {SMART_IMAGING_ACCESS} in {document}")


def token_endpoint(ehr_fhir: str) -> str:
    document = httpx.get(f"{ehr_fhir}/.well-known/smart-configuration", timeout=30).raise_for_status().json()
    return str(document["token_endpoint"])


@dataclass(frozen=True)
class Found:
    """An ImagingStudy search answer: the studies (by StudyInstanceUID) and the WADO-RS address to fetch them."""

    studies: dict[str, dict[str, Any]]
    address: str | None


def find_studies(http: httpx.Client, fhir: str, patient: str, token: str) -> Found:
    """`ImagingStudy?patient=<id>&_include=ImagingStudy:endpoint`, its Endpoint resolved as the clients do."""
    answer = http.get(
        f"{fhir}/ImagingStudy",
        params={"patient": patient, "_include": "ImagingStudy:endpoint"},
        headers={**FHIR_JSON, **bearer(token)},
    )
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    entries = bundle.get("entry", [])
    studies = {
        _study_uid(e["resource"]): e["resource"] for e in entries if e["resource"]["resourceType"] == "ImagingStudy"
    }
    address = None
    for study in studies.values():
        reference = study["endpoint"][0]["reference"]
        endpoint = next(e["resource"] for e in entries if e["fullUrl"] == reference or e["fullUrl"].endswith(reference))
        assert endpoint["connectionType"]["code"] == "dicom-wado-rs", endpoint
        assert address in (None, endpoint["address"]), "one server, one WADO-RS address"
        address = endpoint["address"]
    return Found(studies, address)


def _study_uid(study: dict[str, Any]) -> str:
    identifier = study["identifier"][0]
    assert identifier["system"] == "urn:dicom:uid", identifier
    uid = str(identifier["value"]).removeprefix("urn:oid:")
    assert study["id"] == uid
    return uid


def split_multipart(response: httpx.Response) -> list[bytes]:
    """The bodies of a multipart/related answer, parsed with the standard library's MIME parser."""
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    assert message.is_multipart(), response.headers["content-type"]
    return [part.get_payload(decode=True) for part in message.iter_parts()]


def download_study(http: httpx.Client, address: str, study_uid: str, token: str) -> list[bytes]:
    answer = http.get(f"{address}/studies/{study_uid}", headers={"Accept": WHOLE_STUDY, **bearer(token)})
    assert answer.status_code == 200, answer.text
    return split_multipart(answer)


@dataclass(frozen=True)
class StoredInstance:
    study: str
    series: str
    sop: str
    data: bytes  # the Part 10 file as the demo sent it


@cache
def stored_instances() -> dict[str, StoredInstance]:
    """The seed studies' instances as `aperture demo` stored them, by SOPInstanceUID."""
    from aperture.cli.demo import _seed_studies

    found = {}
    for data in _seed_studies():
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        sop = str(ds.SOPInstanceUID)
        found[sop] = StoredInstance(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), sop, data)
    return found


def instances_of(study_uid: str) -> list[StoredInstance]:
    return [instance for instance in stored_instances().values() if instance.study == study_uid]


def sop_instance_uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


@cache
def seed() -> Directory:
    """The EHR sandbox's seed people (aperture/ehr/seed.json), which the demo's studies were made from."""
    return load_directory()


def studies_of(patient_id: str) -> set[str]:
    return {study.uid for study in seed().patients[patient_id].studies}


def study_of(patient_id: str, *, accession: str) -> str:
    return next(study.uid for study in seed().patients[patient_id].studies if study.accession == accession)


def mrn(patient_id: str) -> str:
    return seed().patients[patient_id].mrn
