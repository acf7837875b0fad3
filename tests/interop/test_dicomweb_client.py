"""Aperture driven by the `dicomweb-client` package (the Python DICOMweb client most tools use).

Every test stores its own copies of pydicom-data files (or synthetic instances) with fresh UIDs
and a unique Patient ID into the shared server, then reads them back through the client's
STOW / QIDO / WADO calls and compares with what pydicom reads from the original.

Note on URLs: dicomweb-client sends `Host: 127.0.0.1` without the port on every non-streamed
request, so URLs the server derives from Host (RetrieveURL, BulkDataURI) come back without the
port. That is the client's doing (the server honours Host as RFC 9110 says); tests that follow
such a URL put the server's own authority back in front of its path.
"""

from __future__ import annotations

import io
import warnings
from urllib.parse import urlsplit

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from tests.conftest import ApertureServer
from tests.helpers import make_instance

pytestmark = pytest.mark.interop

CT = "CT_small.dcm"  # 128x128, 16-bit, Explicit VR Little Endian
MR = "MR_small.dcm"  # 64x64, 16-bit, Explicit VR Little Endian
MULTIFRAME_J2K = "emri_small_jpeg_2k_lossless.dcm"  # 10 frames of 64x64, JPEG 2000 lossless

REFERENCED_SOP_SEQUENCE = 0x00081199
FAILED_SOP_SEQUENCE = 0x00081198


@pytest.fixture
def dwc(server: ApertureServer) -> DICOMwebClient:
    return DICOMwebClient(url=server.dicomweb)


def unique_patient(prefix: str) -> str:
    return f"{prefix}-{generate_uid()[-12:]}"


def pydicom_file(name: str, patient_id: str, *, study: str | None = None, series: str | None = None) -> Dataset:
    """A pydicom-data file with new Study/Series/SOP Instance UIDs and Patient ID."""
    path = get_testdata_file(name)
    assert path is not None, f"pydicom-data has no {name}"
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient_id
    return ds


def synthetic(**kwargs: object) -> Dataset:
    """A make_instance() file; no IssuerOfPatientID, like the pydicom-data files it may share a study with."""
    kwargs.setdefault("issuer", None)
    return pydicom.dcmread(io.BytesIO(make_instance(**kwargs)))  # type: ignore[arg-type]


def referenced_sops(answer: Dataset) -> list[str]:
    if REFERENCED_SOP_SEQUENCE not in answer:
        return []
    return [str(item.ReferencedSOPInstanceUID) for item in answer[REFERENCED_SOP_SEQUENCE].value]


def value(item: dict, tag: str) -> object:  # type: ignore[type-arg]
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def stored_frames(ds: Dataset) -> list[bytes]:
    """The encoded frames of an encapsulated Pixel Data element, as stored."""
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))


def at_server(server: ApertureServer, url: str) -> str:
    """`url` with the server's own scheme/host/port (see the module docstring on Host)."""
    parts = urlsplit(url)
    return f"{server.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")


# --- STOW-RS ------------------------------------------------------------------------------------


def test_store_instances_references_every_stored_instance(dwc: DICOMwebClient) -> None:
    patient = unique_patient("STOW")
    datasets = [pydicom_file(CT, patient), pydicom_file(MR, patient), pydicom_file(MULTIFRAME_J2K, patient)]
    answer = dwc.store_instances(datasets)
    assert FAILED_SOP_SEQUENCE not in answer or not answer[FAILED_SOP_SEQUENCE].value
    assert sorted(referenced_sops(answer)) == sorted(str(ds.SOPInstanceUID) for ds in datasets)
    for item in answer[REFERENCED_SOP_SEQUENCE].value:
        original = next(ds for ds in datasets if ds.SOPInstanceUID == item.ReferencedSOPInstanceUID)
        assert item.ReferencedSOPClassUID == original.SOPClassUID
        assert item.RetrieveURL.endswith(
            f"/studies/{original.StudyInstanceUID}/series/{original.SeriesInstanceUID}"
            f"/instances/{original.SOPInstanceUID}"
        )


