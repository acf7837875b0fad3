"""`POST /transmit` and `GET /transmit/destinations` with a patient's token, to real receivers.

An imaging server of its own (`aperture serve --auth smart`, introspecting at the demo's EHR
sandbox with the demo's own config, so the demo's patient tokens are good here) holds Walter's CT
as the demo stores it, two more studies of Walter's (one with a series the refusing SCP fails) and
one of Priya's. Its destinations: Debian's Orthanc over STOW-RS and over C-STORE, a pynetdicom SCP
failing some instances (A900), and a port nothing listens on.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from pydicom.uid import generate_uid

from aperture.ehr.people import load_directory
from tests.conftest import ApertureServer, free_port, start_command, start_server
from tests.e2e.imaging import instances_of
from tests.helpers import make_instance, stow
from tests.interop.test_orthanc_peer import Orthanc
from tests.interop.test_transmit_orthanc import AET, data_set, orthanc_file, receiver, start_refusing_scp

if TYPE_CHECKING:
    from tests.stack import DemoStack

pytestmark = pytest.mark.interop
__all__ = ["receiver"]  # the Orthanc fixture, shared with test_transmit_orthanc

DIRECTORY = load_directory()
WALTER, PRIYA = DIRECTORY.patients["walter-nguyen"], DIRECTORY.patients["priya-raman"]
CT, PRIYA_MR = WALTER.studies[0].uid, PRIYA.studies[0].uid
# the demo server's own publishing stays there (its destinations are cut off too)
SERVER_ONLY = re.compile(r"^(backend_|publish_after_seconds)")


def walter_study(count: int, refuse: int = 0) -> tuple[str, dict[str, bytes]]:
    """A study of Walter's (his MRN and issuer, so his token reaches it): `count` instances, the last `refuse`
    of them in a series described REFUSE."""
    study = generate_uid()
    files = {}
    for number in range(1, count + 1):
        sop = generate_uid()
        files[sop] = make_instance(
            study=study, sop=sop, patient_id=WALTER.mrn, issuer=DIRECTORY.issuers[WALTER.mrn_system],
            patient_name="Nguyen^Walter", instance_number=number,
            extra={"SeriesDescription": "REFUSE" if number > count - refuse else "Kept"},
        )  # fmt: skip
    return study, files


@pytest.fixture(scope="module")
def studies() -> dict[str, dict[str, bytes]]:
    """{study UID: {SOP Instance UID: Part-10 bytes}} of what the sending server holds."""
    extra, extra_files = walter_study(3)
    refused, refused_files = walter_study(4, refuse=2)
    stored = {CT: {i.sop: i.data for i in instances_of(CT)}, PRIYA_MR: {i.sop: i.data for i in instances_of(PRIYA_MR)}}
    return {**stored, "extra": extra_files, extra: extra_files, "refused": refused_files, refused: refused_files}


@pytest.fixture(scope="module")
def refusing() -> Iterator[int]:
    port, scp = start_refusing_scp()
    yield port
    scp.shutdown()


@pytest.fixture(scope="module")
def sending(
    demo_stack: DemoStack,
    receiver: tuple[Orthanc, int],
    refusing: int,
    studies: dict[str, dict[str, bytes]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApertureServer]:
    """Loaded over STOW-RS without authorization first, then restarted with the demo's SMART config."""
    orthanc, dicom_port = receiver
    data = tmp_path_factory.mktemp("transmit-endpoint") / "data"
    loader = start_server(data, config="[store]\nhtj2k_copies = false\n", log_name="loader.log")
    try:
        with httpx.Client(base_url=loader.dicomweb, timeout=120) as http:
            for uid, files in studies.items():
                if uid[0].isdigit():
                    assert stow(http, files.values()).status_code == 200
    finally:
        loader.stop()
    demo = (demo_stack.data / "imaging.toml").read_text(encoding="utf-8").split("[[transmit.")[0].splitlines()
    destinations = {
        "Orthanc over STOW-RS": f"dicomweb:{orthanc.url}/dicom-web",
        "Orthanc over C-STORE": f"dimse:{AET}@127.0.0.1:{dicom_port}",
        "Refuser": f"dimse:REFUSER@127.0.0.1:{refusing}",
        "Nobody": f"dimse:NOBODY@127.0.0.1:{free_port()}",
    }
    tables = [
        f"[[transmit.destinations]]\nname = {json.dumps(name)}\nto = {json.dumps(to)}"
        for name, to in destinations.items()
    ]
    kept = [line for line in demo if not SERVER_ONLY.match(line)]
    config = "\n".join([*kept, "[store]", "htj2k_copies = false", *tables]) + "\n"
    server = start_command(["serve", "--data", str(data)], data, config=config, config_name="smart.toml")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(demo_stack: DemoStack) -> str:
    return demo_stack.token("sample-viewer", "launch/patient patient/ImagingStudy.rs", patient=WALTER.id)


