"""Write-scoped tokens against other patients' and withheld studies: STOW-RS and DELETE refuse, and nothing changes.

On the suite's own store (deleting enabled). Maya's token with `patient/ImagingStudy.cruds` tries
to store instances for Walter (a new study of his, a new instance in his existing study, by
`POST /studies` and `POST /studies/{his}`) and to delete his study, series and instance; Elena's
proxy token with the same scopes tries to add to and delete Maya's withheld study.

The STOW answer for a refused instance (aperture/dicomweb/stow.py, PS3.18 §10.5.3.1 Table
10.5.3-1): 409, with the instance in the Failed SOP Sequence (0008,1198), Failure Reason
(0008,1197) 0xA900, and nothing stored. The refusal must not depend on whether the study exists
(that would tell an attacker which UIDs are in use for someone else).
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.security.attacks import ORIGIN, Target, assert_as_if_missing, assert_cors, assert_no_leak, fake_uid
from tests.security.conftest import MAYA_WITHHELD, WALTER_STUDY, WRITER, OwnStore, patient_token
from tests.security.servers import seed_files, stow, target_of
from tests.stack import DemoStack

WRITE_SCOPE = "launch/patient patient/ImagingStudy.cruds"


def writer(stack: DemoStack, patient: str, user: str) -> str:
    return stack.token(WRITER, WRITE_SCOPE, patient=patient, user=user)


def instance_of(files: list[bytes], *, study: str | None = None, series: str | None = None) -> bytes:
    """A new instance made from the first of `files`: a new SOP Instance UID, optionally moved to `study`/`series`."""
    ds = pydicom.dcmread(io.BytesIO(files[0]))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix="2.25.")
    if study is not None:
        ds.StudyInstanceUID = study
    if series is not None:
        ds.SeriesInstanceUID = series
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def count_instances(http: httpx.Client, store: OwnStore, token: str, study: str) -> int:
    answer = http.get(f"{store.url}/dicom-web/studies/{study}/instances", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text[:300]
    return len(answer.json())


def assert_refused_stow(answer: httpx.Response, target: Target, sop_uid: str) -> None:
    assert answer.status_code == 409, f"{answer.status_code} {answer.text[:400]}"
    body: dict[str, Any] = answer.json()
    failed = body["00081198"]["Value"]
    assert [item["00081155"]["Value"][0] for item in failed] == [sop_uid]
    assert failed[0]["00081197"]["Value"] == [0xA900]
    assert "00081199" not in body, body
    assert_cors(answer)
    assert_no_leak(answer, target)


@pytest.fixture(scope="module")
def walter_files() -> list[bytes]:
    return seed_files("walter-nguyen")


@pytest.fixture(scope="module")
def walter_here(walter_files: list[bytes]) -> Target:
    return target_of(walter_files, "walter-nguyen")


@pytest.mark.parametrize("where", ["new-study", "his-study", "his-series", "his-study-by-url"])
def test_stow_for_another_patient_is_refused_and_stores_nothing(
    http: httpx.Client, demo_stack: DemoStack, own_store: OwnStore, walter_files: list[bytes],
    walter_here: Target, where: str,
) -> None:  # fmt: skip
    maya = writer(demo_stack, "maya-alvarez", "Patient/maya-alvarez")
    walter = patient_token(demo_stack, "walter-nguyen")
    before = count_instances(http, own_store, walter, WALTER_STUDY)
    new_study = generate_uid(prefix="2.25.")
    data = {
        "new-study": instance_of(walter_files, study=new_study, series=generate_uid(prefix="2.25.")),
        "his-study": instance_of(walter_files, series=generate_uid(prefix="2.25.")),
        "his-series": instance_of(walter_files),
        "his-study-by-url": instance_of(walter_files),
    }[where]
    sop = str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
    answer = stow(http, f"{own_store.url}/dicom-web", [data], token=maya,
                  study=WALTER_STUDY if where == "his-study-by-url" else None)  # fmt: skip
    assert_refused_stow(answer, walter_here, sop)
    assert count_instances(http, own_store, walter, WALTER_STUDY) == before
    lookup = http.get(f"{own_store.url}/dicom-web/instances", params={"SOPInstanceUID": sop},
                      headers={"Authorization": f"Bearer {walter}"})  # fmt: skip
    assert lookup.status_code == 200 and lookup.json() == [], lookup.text[:300]


def test_stow_into_another_patients_study_is_refused_as_for_a_study_that_does_not_exist(
    http: httpx.Client, demo_stack: DemoStack, own_store: OwnStore, walter_files: list[bytes], walter_here: Target
) -> None:
    """Walter's identity in his existing study, and in a study UID in use by nobody: the same refusal."""
    maya = writer(demo_stack, "maya-alvarez", "Patient/maya-alvarez")
    existing = stow(http, f"{own_store.url}/dicom-web", [instance_of(walter_files)], token=maya)
    nowhere = stow(http, f"{own_store.url}/dicom-web", [instance_of(walter_files, study=fake_uid(WALTER_STUDY))],
                   token=maya)  # fmt: skip
    assert existing.status_code == nowhere.status_code == 409
    reason = lambda answer: answer.json()["00081198"]["Value"][0]["00000902"]  # noqa: E731
    assert reason(existing) == reason(nowhere)