def test_store_instances_into_named_study(dwc: DICOMwebClient) -> None:
    patient = unique_patient("STOWSTUDY")
    study = generate_uid()
    datasets = [pydicom_file(CT, patient, study=study), pydicom_file(MR, patient, study=study)]
    answer = dwc.store_instances(datasets, study_instance_uid=study)
    assert sorted(referenced_sops(answer)) == sorted(str(ds.SOPInstanceUID) for ds in datasets)
    assert answer.RetrieveURL.endswith(f"/studies/{study}")
    found = dwc.search_for_instances(study_instance_uid=study)
    assert {value(item, "00080018") for item in found} == {ds.SOPInstanceUID for ds in datasets}


def test_store_instances_of_another_study_into_named_study_is_refused(dwc: DICOMwebClient) -> None:
    patient = unique_patient("STOWWRONG")
    named = pydicom_file(CT, patient)
    dwc.store_instances([named])
    stranger = pydicom_file(MR, patient)  # a study of its own
    with pytest.raises(requests.HTTPError) as raised:
        dwc.store_instances([stranger], study_instance_uid=named.StudyInstanceUID)
    assert raised.value.response.status_code == 409
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see test_store_failure_error_comment_is_a_valid_lo
        failed = Dataset.from_json(raised.value.response.json())
    assert [str(item.ReferencedSOPInstanceUID) for item in failed[FAILED_SOP_SEQUENCE].value] == [
        stranger.SOPInstanceUID
    ]
    assert failed[FAILED_SOP_SEQUENCE].value[0].FailureReason > 0
    assert dwc.search_for_studies(search_filters={"StudyInstanceUID": stranger.StudyInstanceUID}) == []


def test_store_failure_error_comment_is_a_valid_lo(dwc: DICOMwebClient) -> None:
    """ErrorComment (0000,0902) has VR LO (PS3.7 Annex E), and an LO value holds at most 64
    characters (PS3.5 Table 6.2-1): a longer one makes pydicom, which dicomweb-client decodes the
    STOW-RS answer with, warn (or raise, with reading_validation_mode=RAISE)."""
    patient = unique_patient("STOWLO")
    named = pydicom_file(CT, patient)
    dwc.store_instances([named])
    stranger = pydicom_file(MR, patient)
    with pytest.raises(requests.HTTPError) as raised:
        dwc.store_instances([stranger], study_instance_uid=named.StudyInstanceUID)
    item = raised.value.response.json()["00081198"]["Value"][0]
    for comment in item.get("00000902", {}).get("Value", []):
        assert len(comment) <= 64, f"ErrorComment of {len(comment)} characters: {comment!r}"


# --- QIDO-RS ------------------------------------------------------------------------------------


def test_search_for_studies_by_patient_id(dwc: DICOMwebClient) -> None:
    patient = unique_patient("QIDO")
    study = generate_uid()
    ct, mr = pydicom_file(CT, patient, study=study), pydicom_file(MR, patient, study=study)
    dwc.store_instances([ct, mr])
    found = dwc.search_for_studies(search_filters={"PatientID": patient})
    assert len(found) == 1
    result = found[0]
    assert value(result, "0020000D") == study
    assert value(result, "00100020") == patient
    assert int(value(result, "00201206")) == 2  # type: ignore[arg-type]  # NumberOfStudyRelatedSeries
    assert int(value(result, "00201208")) == 2  # type: ignore[arg-type]  # NumberOfStudyRelatedInstances
    assert set(result["00080061"]["Value"]) == {"CT", "MR"}  # ModalitiesInStudy
    assert str(value(result, "00081190")).endswith(f"/studies/{study}")
    # the same answer through a filter given by tag instead of keyword
    assert [value(r, "0020000D") for r in dwc.search_for_studies(search_filters={"00100020": patient})] == [study]