def post(server: ApertureServer, token: str | None, body: object, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, bytes):
        return httpx.post(f"{server.url}/transmit", content=body, headers={**auth, **headers}, timeout=300)
    return httpx.post(f"{server.url}/transmit", json=body, headers={**auth, **headers}, timeout=300)


def test_the_destinations_are_listed_by_name_and_kind_only(sending: ApertureServer, token: str) -> None:
    answer = httpx.get(f"{sending.url}/transmit/destinations", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {"name": "Orthanc over STOW-RS", "kind": "dicomweb"},
        {"name": "Orthanc over C-STORE", "kind": "dimse"},
        {"name": "Refuser", "kind": "dimse"},
        {"name": "Nobody", "kind": "dimse"},
    ]
    assert "127.0.0.1" not in answer.text and "private" in answer.headers["cache-control"]
    assert httpx.get(f"{sending.url}/transmit/destinations").status_code == 401  # fails closed


def test_a_patient_sends_their_study_over_stow_rs_and_orthanc_holds_the_same_files(
    sending: ApertureServer, token: str, receiver: tuple[Orthanc, int], studies: dict[str, dict[str, bytes]]
) -> None:
    orthanc, _ = receiver
    answer = post(sending, token, {"study": CT, "destination": "Orthanc over STOW-RS"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["complete"] and report["counts"]["sent"] == len(studies[CT]) > 10, report["counts"]
    assert {i["sop_instance"] for i in report["instances"]} == set(studies[CT])
    for sop, data in studies[CT].items():
        assert orthanc_file(orthanc, sop) == data, f"Orthanc's copy of {sop} differs"


def test_a_patient_sends_a_study_over_c_store_and_orthanc_holds_the_same_data_sets(
    sending: ApertureServer, token: str, receiver: tuple[Orthanc, int], studies: dict[str, dict[str, bytes]]
) -> None:
    orthanc, _ = receiver
    files = studies["extra"]
    study = next(uid for uid, held in studies.items() if held is files and uid != "extra")
    answer = post(sending, token, {"study": study, "destination": "Orthanc over C-STORE"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"] == {"sent": 3, "skipped": 0, "refused": 0, "failed": 0}
    for sop, data in files.items():
        received = orthanc_file(orthanc, sop)
        assert received is not None and data_set(received) == data_set(data)


def test_another_patients_study_is_a_404_like_a_missing_one_and_nothing_is_sent(
    sending: ApertureServer, token: str, receiver: tuple[Orthanc, int], studies: dict[str, dict[str, bytes]]
) -> None:
    orthanc, _ = receiver
    theirs = post(sending, token, {"study": PRIYA_MR, "destination": "Orthanc over STOW-RS"})
    made_up = "2.25.9" + PRIYA_MR[6:]
    missing = post(sending, token, {"study": made_up, "destination": "Orthanc over STOW-RS"})
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == {**missing.json(), "message": missing.json()["message"].replace(made_up, PRIYA_MR)}
    assert all(orthanc.lookup(sop, "Instance") is None for sop in studies[PRIYA_MR])
    assert post(sending, None, {"study": CT, "destination": "Orthanc over STOW-RS"}).status_code == 401


@pytest.mark.parametrize(
    ("body", "headers", "said"),
    [
        ({"study": CT, "destination": "Elsewhere"}, {}, "There is no destination 'Elsewhere' on this server"),
        (b"study=1.2.3", {"Content-Type": "application/x-www-form-urlencoded"}, "Send POST application/json"),
        (b"{not json", {"Content-Type": "application/json"}, "The body is not JSON"),
        ({"study": CT}, {}, "exactly study and destination"),
        ({"study": CT, "destination": 3}, {}, "must be strings"),
        ({"study": "not a uid", "destination": "Nobody"}, {}, "is not valid"),
    ],
)
def test_a_wrong_destination_or_body_is_a_400_saying_what_to_send(
    sending: ApertureServer, token: str, body: object, headers: dict[str, str], said: str
) -> None:
    answer = post(sending, token, body, **headers)
    assert answer.status_code == 400, answer.text
    assert said in answer.json()["message"]


def test_an_unreachable_receiver_is_a_502_naming_the_destination_not_its_host(
    sending: ApertureServer, token: str
) -> None:
    answer = post(sending, token, {"study": CT, "destination": "Nobody"})
    assert answer.status_code == 502, answer.text
    message = answer.json()["message"]
    assert message.startswith("Nobody could not be reached, so nothing was sent") and "127.0.0.1" not in message


def test_refused_instances_are_reported_with_the_receivers_status(
    sending: ApertureServer, token: str, studies: dict[str, dict[str, bytes]]
) -> None:
    files = studies["refused"]
    study = next(uid for uid, held in studies.items() if held is files and uid != "refused")
    answer = post(sending, token, {"study": study, "destination": "Refuser"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["counts"] == {"sent": 2, "skipped": 0, "refused": 2, "failed": 0} and not report["complete"]
    refused = [i for i in report["instances"] if i["outcome"] == "refused"]
    assert sorted(i["sop_instance"] for i in refused) == sorted(list(files)[2:])
    assert all(i["status"] == "A900" and i["reason"] for i in refused), refused


def _audited(data: Path) -> dict[str, set[str]]:
    """{outcome code: the studies its read events name} of the AuditEvents in `data`'s index."""
    done = subprocess.run([sys.executable, "-m", "aperture", "audit", "--data", str(data), "--format", "json",
                           "--limit", "1000"], capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    found: dict[str, set[str]] = {}
    for event in json.loads(done.stdout):
        if event.get("action") == "R":
            found.setdefault(event["outcome"], set()).update(
                e["what"]["identifier"]["value"].removeprefix("urn:oid:")
                for e in event.get("entity", [])
                if e.get("what", {}).get("identifier", {}).get("system") == "urn:dicom:uid"
            )
    return found


def test_the_transmit_is_audited_as_a_read_of_the_study(sending: ApertureServer, token: str) -> None:
    """A permitted read of the study sent, a denied one of the study outside the grant (`aperture audit` on the
    sending server's data folder; the recorder writes off the request's path, so it is waited for)."""
    assert post(sending, token, {"study": CT, "destination": "Orthanc over STOW-RS"}).status_code == 200
    assert post(sending, token, {"study": PRIYA_MR, "destination": "Refuser"}).status_code == 404
    deadline = time.monotonic() + 30
    while CT not in (found := _audited(sending.data)).get("0", set()) or PRIYA_MR not in found.get("4", set()):
        assert time.monotonic() < deadline, found
        time.sleep(1)


def _transmits(data: Path) -> list[dict[str, object]]:
    """The permitted read events of `data`'s audit trail that name a destination agent (DCM 110152, not the client)."""
    done = subprocess.run([sys.executable, "-m", "aperture", "audit", "--data", str(data), "--format", "json",
                           "--limit", "1000"], capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    events = [e for e in json.loads(done.stdout) if e.get("action") == "R" and e.get("outcome") == "0"]
    return [e for e in events if any("altId" in a or a.get("who", {}).get("display", "").startswith("Orthanc over")
                                     for a in e["agent"])]  # fmt: skip


def test_each_transmit_is_its_own_audit_event_naming_where_the_study_went(
    sending: ApertureServer, token: str, receiver: tuple[Orthanc, int]
) -> None:
    """A Destination Role agent with the operator's name and the node's address: the STOW-RS base as a URI,
    the C-STORE peer's host as an IP address with its AE title; two sends of one study stay two events."""
    orthanc, _port = receiver
    before = len(_transmits(sending.data))
    for name in ("Orthanc over STOW-RS", "Orthanc over C-STORE", "Orthanc over STOW-RS"):
        assert post(sending, token, {"study": CT, "destination": name}).status_code == 200
    deadline = time.monotonic() + 30
    while len(events := _transmits(sending.data)) < before + 3:
        assert time.monotonic() < deadline, events
        time.sleep(1)
    nodes = []
    for event in events[: len(events) - before]:  # newest first
        assert event.get("extension") is None, event  # not aggregated: each stands for one send
        studies = {e["what"]["identifier"]["value"] for e in event["entity"] if "identifier" in e.get("what", {})}
        assert studies == {f"urn:oid:{CT}"}
        (node,) = [a for a in event["agent"] if a["who"].get("display", "").startswith("Orthanc over")]
        assert node["type"]["coding"][0]["code"] == "110152" and node["requestor"] is False
        nodes.append((node["who"]["display"], node["network"], node.get("altId")))
    stow_node = ("Orthanc over STOW-RS", {"address": f"{orthanc.url}/dicom-web", "type": "5"}, None)
    dimse_node = ("Orthanc over C-STORE", {"address": "127.0.0.1", "type": "2"}, AET)
    assert sorted(nodes, key=str) == sorted([stow_node, dimse_node, stow_node], key=str)
