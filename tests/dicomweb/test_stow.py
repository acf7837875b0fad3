"""STOW-RS (PS3.18 §10.5): statuses, per-instance failures, policies, and bad input that stores nothing."""

from __future__ import annotations

import io
import socket
import time
import xml.etree.ElementTree as ET

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from aperture.dicomweb.stow import error_comment, unquoted
from tests.conftest import ApertureServer, start_server
from tests.helpers import make_instance, multipart_body, partial_uploads, sequence_items, stow


def _count(client: httpx.Client, study: str) -> int:
    response = client.get(f"/studies/{study}/instances")
    return len(response.json()) if response.status_code == 200 else 0


def test_all_stored_is_200_with_referenced_sop_and_retrieve_urls(client: httpx.Client) -> None:
    study = generate_uid()
    parts = [make_instance(study=study, instance_number=n) for n in (1, 2, 3)]
    response = stow(client, parts)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    answer = response.json()
    referenced = sequence_items(answer, "00081199")
    assert len(referenced) == 3
    assert answer["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{study}")
    for item in referenced:
        url = item["00081190"]["Value"][0]
        assert client.get(url, headers={"Accept": "application/dicom"}).status_code == 200
    assert "00081198" not in answer
    assert _count(client, study) == 3


NATIVE = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"


def _xml_items(root: ET.Element, tag: str) -> list[ET.Element]:
    """The Items of the sequence `tag` (8 hex digits) at the top of a Native DICOM Model document."""
    return [item for attribute in root.findall(f"{NATIVE}DicomAttribute[@tag='{tag}']")
            for item in attribute.findall(f"{NATIVE}Item")]  # fmt: skip


def _xml_value(element: ET.Element, tag: str) -> str | None:
    found = element.find(f"{NATIVE}DicomAttribute[@tag='{tag}']/{NATIVE}Value")
    return None if found is None else found.text


def test_the_response_is_dicom_xml_when_the_client_asks_for_it(client: httpx.Client) -> None:
    """The Store Instances Response Module (PS3.18 Annex I) as one PS3.19 document, with what the JSON holds."""
    study = generate_uid()
    body, ctype = multipart_body([make_instance(study=study), b"this is not DICOM at all" * 10])
    response = client.post("/studies", content=body, headers={"Content-Type": ctype, "Accept": "application/dicom+xml"})
    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/dicom+xml")
    root = ET.fromstring(response.content)
    (stored,) = _xml_items(root, "00081199")
    url = _xml_value(stored, "00081190")
    assert url and client.get(url, headers={"Accept": "application/dicom"}).status_code == 200
    (refused,) = _xml_items(root, "00081198")
    assert _xml_value(refused, "00081197") == str(0xC000)
    assert "Part-10" in (_xml_value(refused, "00000902") or "")
    assert (_xml_value(root, "00081190") or "").endswith(f"/studies/{study}")