def test_search_for_studies_with_fields(dwc: DICOMwebClient) -> None:
    patient = unique_patient("FIELDS")
    ct = pydicom_file(CT, patient)
    dwc.store_instances([ct])
    plain = dwc.search_for_studies(search_filters={"PatientID": patient})
    assert "00101010" not in plain[0]  # PatientAge is not a default study attribute
    found = dwc.search_for_studies(search_filters={"PatientID": patient}, fields=["PatientAge"])
    assert len(found) == 1
    assert value(found[0], "00101010") == ct.PatientAge
    assert value(found[0], "0020000D") == ct.StudyInstanceUID


def test_search_for_studies_limit_and_offset(dwc: DICOMwebClient) -> None:
    patient = unique_patient("PAGE")
    studies = [synthetic(patient_id=patient, accession=f"PAGE{i}") for i in range(3)]
    dwc.store_instances(studies)
    query = {"PatientID": patient}
    first = dwc.search_for_studies(search_filters=query, limit=2)
    rest = dwc.search_for_studies(search_filters=query, limit=2, offset=2)
    assert len(first) == 2
    assert len(rest) == 1
    paged = [value(r, "0020000D") for r in first + rest]
    assert sorted(paged) == sorted(ds.StudyInstanceUID for ds in studies)  # no repeats, nothing missed
    assert dwc.search_for_studies(search_filters=query, offset=3) == []
    everything = dwc.search_for_studies(search_filters=query, limit=1, get_remaining=True)
    assert sorted(value(r, "0020000D") for r in everything) == sorted(ds.StudyInstanceUID for ds in studies)


def test_search_for_studies_limit_sends_warning_when_more_remain(server: ApertureServer) -> None:
    """PS3.18 §8.3.4.4: a page cut by `limit` carries `Warning: 299 ...` (dicomweb-client logs it)."""
    patient = unique_patient("WARN")
    DICOMwebClient(url=server.dicomweb).store_instances([synthetic(patient_id=patient) for _ in range(2)])
    cut = requests.get(f"{server.dicomweb}/studies", params={"PatientID": patient, "limit": 1}, timeout=30)
    assert cut.status_code == 200
    assert cut.headers.get("Warning", "").startswith("299 ")
    whole = requests.get(f"{server.dicomweb}/studies", params={"PatientID": patient, "limit": 2}, timeout=30)
    assert len(whole.json()) == 2
    assert "Warning" not in whole.headers


def test_search_for_series(dwc: DICOMwebClient) -> None:
    patient = unique_patient("SERIES")
    study = generate_uid()
    ct, mr = pydicom_file(CT, patient, study=study), pydicom_file(MR, patient, study=study)
    dwc.store_instances([ct, mr])
    in_study = dwc.search_for_series(study_instance_uid=study)
    assert {value(s, "0020000E") for s in in_study} == {ct.SeriesInstanceUID, mr.SeriesInstanceUID}
    by_modality = dwc.search_for_series(study_instance_uid=study, search_filters={"Modality": "MR"})
    assert [value(s, "0020000E") for s in by_modality] == [mr.SeriesInstanceUID]
    assert int(value(by_modality[0], "00201209")) == 1  # type: ignore[arg-type]  # NumberOfSeriesRelatedInstances
    everywhere = dwc.search_for_series(search_filters={"PatientID": patient, "Modality": "CT"})
    assert [value(s, "0020000E") for s in everywhere] == [ct.SeriesInstanceUID]
    assert value(everywhere[0], "0020000D") == study


def test_search_for_instances(dwc: DICOMwebClient) -> None:
    patient = unique_patient("INST")
    study, series = generate_uid(), generate_uid()
    instances = [synthetic(patient_id=patient, study=study, series=series, instance_number=n) for n in (1, 2, 3)]
    ct = pydicom_file(CT, patient, study=study)
    dwc.store_instances([*instances, ct])
    in_series = dwc.search_for_instances(study_instance_uid=study, series_instance_uid=series)
    assert {value(i, "00080018") for i in in_series} == {ds.SOPInstanceUID for ds in instances}
    in_study = dwc.search_for_instances(study_instance_uid=study)
    assert len(in_study) == 4
    one = dwc.search_for_instances(search_filters={"SOPInstanceUID": ct.SOPInstanceUID}, fields=["SliceThickness"])
    assert len(one) == 1
    assert value(one[0], "00080016") == ct.SOPClassUID
    assert float(value(one[0], "00180050")) == float(ct.SliceThickness)  # type: ignore[arg-type]
    assert int(value(one[0], "00280010")) == ct.Rows  # type: ignore[arg-type]
    page = dwc.search_for_instances(study_instance_uid=study, series_instance_uid=series, limit=2, offset=1)
    assert len(page) == 2


