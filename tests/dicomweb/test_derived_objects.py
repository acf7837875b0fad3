"""A viewer saving measurements: SR, SEG and RTSTRUCT stored into an existing study show up at once."""

from __future__ import annotations

import io

import httpx
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.helpers import stow


def _into_study(name: str, study: str, patient_id: str, *, force: bool = False) -> bytes:
    ds = pydicom.dcmread(get_testdata_file(name), force=force)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, generate_uid(), generate_uid()
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = "urn:oid:2.16.840.1.113883.3.1"
    if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_sr_seg_and_rtstruct_join_an_existing_study(client: httpx.Client) -> None:
    study, patient = generate_uid(), f"DERIVED-{generate_uid()[-8:]}"
    assert stow(client, [_into_study("CT_small.dcm", study, patient)]).status_code == 200
    derived = [
        _into_study("test-SR.dcm", study, patient),
        _into_study("liver.dcm", study, patient),
        _into_study("rtstruct.dcm", study, patient, force=True),
    ]
    response = stow(client, derived, path=f"/studies/{study}")
    assert response.status_code == 200, response.text
    modalities = sorted(s["00080060"]["Value"][0] for s in client.get(f"/studies/{study}/series").json())
    assert modalities == ["CT", "RTSTRUCT", "SEG", "SR"]
    (found,) = client.get("/studies", params={"StudyInstanceUID": study}).json()
    assert sorted(found["00080061"]["Value"]) == ["CT", "RTSTRUCT", "SEG", "SR"]
    assert found["00201208"]["Value"] == [4]
    metadata = client.get(f"/studies/{study}/metadata").json()
    assert len(metadata) == 4
    sr = next(m for m in metadata if m["00080060"]["Value"] == ["SR"])
    assert "0040A730" in sr, "the SR content tree is part of the metadata"
