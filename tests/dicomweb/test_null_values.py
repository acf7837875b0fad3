"""Empty values in what /metadata and QIDO-RS answer (PS3.18 F.2.5): null elements, never "".

PS3.18 F.2.5: "If a multi-valued attribute has one or more empty values these are represented as
"null" array elements"; an attribute present without a value has no "Value"; an empty sequence item
is an empty object. F.2.2: a PN value's non-empty component groups only.
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from tests.helpers import empty_strings, make_instance, stow

B = "\\"


def _with_empty_values(study: str, series: str, *, charset: str | None) -> bytes:
    """An instance whose attributes have empty values at the start, middle and end, in many VRs."""
    item = Dataset()
    item.CodeValue = "1"
    extra: dict[str, object] = {
        "ImageType": ["", "ORIGINAL", ""],
        "NameOfPhysiciansReadingStudy": ["Doe^John", ""],
        "OtherPatientIDs": ["A", "", "B"],
        "ImagePositionPatient": ["1", "", "3"],
        "FieldOfViewDimensions": ["", "7"],
        "RelatedGeneralSOPClassUID": "",
        "ProcedureCodeSequence": Sequence([Dataset(), item]),
    }
    if charset is not None:
        extra["SpecificCharacterSet"] = charset
    return make_instance(study=study, series=series, patient_name="Doe^Jane", extra=extra)


def _stored(client: httpx.Client, *, charset: str | None) -> tuple[str, str, str, dict[str, Any]]:
    study, series = generate_uid(), generate_uid()
    data = _with_empty_values(study, series, charset=charset)
    answer = stow(client, [data]).json()
    assert "00081198" not in answer, answer
    sop = answer["00081199"]["Value"][0]["00081155"]["Value"][0]
    (metadata,) = client.get(f"/studies/{study}/series/{series}/instances/{sop}/metadata").json()
    return study, series, sop, metadata


# the default character set is read by the byte-level reader; ISO 2022 goes through pydicom
@pytest.mark.parametrize("charset", [None, "ISO_IR 192", B + "ISO 2022 IR 149"])
def test_metadata_writes_empty_values_as_null_elements(client: httpx.Client, charset: str | None) -> None:
    _, _, _, metadata = _stored(client, charset=charset)
    assert metadata["00080008"]["Value"] == [None, "ORIGINAL", None]
    assert metadata["00081060"]["Value"] == [{"Alphabetic": "Doe^John"}, None]
    assert metadata["00101000"]["Value"] == ["A", None, "B"]
    assert metadata["00200032"]["Value"] == [1, None, 3]
    assert metadata["00181149"]["Value"] == [None, 7]
    assert metadata["0008001A"] == {"vr": "UI"}
    assert metadata["00081032"]["Value"][0] == {}
    if charset == B + "ISO 2022 IR 149":
        assert metadata["00080005"] == {"vr": "CS", "Value": [None, "ISO 2022 IR 149"]}
    assert empty_strings(metadata) == []


def test_qido_answers_at_every_level_write_null_elements(client: httpx.Client) -> None:
    study, series, sop, _ = _stored(client, charset=B + "ISO 2022 IR 149")
    fields = {"includefield": ["00080008", "00081060", "00200032"]}
    (study_answer,) = client.get("/studies", params={"StudyInstanceUID": study}).json()
    (series_answer,) = client.get(f"/studies/{study}/series", params=fields).json()
    (instance_answer,) = client.get(f"/studies/{study}/series/{series}/instances", params=fields).json()
    (everything,) = client.get(f"/studies/{study}/instances", params={"includefield": "all"}).json()
    assert study_answer["00080005"] == {"vr": "CS", "Value": [None, "ISO 2022 IR 149"]}
    assert instance_answer["00080008"]["Value"] == [None, "ORIGINAL", None]
    assert everything["00200032"]["Value"] == [1, None, 3]
    for answer in (study_answer, series_answer, instance_answer, everything):
        assert empty_strings(answer) == [], answer
    assert instance_answer["00080018"]["Value"] == [sop]


def test_iso_2022_sample_file_is_answered_without_empty_strings(client: httpx.Client) -> None:
    """pydicom-data's chrI2.dcm: Specific Character Set `\\ISO 2022 IR 149`, a Korean name in three groups."""
    from pydicom.data import get_charset_files

    ds = pydicom.dcmread(get_charset_files("chrI2.dcm")[0])
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert stow(client, [out.getvalue()]).status_code == 200
    (metadata,) = client.get(f"/studies/{study}/series/{series}/instances/{sop}/metadata").json()
    (study_answer,) = client.get("/studies", params={"StudyInstanceUID": study}).json()
    for answer in (metadata, study_answer):
        assert answer["00080005"] == {"vr": "CS", "Value": [None, "ISO 2022 IR 149"]}
        assert answer["00100010"]["Value"] == [
            {"Alphabetic": "Hong^Gildong", "Ideographic": "洪^吉洞", "Phonetic": "홍^길동"}
        ]
        assert empty_strings(answer) == []


def test_modalities_in_study_lists_no_empty_modality(client: httpx.Client) -> None:
    study = generate_uid()
    parts = [make_instance(study=study, modality="CT"), make_instance(study=study, modality="")]
    assert stow(client, parts).status_code == 200
    (answer,) = client.get("/studies", params={"StudyInstanceUID": study}).json()
    assert answer["00080061"]["Value"] == ["CT"]


def test_dicomweb_client_reads_null_elements(server) -> None:  # type: ignore[no-untyped-def]
    """dicomweb-client hands the JSON to pydicom's Dataset.from_json: nulls read back as empty values."""
    with httpx.Client(base_url=server.dicomweb, timeout=60) as http:
        study, series, sop, _ = _stored(http, charset=None)
    client = DICOMwebClient(url=server.dicomweb)
    metadata = client.retrieve_instance_metadata(study, series, sop)
    ds = Dataset.from_json(metadata, bulk_data_uri_handler=lambda *_: b"")
    assert list(ds.ImageType) == ["", "ORIGINAL", ""]
    assert [str(v) for v in ds.NameOfPhysiciansReadingStudy] == ["Doe^John", ""]
    assert list(ds.OtherPatientIDs) == ["A", "", "B"]
    assert len(ds.ProcedureCodeSequence) == 2
    (found,) = client.search_for_instances(study, search_filters={"SOPInstanceUID": sop}, fields=["00080008"])
    assert Dataset.from_json(found).ImageType[1] == "ORIGINAL"