# --- WADO-RS: instances, studies, series ------------------------------------------------------


def test_retrieve_instance_is_the_stored_instance(dwc: DICOMwebClient) -> None:
    ct = pydicom_file(CT, unique_patient("WADO"))
    dwc.store_instances([ct])
    got = dwc.retrieve_instance(ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)
    assert got.SOPInstanceUID == ct.SOPInstanceUID
    assert got.file_meta.TransferSyntaxUID == ct.file_meta.TransferSyntaxUID
    assert got.PatientID == ct.PatientID
    np.testing.assert_array_equal(got.pixel_array, ct.pixel_array)


def test_retrieve_compressed_instance_as_stored(dwc: DICOMwebClient) -> None:
    mf = pydicom_file(MULTIFRAME_J2K, unique_patient("WADOJ2K"))
    dwc.store_instances([mf])
    got = dwc.retrieve_instance(
        mf.StudyInstanceUID, mf.SeriesInstanceUID, mf.SOPInstanceUID, media_types=(("application/dicom", "*"),)
    )
    assert got.SOPInstanceUID == mf.SOPInstanceUID
    assert got.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert stored_frames(got) == stored_frames(mf)
    np.testing.assert_array_equal(got.pixel_array, mf.pixel_array)


def test_retrieve_compressed_instance_transcoded_to_explicit_little_endian(dwc: DICOMwebClient) -> None:
    mf = pydicom_file(MULTIFRAME_J2K, unique_patient("WADOLE"))
    dwc.store_instances([mf])
    got = dwc.retrieve_instance(
        mf.StudyInstanceUID,
        mf.SeriesInstanceUID,
        mf.SOPInstanceUID,
        media_types=(("application/dicom", ExplicitVRLittleEndian),),
    )
    assert got.SOPInstanceUID == mf.SOPInstanceUID
    assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert int(got.NumberOfFrames) == int(mf.NumberOfFrames)
    np.testing.assert_array_equal(got.pixel_array, mf.pixel_array)  # lossless: identical pixels


def test_retrieve_study_without_transfer_syntax_is_explicit_vr_little_endian(dwc: DICOMwebClient) -> None:
    """dicomweb-client's default Accept for a study is `multipart/related; type="application/dicom"`
    with no transfer-syntax. PS3.18 §8.7.3.4: "If the Transfer Syntax is not specified in a message,
    then the Default Transfer Syntax shall be used" (Explicit VR Little Endian), unless the pixel data
    is lossy or too large for it; a small JPEG 2000 *lossless* instance is neither."""
    mf = pydicom_file(MULTIFRAME_J2K, unique_patient("DEFAULTTS"))
    dwc.store_instances([mf])
    got = dwc.retrieve_study(mf.StudyInstanceUID)
    assert [ds.SOPInstanceUID for ds in got] == [mf.SOPInstanceUID]
    assert got[0].file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(got[0].pixel_array, mf.pixel_array)


def test_retrieve_study(dwc: DICOMwebClient) -> None:
    patient = unique_patient("STUDY")
    study = generate_uid()
    datasets = [pydicom_file(CT, patient, study=study), pydicom_file(MR, patient, study=study)]
    datasets += [synthetic(patient_id=patient, study=study, frames=3)]
    dwc.store_instances(datasets)
    got = dwc.retrieve_study(study, media_types=(("application/dicom", "*"),))
    assert sorted(ds.SOPInstanceUID for ds in got) == sorted(ds.SOPInstanceUID for ds in datasets)
    originals = {ds.SOPInstanceUID: ds for ds in datasets}
    for ds in got:
        assert ds.StudyInstanceUID == study
        np.testing.assert_array_equal(ds.pixel_array, originals[ds.SOPInstanceUID].pixel_array)