@pytest.mark.parametrize("where", ["into-the-study", "by-url"])
def test_a_proxy_cannot_add_to_a_withheld_study(
    http: httpx.Client, demo_stack: DemoStack, own_store: OwnStore, where: str
) -> None:
    elena = writer(demo_stack, "maya-alvarez", "RelatedPerson/elena-for-maya")
    maya = patient_token(demo_stack, "maya-alvarez")
    maya_files = [f for f in seed_files("maya-alvarez") if MAYA_WITHHELD.encode() in f]
    withheld = target_of(maya_files, "maya-alvarez")
    withheld.identity_secret = False  # Elena reaches Maya: only the study itself is hidden from her
    before = count_instances(http, own_store, maya, MAYA_WITHHELD)
    data = instance_of(maya_files)
    sop = str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
    answer = stow(http, f"{own_store.url}/dicom-web", [data], token=elena,
                  study=MAYA_WITHHELD if where == "by-url" else None)  # fmt: skip
    assert_refused_stow(answer, withheld, sop)
    assert count_instances(http, own_store, maya, MAYA_WITHHELD) == before


@pytest.mark.parametrize("level", ["study", "series", "instance"])
@pytest.mark.parametrize("who", ["other-patient", "proxy-withheld"])
def test_delete_of_what_the_token_does_not_reach_is_not_found_and_deletes_nothing(
    http: httpx.Client, demo_stack: DemoStack, own_store: OwnStore, level: str, who: str
) -> None:
    if who == "other-patient":
        token = writer(demo_stack, "maya-alvarez", "Patient/maya-alvarez")
        owner = patient_token(demo_stack, "walter-nguyen")
        target = target_of(seed_files("walter-nguyen"), "walter-nguyen")
    else:
        token = writer(demo_stack, "maya-alvarez", "RelatedPerson/elena-for-maya")
        owner = patient_token(demo_stack, "maya-alvarez")
        target = target_of([f for f in seed_files("maya-alvarez") if MAYA_WITHHELD.encode() in f], "maya-alvarez")
        target.identity_secret = False
    before = count_instances(http, own_store, owner, target.study)
    series = f"/studies/{target.study}/series/{target.series_uid}"
    path = {"study": f"/studies/{target.study}", "series": series,
            "instance": f"{series}/instances/{target.sop_uid}"}[level]  # fmt: skip
    replaced = {uid: fake_uid(uid) for uid in target.uids()}
    missing_path = path
    for uid, fake in replaced.items():
        missing_path = missing_path.replace(uid, fake)
    headers = {"Authorization": f"Bearer {token}", "Origin": ORIGIN}
    answer = http.delete(f"{own_store.url}/dicom-web{path}", headers=headers)
    missing = http.delete(f"{own_store.url}/dicom-web{missing_path}", headers=headers)
    assert answer.status_code == 404, answer.text[:300]
    assert_as_if_missing(answer, missing, replaced)
    assert_cors(answer)
    assert_no_leak(answer, target)
    assert count_instances(http, own_store, owner, target.study) == before


def test_stow_of_ones_own_instance_under_another_patients_study_uid_says_nothing_of_them(
    http: httpx.Client, demo_stack: DemoStack, own_store: OwnStore, walter_here: Target
) -> None:
    """Maya's identity with Walter's Study Instance UID: refused with the refusal every write outside her
    reach gets, and nothing of Walter (name, MRN, his series and instances) in the answer."""
    maya = writer(demo_stack, "maya-alvarez", "Patient/maya-alvarez")
    walter = patient_token(demo_stack, "walter-nguyen")
    before = count_instances(http, own_store, walter, WALTER_STUDY)
    mine = [f for f in seed_files("maya-alvarez") if MAYA_WITHHELD.encode() not in f]
    data = instance_of(mine, study=WALTER_STUDY, series=generate_uid(prefix="2.25."))
    sop = str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
    answer = stow(http, f"{own_store.url}/dicom-web", [data], token=maya)
    assert_refused_stow(answer, walter_here, sop)
    assert "another patient" not in answer.text  # not even that the UID is in use
    assert count_instances(http, own_store, walter, WALTER_STUDY) == before