@pytest.mark.parametrize(
    ("accept", "media"),
    [("application/dicom+xml, application/dicom+json;q=0.5", "application/dicom+xml"),
     ("application/dicom+json, application/dicom+xml", "application/dicom+json"),
     ("*/*", "application/dicom+json"), ("application/*", "application/dicom+json")],
)  # fmt: skip
def test_the_first_acceptable_response_type_wins(client: httpx.Client, accept: str, media: str) -> None:
    body, ctype = multipart_body([make_instance()])
    response = client.post("/studies", content=body, headers={"Content-Type": ctype, "Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)


def test_a_response_type_it_cannot_write_is_refused_before_anything_is_stored(client: httpx.Client) -> None:
    study = generate_uid()
    body, ctype = multipart_body([make_instance(study=study)])
    response = client.post("/studies", content=body, headers={"Content-Type": ctype, "Accept": "text/html"})
    assert response.status_code == 406
    assert "application/dicom+xml" in response.json()["message"]
    assert _count(client, study) == 0


def test_some_failed_is_202_and_names_each_failure(client: httpx.Client) -> None:
    study = generate_uid()
    good = make_instance(study=study)
    response = stow(client, [good, b"this is not DICOM at all" * 10])
    assert response.status_code == 202
    answer = response.json()
    assert len(sequence_items(answer, "00081199")) == 1
    failed = sequence_items(answer, "00081198")
    assert len(failed) == 1
    assert failed[0]["00081197"]["Value"] == [0xC000]
    assert "Part 2" in failed[0]["00000902"]["Value"][0]
    assert _count(client, study) == 1


def test_none_stored_and_none_understood_is_400(client: httpx.Client) -> None:
    response = stow(client, [b"\x00" * 300])
    assert response.status_code == 400
    assert len(sequence_items(response.json(), "00081198")) == 1


def test_instance_from_another_study_is_refused_when_posting_to_a_study(client: httpx.Client) -> None:
    url_study, other_study = generate_uid(), generate_uid()
    mine = make_instance(study=url_study)
    stranger = make_instance(study=other_study)
    response = stow(client, [mine, stranger], path=f"/studies/{url_study}")
    assert response.status_code == 202
    failed = sequence_items(response.json(), "00081198")
    assert len(failed) == 1 and "not in the study" in failed[0]["00000902"]["Value"][0]
    assert _count(client, url_study) == 1
    assert client.get(f"/studies/{other_study}/metadata").status_code == 404


def test_identical_resend_succeeds_and_different_content_is_rejected_by_default(client: httpx.Client) -> None:
    sop, study = generate_uid(), generate_uid()
    first = make_instance(study=study, sop=sop, patient_name="First^Version")
    assert stow(client, [first]).status_code == 200
    assert stow(client, [first]).status_code == 200  # a retry after a lost answer must not fail
    changed = make_instance(study=study, sop=sop, patient_name="Second^Version")
    response = stow(client, [changed])
    assert response.status_code == 409
    failed = sequence_items(response.json(), "00081198")
    assert failed[0]["00081197"]["Value"] == [0x0111]
    metadata = client.get(f"/studies/{study}/metadata").json()
    assert metadata[0]["00100010"]["Value"][0]["Alphabetic"] == "First^Version"


def test_overwrite_policy_replaces_the_instance(tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(tmp_path / "data", config='[store]\nduplicate_policy = "overwrite"\n')
    try:
        with httpx.Client(base_url=srv.dicomweb, timeout=30) as http:
            sop, study = generate_uid(), generate_uid()
            assert stow(http, [make_instance(study=study, sop=sop, patient_name="Old^Name")]).status_code == 200
            replacement = make_instance(study=study, sop=sop, patient_name="New^Name")
            assert stow(http, [replacement]).status_code == 200
            metadata = http.get(f"/studies/{study}/metadata").json()
            assert len(metadata) == 1
            assert metadata[0]["00100010"]["Value"][0]["Alphabetic"] == "New^Name"
            series = metadata[0]["0020000E"]["Value"][0]
            served = http.get(
                f"/studies/{study}/series/{series}/instances/{sop}", headers={"Accept": "application/dicom"}
            )
            assert served.content == replacement
            (found,) = http.get("/studies", params={"StudyInstanceUID": study}).json()
            assert found["00100010"]["Value"][0]["Alphabetic"] == "New^Name", "study attributes follow the overwrite"
            blobs = list((srv.data / "blobs").rglob("*.dcm"))
            assert len(blobs) == 1, "the replaced file must be removed"
    finally:
        srv.stop()


def test_same_mrn_from_two_issuers_are_two_patients_and_a_study_cannot_change_patient(client: httpx.Client) -> None:
    mrn = f"MRN-{generate_uid()[-8:]}"
    a = make_instance(patient_id=mrn, issuer="urn:oid:1.2.3.100")
    b = make_instance(patient_id=mrn, issuer="urn:oid:1.2.3.200")
    assert stow(client, [a, b]).status_code == 200
    found = client.get("/studies", params={"PatientID": mrn}).json()
    assert sorted(s["00100021"]["Value"][0] for s in found) == ["urn:oid:1.2.3.100", "urn:oid:1.2.3.200"]
    only_one = client.get("/studies", params={"PatientID": mrn, "IssuerOfPatientID": "urn:oid:1.2.3.200"}).json()
    assert len(only_one) == 1
    study = only_one[0]["0020000D"]["Value"][0]
    intruder = make_instance(study=study, patient_id=mrn, issuer="urn:oid:1.2.3.100")
    response = stow(client, [intruder])
    assert response.status_code == 409
    assert "another patient" in sequence_items(response.json(), "00081198")[0]["00000902"]["Value"][0]


def test_single_part_application_dicom_body_is_accepted(client: httpx.Client) -> None:
    data = make_instance()
    response = client.post("/studies", content=data, headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200


def test_unquoted_type_parameter_is_accepted(client: httpx.Client) -> None:
    body, _ = multipart_body([make_instance()])
    boundary = body.split(b"\r\n", 1)[0][2:].decode()
    response = client.post(
        "/studies",
        content=body,
        headers={"Content-Type": f"multipart/related; type=application/dicom; boundary={boundary}"},
    )
    assert response.status_code == 200


def test_malformed_multipart_is_400_and_stores_nothing(client: httpx.Client) -> None:
    study = generate_uid()
    body, ctype = multipart_body([make_instance(study=study), make_instance(study=study)])
    truncated = body[: len(body) - 200]  # the second part never ends
    response = client.post("/studies", content=truncated, headers={"Content-Type": ctype})
    assert response.status_code == 400
    assert "closing" in response.json()["message"]
    assert client.get(f"/studies/{study}/metadata").status_code == 404


def test_missing_boundary_and_wrong_content_type_are_clear_errors(client: httpx.Client) -> None:
    response = client.post(
        "/studies", content=b"x", headers={"Content-Type": 'multipart/related; type="application/dicom"'}
    )
    assert response.status_code == 400 and "boundary" in response.json()["message"]
    response = client.post("/studies", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 415 and "multipart/related" in response.json()["message"]
    body, _ = multipart_body([b"{}"])
    boundary = body.split(b"\r\n", 1)[0][2:].decode()
    response = client.post(
        "/studies",
        content=body,
        headers={"Content-Type": f'multipart/related; type="application/dicom+json"; boundary={boundary}'},
    )
    assert response.status_code == 415


def test_truncated_dicom_is_refused_with_a_reason(client: httpx.Client) -> None:
    data = make_instance(rows=64, columns=64)
    response = stow(client, [data[:-1000]])
    assert response.status_code == 400
    failed = sequence_items(response.json(), "00081198")
    assert failed[0]["00081197"]["Value"] == [0xC000]
    assert "truncated" in failed[0]["00000902"]["Value"][0]


def test_real_broken_files_are_refused(client: httpx.Client) -> None:
    for name in ("MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"):
        response = stow(client, [open(get_testdata_file(name), "rb").read()])
        assert response.status_code == 400, name


def test_upload_over_the_limit_is_413_and_stores_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv: ApertureServer = start_server(tmp_path / "data", config="[store]\nmax_upload_bytes = 200000\n")
    try:
        with httpx.Client(base_url=srv.dicomweb, timeout=30) as http:
            study = generate_uid()
            parts = [make_instance(study=study, instance_number=n, rows=128, columns=128) for n in range(8)]
            response = stow(http, parts)
            assert response.status_code == 413
            assert "200000" in response.json()["message"]
            assert http.get(f"/studies/{study}/metadata").status_code == 404
            assert partial_uploads(srv.data) == []
            assert http.get("/studies").status_code == 200  # still serving
    finally:
        srv.stop()


def test_path_traversal_in_uids_is_400(client: httpx.Client) -> None:
    for bad in ("..", "%2e%2e", "1.2.3%2F..%2F..%2Fetc", "1.2;DROP", "a" * 65):
        response = client.get(f"/studies/{bad}/metadata")
        assert response.status_code in (400, 404), bad
        assert response.headers["content-type"].startswith("application/json")
    response = client.get("/studies/1.2.3%2F..%2Fpasswd/metadata")
    assert response.status_code in (400, 404)
    evil = make_instance(sop="../../../../etc/passwd")
    failed = sequence_items(stow(client, [evil]).json(), "00081198")
    assert failed and failed[0]["00081197"]["Value"] == [0xA900]


def _failures(response: httpx.Response) -> list[tuple[int, str]]:
    return [(i["00081197"]["Value"][0], i["00000902"]["Value"][0]) for i in sequence_items(response.json(), "00081198")]


def test_a_file_cut_short_is_refused_as_truncated_not_as_missing_uids(client: httpx.Client) -> None:
    """Cut before its UIDs, in a value, inside an element header, in its file meta, or (no Pixel Data) at the end."""
    ct = open(get_testdata_file("CT_small.dcm"), "rb").read()
    plan = open(get_testdata_file("rtplan.dcm"), "rb").read()
    parts = [ct[:2000], ct[:600], ct[:300], ct[:140], plan[:2000], plan[:-10],
             open(get_testdata_file("rtplan_truncated.dcm"), "rb").read()]  # fmt: skip
    response = stow(client, parts)
    assert response.status_code == 400
    for number, (reason, comment) in enumerate(_failures(response), start=1):
        assert reason == 0xC000, (number, comment)
        assert comment.startswith(f"Part {number}: The file is truncated"), comment


def test_error_comments_are_whole_messages_when_they_fit(client: httpx.Client) -> None:
    response = stow(client, [b"\0" * 300, b"", make_instance()[:-1000]])
    assert response.status_code == 400
    comments = [comment for _, comment in _failures(response)]
    assert comments[0] == "Part 1: Not a Part-10 file: no 'DICM' after the preamble."
    assert comments[1] == "Part 2: It is empty."
    assert comments[2].startswith("Part 3: The file is truncated")
    assert all(len(comment) <= 64 for comment in comments)


@pytest.mark.parametrize(
    ("message", "comment"),
    [
        ("Part 1: It is empty.", "Part 1: It is empty."),
        (
            "Already stored with different content: delete it first, or set the duplicate policy.",
            "Already stored with different content: delete it first, or...",
        ),
        (
            "Study stored for another patient: its PatientID or IssuerOfPatientID differ. Reconcile it.",
            "Study stored for another patient: its PatientID or...",
        ),
        (
            "Part 7: The data set cannot be parsed. It holds a 2-byte length. And more follows here.",
            "Part 7: The data set cannot be parsed. It holds a 2-byte length.",
        ),
        (
            "Part 2: The file is truncated: Pixel Data declares 30000 bytes but only 29990 follow.",
            "Part 2: The file is truncated: Pixel Data declares 30000...",
        ),
        (
            "Part 12: Unusable SeriesInstanceUID: it is 70 characters long (at most 64). It reads '1.2'.",
            "Part 12: Unusable SeriesInstanceUID: it is 70 characters long...",
        ),
        (
            "Part 3: not in the study the URL names. It is in study 1.2.826.0.1.3680043.8.498.1234567890.",
            "Part 3: not in the study the URL names. It is in study...",
        ),
        (
            "Part 4: every one of these words is whole and there is no clause end until far too late",
            "Part 4: every one of these words is whole and there is no...",
        ),
        ("Part 5: " + "9" * 80, "Part 5: " + "9" * 53 + "..."),
    ],
)
def test_error_comment_is_cut_at_a_clause_or_a_word_never_inside_one(message: str, comment: str) -> None:
    assert error_comment(message) == comment
    assert len(comment) <= 64


def _raw_post_head(srv_or_client_url: str, content_length: int, boundary: str) -> tuple[socket.socket, bytes]:
    """An open connection that has sent a STOW-RS request's headers, and those headers."""
    url = httpx.URL(srv_or_client_url)
    sock = socket.create_connection((url.host, url.port), timeout=60)
    head = (
        f"POST {url.path.rstrip('/')}/studies HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f'Content-Type: multipart/related; type="application/dicom"; boundary={boundary}\r\n'
        f"Accept: application/dicom+json\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()
    sock.sendall(head)
    return sock, head


def test_a_content_length_over_the_limit_is_413_before_the_body_is_read(client: httpx.Client) -> None:
    """Content-Length: 999999999999 used to be read on until the limit passed (the client sent 8 GiB first)."""
    sock, _ = _raw_post_head(str(client.base_url), 999_999_999_999, "b0undary")
    try:
        sock.sendall(b"--b0undary\r\nContent-Type: application/dicom\r\n\r\nDICM")  # a start, nothing more
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            piece = sock.recv(65536)  # the socket's timeout bounds the wait: on the base commit it expired
            if not piece:
                break
            answer += piece
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"8589934592" in answer and b"store.max_upload_bytes" in answer


def test_a_client_leaving_mid_upload_is_one_log_line_not_a_500(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """It was logged as an unhandled error with a traceback and counted as a 500."""
    srv = start_server(tmp_path / "data", config="[server]\naccess_log = true\n")  # the 499 is in the access log
    try:
        study = generate_uid()
        data = make_instance(study=study, rows=512, columns=512)
        sock, _ = _raw_post_head(srv.dicomweb, 10 * len(data), "leaving")
        sock.sendall(b"--leaving\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--leaving\r\n\r\n")
        sock.sendall(data[: len(data) // 2])
        sock.close()
        for _ in range(600):  # until the server has seen the disconnect (bounded: at most ~60 s)
            log = srv.log.read_text()
            if "POST /dicom-web/studies " in log:
                break
            time.sleep(0.1)
        lines = [line for line in log.splitlines() if "/dicom-web/studies" in line or "went away" in line]
        assert any("went away" in line and "POST /dicom-web/studies" in line for line in lines), log[-2000:]
        assert any("POST /dicom-web/studies 499 " in line for line in lines), lines
        assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
        with httpx.Client(base_url=srv.dicomweb, timeout=30) as http:
            assert http.get(f"/studies/{study}/metadata").status_code == 404, "the complete first part is not kept"
        assert partial_uploads(srv.data) == []
    finally:
        srv.stop()


def test_the_log_line_of_a_refusal_keeps_no_quoted_value() -> None:
    """Refusals quote what they read (pydicom's parse errors); the file's values may name its patient."""
    message = "Part 2: The data set cannot be parsed: invalid literal for int() with base 10: 'Doe^Jane 1980'"
    assert unquoted(message) == "Part 2: The data set cannot be parsed: invalid literal for int() with base 10: …"
    assert "DOE" not in unquoted("Part 1: The data set cannot be parsed: can't convert value 'DOE^JANE'")
    assert "Brien" not in unquoted("""Part 3: cannot read 'O'Brien "x"' here""")
    assert unquoted("Part 1: It is empty.") == "Part 1: It is empty."


# One case per row of the status table in docs/dicomweb.md ("STOW-RS statuses and FailureReasons"):
# PS3.18 §10.5.3.1 Table 10.5.3-1 for the status, Annex I Table I.2-2 for each FailureReason.

NOT_A_STORAGE_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage: a DICOMDIR
VERIFICATION = "1.2.840.10008.1.1"
NOT_A_TRANSFER_SYNTAX = "1.2.826.0.1.3680043.8.498.1"  # a valid UID, but no transfer syntax


def _edited(**changes: str) -> bytes:
    """A fresh instance with some attributes (or, as `TransferSyntaxUID`, its file meta) changed or removed."""
    ds = pydicom.dcmread(io.BytesIO(make_instance()))
    for keyword, value in changes.items():
        target = ds.file_meta if keyword.startswith(("TransferSyntax", "MediaStorage")) else ds
        if value == "":
            delattr(target, keyword)
        else:
            setattr(target, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def _post(client: httpx.Client, parts: list[bytes], path: str = "/studies", part_type: str = "application/dicom"):  # type: ignore[no-untyped-def]
    body, ctype = multipart_body(parts, content_type=part_type)
    return client.post(path, content=body, headers={"Content-Type": ctype, "Accept": "application/dicom+json"})


def _stored_then(client: httpx.Client, sop: str) -> bytes:
    """A second version of an instance already stored (same UIDs, other bytes): a duplicate."""
    study, series = generate_uid(), generate_uid()
    assert stow(client, [make_instance(study=study, series=series, sop=sop)]).status_code == 200
    return make_instance(study=study, series=series, sop=sop, patient_name="Doe^Janet")


STOW_CASES = {
    # situation: (parts, status, FailureReasons of the FailedSOPSequence, in order)
    "all stored": (lambda c: [make_instance(), make_instance()], 200, []),
    "some stored, one not DICOM": (lambda c: [make_instance(), b"not DICOM" * 40], 202, [0xC000]),
    "some stored, one in an unknown transfer syntax": (
        lambda c: [make_instance(), _edited(TransferSyntaxUID=NOT_A_TRANSFER_SYNTAX)],
        202,
        [0xC122],
    ),
    "none stored: not DICOM": (lambda c: [b"\0" * 300], 400, [0xC000]),
    "none stored: empty part": (lambda c: [b""], 400, [0xC000]),
    "none stored: truncated": (lambda c: [make_instance(rows=64, columns=64)[:-1000]], 400, [0xC000]),
    "none stored: all three": (lambda c: [b"\0" * 300, b"", make_instance()[:-1000]], 400, [0xC000] * 3),
    "none stored: SOP Instance UID missing": (lambda c: [_edited(SOPInstanceUID="")], 409, [0xA900]),
    "none stored: Study Instance UID missing": (lambda c: [_edited(StudyInstanceUID="")], 409, [0xA900]),
    "none stored: a DICOMDIR": (
        lambda c: [_edited(SOPClassUID=NOT_A_STORAGE_CLASS, MediaStorageSOPClassUID=NOT_A_STORAGE_CLASS)],
        409,
        [0x0122],
    ),
    "none stored: a Verification SOP Class": (lambda c: [_edited(SOPClassUID=VERIFICATION)], 409, [0x0122]),
    "none stored: unknown transfer syntax": (
        lambda c: [_edited(TransferSyntaxUID=NOT_A_TRANSFER_SYNTAX)],
        409,
        [0xC122],
    ),
    "none stored: same SOP Instance UID, other bytes": (lambda c: [_stored_then(c, generate_uid())], 409, [0x0111]),
    "none stored: a mixture of reasons": (lambda c: [b"\0" * 300, _edited(SOPInstanceUID="")], 409, [0xC000, 0xA900]),
}


@pytest.mark.parametrize("case", list(STOW_CASES))
def test_stow_status_and_failure_reasons(client: httpx.Client, case: str) -> None:
    build, status, reasons = STOW_CASES[case]
    response = _post(client, build(client))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    assert [reason for reason, _ in _failures(response)] == reasons
    stored = sequence_items(response.json(), "00081199")
    assert len(stored) == (2 if status == 200 else 1 if status == 202 else 0)


def test_stow_a_part_that_is_not_application_dicom_is_cannot_understand(client: httpx.Client) -> None:
    response = _post(client, [make_instance()], part_type="image/jpeg")
    assert response.status_code == 400
    assert [reason for reason, _ in _failures(response)] == [0xC000]


def test_stow_study_instance_uid_mismatch_is_409_a900(client: httpx.Client) -> None:
    response = _post(client, [make_instance()], path=f"/studies/{generate_uid()}")
    assert response.status_code == 409
    assert [reason for reason, _ in _failures(response)] == [0xA900]


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ('multipart/related; type="application/dicom"', 400),  # no boundary: bad syntax
        ('multipart/related; type="application/dicom+json"; boundary=x', 415),
        ("application/json", 415),
    ],
)
def test_stow_requests_refused_as_a_whole(client: httpx.Client, content_type: str, status: int) -> None:
    response = client.post("/studies", content=b"--x--\r\n", headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")  # the error format, nothing stored