def test_retrieve_series(dwc: DICOMwebClient) -> None:
    patient = unique_patient("SER")
    study, series = generate_uid(), generate_uid()
    in_series = [synthetic(patient_id=patient, study=study, series=series, instance_number=n) for n in (1, 2)]
    elsewhere = pydicom_file(CT, patient, study=study)
    dwc.store_instances([*in_series, elsewhere])
    got = dwc.retrieve_series(study, series, media_types=(("application/dicom", "*"),))
    assert sorted(ds.SOPInstanceUID for ds in got) == sorted(ds.SOPInstanceUID for ds in in_series)


def test_retrieve_unknown_instance_is_404(dwc: DICOMwebClient) -> None:
    with pytest.raises(requests.HTTPError) as raised:
        dwc.retrieve_instance(generate_uid(), generate_uid(), generate_uid())
    assert raised.value.response.status_code == 404


# --- WADO-RS: metadata and bulk data -------------------------------------------------------------


def _bulk_uri(element: dict) -> str:  # type: ignore[type-arg]
    assert "BulkDataURI" in element, f"expected a BulkDataURI, got {element}"
    assert "Value" not in element and "InlineBinary" not in element
    return str(element["BulkDataURI"])


def test_retrieve_instance_metadata_loads_with_pydicom(server: ApertureServer, dwc: DICOMwebClient) -> None:
    ct = pydicom_file(CT, unique_patient("META"))
    dwc.store_instances([ct])
    metadata = dwc.retrieve_instance_metadata(ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)
    uri = _bulk_uri(metadata["7FE00010"])
    assert urlsplit(uri).path.endswith(
        f"/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}/bulkdata/7FE00010"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that bulk data URIs are left unresolved
        loaded = Dataset.from_json(metadata)
    assert loaded.SOPInstanceUID == ct.SOPInstanceUID
    assert loaded.PatientID == ct.PatientID
    assert loaded.Rows == ct.Rows and loaded.Columns == ct.Columns
    assert loaded.ImagePositionPatient == ct.ImagePositionPatient

    def fetch(tag: str, vr: str, bulk_uri: str) -> bytes:
        parts = dwc.retrieve_bulkdata(at_server(server, bulk_uri))
        assert len(parts) == 1
        return bytes(parts[0])

    resolved = Dataset.from_json(metadata, bulk_data_uri_handler=fetch)
    assert resolved.PixelData == ct.PixelData  # metadata + bulk data give back the instance's pixels


def test_retrieve_series_metadata(dwc: DICOMwebClient) -> None:
    patient = unique_patient("SERMETA")
    study, series = generate_uid(), generate_uid()
    instances = [synthetic(patient_id=patient, study=study, series=series, instance_number=n) for n in (1, 2, 3)]
    dwc.store_instances(instances)
    metadata = dwc.retrieve_series_metadata(study, series)
    assert len(metadata) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = [Dataset.from_json(item) for item in metadata]
    assert sorted(ds.SOPInstanceUID for ds in loaded) == sorted(ds.SOPInstanceUID for ds in instances)
    assert {ds.InstanceNumber for ds in loaded} == {1, 2, 3}
    for item in metadata:
        _bulk_uri(item["7FE00010"])


def test_retrieve_study_metadata(dwc: DICOMwebClient) -> None:
    patient = unique_patient("STUDYMETA")
    study = generate_uid()
    datasets = [pydicom_file(CT, patient, study=study), pydicom_file(MULTIFRAME_J2K, patient, study=study)]
    dwc.store_instances(datasets)
    metadata = dwc.retrieve_study_metadata(study)
    assert len(metadata) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = {str(ds.SOPInstanceUID): ds for ds in (Dataset.from_json(item) for item in metadata)}
    originals = {str(ds.SOPInstanceUID): ds for ds in datasets}
    assert loaded.keys() == originals.keys()
    for uid, ds in loaded.items():
        assert ds.StudyInstanceUID == study
        assert ds.SOPClassUID == originals[uid].SOPClassUID
        assert ds.Rows == originals[uid].Rows
    multiframe = loaded[str(datasets[1].SOPInstanceUID)]
    assert int(multiframe.NumberOfFrames) == 10
    for item in metadata:
        _bulk_uri(item["7FE00010"])


# --- WADO-RS: frames -----------------------------------------------------------------------------


def test_retrieve_frames_of_native_single_frame_instance(dwc: DICOMwebClient) -> None:
    for name in (CT, MR):
        ds = pydicom_file(name, unique_patient("FRAME"))
        dwc.store_instances([ds])
        frames = dwc.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [1])
        assert frames == [ds.PixelData], name
        as_octets = dwc.retrieve_instance_frames(
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            ds.SOPInstanceUID,
            [1],
            media_types=(("application/octet-stream", ExplicitVRLittleEndian),),
        )
        assert as_octets == [ds.PixelData], name


