"""`dicomweb-client` (the Python DICOMweb client most tools use) works unchanged with a bearer token.

The only change on the client's side is a `requests.Session` carrying `Authorization: Bearer`, as
its documentation suggests for any authentication; every call is the package's own. The token is
Walter's patient token (minted at the demo's sandbox for the e2e viewer, as `aperture ehr token`
does): the answers must be his study and nothing else, equal to what the demo stored.
"""

from __future__ import annotations

import io

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from tests.e2e.conftest import VIEWER, Access, E2ERun
from tests.e2e.imaging import instances_of, studies_of
from tests.stack import DemoStack

WALTER = "walter-nguyen"
(STUDY,) = studies_of(WALTER)
HTJ2K_CODESTREAM = b"\xff\x4f\xff\x51"  # JPEG 2000 SOC then SIZ marker (ITU-T T.800 A.4)


@pytest.fixture(scope="module")
def dwc(demo_stack: DemoStack, viewer: str, run: E2ERun) -> DICOMwebClient:
    token = demo_stack.token(viewer, "launch/patient patient/ImagingStudy.rs", patient=WALTER, user=f"Patient/{WALTER}")
    session = requests.Session()
    session.headers.update(run.bearer(token))
    return DICOMwebClient(url=demo_stack.dicomweb, session=session)


def test_search_for_studies_finds_the_patients_study_only(dwc: DICOMwebClient, run: E2ERun) -> None:
    studies = dwc.search_for_studies()
    assert [s["0020000D"]["Value"][0] for s in studies] == [STUDY]
    run.expect(Access(VIEWER, "permit", "E", patient=f"Patient/{WALTER}"))


def test_retrieve_study_metadata(dwc: DICOMwebClient) -> None:
    metadata = dwc.retrieve_study_metadata(STUDY)
    assert {m["00080018"]["Value"][0] for m in metadata} == {i.sop for i in instances_of(STUDY)}


def test_retrieve_instance_frames_are_the_stored_pixels(dwc: DICOMwebClient, run: E2ERun) -> None:
    for instance in instances_of(STUDY):
        pixels = pydicom.dcmread(io.BytesIO(instance.data)).PixelData
        (frame,) = dwc.retrieve_instance_frames(
            STUDY, instance.series, instance.sop, frame_numbers=[1], media_types=("application/octet-stream",)
        )
        assert frame == pixels
        # the package's default (type="*/*"): the stored frame, or the server's HTJ2K copy once it is made
        (default,) = dwc.retrieve_instance_frames(STUDY, instance.series, instance.sop, frame_numbers=[1])
        assert default == pixels or default.startswith(HTJ2K_CODESTREAM)
    run.expect(Access(VIEWER, "permit", "R", patient=f"Patient/{WALTER}", study=STUDY))


def test_retrieve_study_is_the_stored_instances(dwc: DICOMwebClient) -> None:
    datasets = dwc.retrieve_study(STUDY)
    stored = {i.sop: pydicom.dcmread(io.BytesIO(i.data)) for i in instances_of(STUDY)}
    assert {str(ds.SOPInstanceUID) for ds in datasets} == set(stored)
    for ds in datasets:
        assert ds.PixelData == stored[str(ds.SOPInstanceUID)].PixelData
        assert ds.PatientID == stored[str(ds.SOPInstanceUID)].PatientID


def test_another_patients_study_is_not_found(dwc: DICOMwebClient, run: E2ERun) -> None:
    (other,) = studies_of("tomas-berg")
    with pytest.raises(requests.HTTPError) as refused:
        dwc.retrieve_study_metadata(other)
    assert refused.value.response.status_code == 404
    run.expect(Access(VIEWER, "deny", "R", study=other, status=404))