def test_retrieve_frames_of_native_multiframe_instance(dwc: DICOMwebClient) -> None:
    ds = synthetic(patient_id=unique_patient("MULTI"), frames=3)
    dwc.store_instances([ds])
    frame_size = ds.Rows * ds.Columns * ds.BitsAllocated // 8
    expected = [ds.PixelData[i * frame_size : (i + 1) * frame_size] for i in range(3)]
    frames = dwc.retrieve_instance_frames(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        [3, 1, 2],
        media_types=("application/octet-stream",),
    )
    assert frames == [expected[2], expected[0], expected[1]]  # in the order asked for
    assert dwc.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [2]) == [
        expected[1]
    ]


def test_retrieve_compressed_frames_as_stored(dwc: DICOMwebClient) -> None:
    mf = pydicom_file(MULTIFRAME_J2K, unique_patient("J2KFRAMES"))
    dwc.store_instances([mf])
    encoded = stored_frames(mf)
    uids = (mf.StudyInstanceUID, mf.SeriesInstanceUID, mf.SOPInstanceUID)
    # dicomweb-client's default: multipart/related; type="*/*" -> the frames as stored
    assert dwc.retrieve_instance_frames(*uids, [1, 10]) == [encoded[0], encoded[9]]
    # the media type of the stored syntax (PS3.18 Table 8.7.3-5), named with and without the syntax
    assert dwc.retrieve_instance_frames(*uids, [5], media_types=(("image/jp2", JPEG2000Lossless),)) == [encoded[4]]
    assert dwc.retrieve_instance_frames(*uids, [2, 3], media_types=("image/jp2",)) == [encoded[1], encoded[2]]
    # octet-stream with transfer-syntax=*: whatever the server has, here the stored bytes
    as_stored = dwc.retrieve_instance_frames(*uids, [7], media_types=(("application/octet-stream", "*"),))
    assert as_stored == [encoded[6]]


def test_retrieve_compressed_frames_decoded(dwc: DICOMwebClient) -> None:
    mf = pydicom_file(MULTIFRAME_J2K, unique_patient("J2KDECODE"))
    dwc.store_instances([mf])
    pixels = mf.pixel_array
    frames = dwc.retrieve_instance_frames(
        mf.StudyInstanceUID,
        mf.SeriesInstanceUID,
        mf.SOPInstanceUID,
        [1, 4, 10],
        media_types=(("application/octet-stream", ExplicitVRLittleEndian),),
    )
    expected = [pixels[i].astype(pixels.dtype.newbyteorder("<")).tobytes() for i in (0, 3, 9)]
    assert frames == expected


def test_retrieve_frame_beyond_the_last_is_404(dwc: DICOMwebClient) -> None:
    ds = synthetic(patient_id=unique_patient("NOFRAME"), frames=3)
    dwc.store_instances([ds])
    with pytest.raises(requests.HTTPError) as raised:
        dwc.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [4])
    assert raised.value.response.status_code == 404


# --- WADO-RS: rendered ---------------------------------------------------------------------------


def test_retrieve_instance_rendered_jpeg(dwc: DICOMwebClient) -> None:
    ct = pydicom_file(CT, unique_patient("RENDER"))
    dwc.store_instances([ct])
    body = dwc.retrieve_instance_rendered(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID, media_types=("image/jpeg",)
    )
    image = Image.open(io.BytesIO(body))
    assert image.format == "JPEG"
    assert image.size == (ct.Columns, ct.Rows)
    assert image.mode == "L"
    assert np.asarray(image).std() > 0  # an image, not a blank page


def test_retrieve_instance_rendered_png_and_quality(dwc: DICOMwebClient) -> None:
    mr = pydicom_file(MR, unique_patient("RENDERPNG"))
    dwc.store_instances([mr])
    uids = (mr.StudyInstanceUID, mr.SeriesInstanceUID, mr.SOPInstanceUID)
    png = Image.open(io.BytesIO(dwc.retrieve_instance_rendered(*uids, media_types=("image/png",))))
    assert png.format == "PNG"
    assert png.size == (mr.Columns, mr.Rows)
    low = dwc.retrieve_instance_rendered(*uids, media_types=("image/jpeg",), params={"quality": 10})
    high = dwc.retrieve_instance_rendered(*uids, media_types=("image/jpeg",), params={"quality": 95})
    assert Image.open(io.BytesIO(low)).size == (mr.Columns, mr.Rows)
    assert len(low) < len(high)


def test_retrieve_frame_rendered_of_multiframe(dwc: DICOMwebClient) -> None:
    mf = pydicom_file(MULTIFRAME_J2K, unique_patient("RENDERMF"))
    dwc.store_instances([mf])
    uids = (mf.StudyInstanceUID, mf.SeriesInstanceUID, mf.SOPInstanceUID)
    first = dwc.retrieve_instance_frames_rendered(*uids, [1], media_types=("image/png",))
    last = dwc.retrieve_instance_frames_rendered(*uids, [10], media_types=("image/png",))
    for body in (first, last):
        image = Image.open(io.BytesIO(body))
        assert image.format == "PNG"
        assert image.size == (mf.Columns, mf.Rows)
    assert np.asarray(Image.open(io.BytesIO(first))).tolist() != np.asarray(Image.open(io.BytesIO(last))).tolist()


def test_retrieve_series_rendered_is_multipart(dwc: DICOMwebClient) -> None:
    """Without media types the client accepts anything and gets the multipart answer, one JPEG per instance.

    Asked for `media_types=("image/jpeg",)` it sends the single-part `Accept: image/jpeg`, which PS3.18
    §10.4.4 says a Rendered Series is to refuse (406), even for a series of one single-frame image.
    """
    patient = unique_patient("RENDERSERIES")
    first = pydicom_file(MR, patient)
    second = pydicom_file(MR, patient, study=first.StudyInstanceUID, series=first.SeriesInstanceUID)
    second.InstanceNumber = int(first.InstanceNumber or 0) + 1
    dwc.store_instances([first, second])
    body = dwc.retrieve_series_rendered(first.StudyInstanceUID, first.SeriesInstanceUID)
    boundary = body.split(b"\r\n", 1)[0]
    assert boundary.startswith(b"--aperture-")
    parts = [p for p in body.split(boundary)[1:] if p.strip(b"-\r\n")]
    assert len(parts) == 2
    for part in parts:
        headers, image = part.split(b"\r\n\r\n", 1)
        assert b"Content-Type: image/jpeg" in headers
        assert Image.open(io.BytesIO(image.removesuffix(b"\r\n"))).size == (first.Columns, first.Rows)
    with pytest.raises(requests.HTTPError) as refused:
        dwc.retrieve_series_rendered(first.StudyInstanceUID, first.SeriesInstanceUID, media_types=("image/jpeg",))
    assert refused.value.response.status_code == 406
