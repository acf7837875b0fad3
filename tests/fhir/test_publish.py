"""The imaging server publishes each stable study's ImagingStudy to the EHR (issue 14), end to end.

A real sandbox (`aperture ehr serve`) and a real `aperture serve --auth none` configured to publish
one second after a study's last change, with its own Backend Services registration at the
sandbox. Studies are stored over STOW-RS for a seed patient (PatientID = the MRN value,
IssuerOfPatientID = the issuer its identifier system maps to), and the sandbox's ImagingStudy search,
with that patient's own token, is polled (bounded) until the study is there with our Endpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from joserfc.jwk import RSAKey
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, text

from aperture.config import load_config
from aperture.fhir.publish import publishing_enabled
from tests.conftest import ApertureServer, free_port, start_server
from tests.ehr.conftest import ehr, public_jwks, register, start_sandbox
from tests.helpers import make_instance, stow

MRN_SYSTEM = "http://aperture.example.org/fhir/sid/mrn"
OTHER_SYSTEM = "http://other-hospital.example.org/mrn"
WALTER = ("walter-nguyen", "AGH-100377")
PRIYA = ("priya-raman", "AGH-100412")
T = TypeVar("T")


@dataclass
class Pair:
    sandbox: ApertureServer
    imaging: ApertureServer
    config: str


def _config(sandbox: ApertureServer, key_file: Path) -> str:
    return f"""
[store]
htj2k_copies = false
[auth]
ehr_issuer = "{sandbox.url}/fhir"
backend_client_id = "imaging-publisher"
backend_private_key_file = "{key_file}"
[fhir]
publish_after_seconds = 1
[fhir.patient_identifier_systems]
"{MRN_SYSTEM}" = "APERTURE-GH"
"{OTHER_SYSTEM}" = "OTHER-HOSP"
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("publish")
    key = RSAKey.generate_key(2048, parameters={"kid": "publisher-1"})
    (root / "public.json").write_text(json.dumps(public_jwks(key)))
    (root / "private.json").write_text(json.dumps(key.as_dict(private=True)))
    ehr_data = root / "ehr"
    register(ehr_data, "--kind", "backend", "--name", "Imaging publisher", "--client-id", "imaging-publisher",
             "--scope", "system/ImagingStudy.cu", "--jwks", str(root / "public.json"))  # fmt: skip
    register(ehr_data, "--kind", "public", "--name", "Viewer", "--client-id", "viewer", "--scope",
             "patient/ImagingStudy.rs", "--redirect-uri", "http://127.0.0.1:3000/callback")  # fmt: skip
    sandbox = start_sandbox(ehr_data)
    config = _config(sandbox, root / "private.json")
    imaging = start_server(root / "imaging", config=config)
    pair = Pair(sandbox, imaging, config)
    yield pair
    pair.imaging.stop()  # a test restarts it: stop the one running now, not the first
    sandbox.stop()


def eventually(probe: Callable[[], T | None], what: str, seconds: float = 30) -> T:
    """`probe()` once it is not None, asked every 0.2 s for at most `seconds` (then the test fails)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds}s: {what}")


def patient_studies(sandbox: ApertureServer, patient: str) -> dict[str, dict[str, Any]]:
    args = ["token", "--data", str(sandbox.data), "--client-id", "viewer", "--scope", "patient/ImagingStudy.rs",
            "--patient", patient]  # fmt: skip
    token = json.loads(ehr(*args).stdout)["access_token"]
    response = httpx.get(f"{sandbox.url}/fhir/ImagingStudy", params={"patient": patient},
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status_code == 200, response.text
    found = {}
    for entry in response.json().get("entry", []):
        uid = next(i["value"] for i in entry["resource"]["identifier"] if i["system"] == "urn:dicom:uid")
        assert uid.removeprefix("urn:oid:") not in found, "one ImagingStudy per study"
        found[uid.removeprefix("urn:oid:")] = entry["resource"]
    return found


def reconciliation(sandbox: ApertureServer) -> dict[str, dict[str, Any]]:
    listing = json.loads(ehr("reconcile", "list", "--data", str(sandbox.data)).stdout)
    return {item["study_instance_uid"]: item for item in listing}


def store(imaging: ApertureServer, study: str, patient_id: str, issuer: str, number: int = 1) -> None:
    with httpx.Client(base_url=imaging.dicomweb, timeout=60) as client:
        instance = make_instance(study=study, patient_id=patient_id, issuer=issuer, modality="CT",
                                 instance_number=number, accession=f"ACC-{study[-6:]}")  # fmt: skip
        assert stow(client, [instance]).status_code == 200


def publish_puts(sandbox: ApertureServer) -> int:
    return sandbox.log.read_text().count("PUT /fhir/ImagingStudy")


def test_a_stored_study_appears_in_the_ehrs_search_with_our_endpoint(pair: Pair) -> None:
    patient, mrn = WALTER
    uid = generate_uid()
    store(pair.imaging, uid, mrn, "APERTURE-GH")
    published = eventually(lambda: patient_studies(pair.sandbox, patient).get(uid), "the study in the EHR's search")
    assert published["subject"]["identifier"] == {"system": MRN_SYSTEM, "value": mrn}
    assert published["subject"]["reference"] == f"Patient/{patient}"
    endpoint = next(c for c in published["contained"] if c["resourceType"] == "Endpoint")
    assert published["endpoint"] == [{"reference": f"#{endpoint['id']}"}]
    assert endpoint["address"] == pair.imaging.dicomweb
    assert published["numberOfInstances"] == 1

    # the same study changes again: once stable, it is published again (an update, not a second study)
    store(pair.imaging, uid, mrn, "APERTURE-GH", number=2)
    again = eventually(
        lambda: (s := patient_studies(pair.sandbox, patient).get(uid)) and s["numberOfInstances"] == 2 and s or None,
        "the changed study republished",
    )
    assert again["numberOfSeries"] == 2 and len(again["series"]) == 2
    assert len(patient_studies(pair.sandbox, patient)) == 2, "a seeded study and this one, not a second copy"


def test_an_unknown_mrn_is_listed_for_reconciliation_and_not_retried(pair: Pair) -> None:
    uid = generate_uid()
    store(pair.imaging, uid, "AGH-555555", "APERTURE-GH")
    queued = eventually(lambda: reconciliation(pair.sandbox).get(uid), "the study in aperture ehr reconcile list")
    assert queued["subject_identifier"] == {"system": MRN_SYSTEM, "value": "AGH-555555"}
    assert queued["client_id"] == "imaging-publisher"
    # a later study is published after it, and the unmatched one was not sent again meanwhile
    later = generate_uid()
    store(pair.imaging, later, PRIYA[1], "APERTURE-GH")
    eventually(lambda: patient_studies(pair.sandbox, PRIYA[0]).get(later), "a later study published")
    assert reconciliation(pair.sandbox)[uid]["times"] == 1


def test_the_same_mrn_value_under_another_issuer_does_not_attach_to_the_seed_patient(pair: Pair) -> None:
    patient, mrn = WALTER
    uid = generate_uid()
    store(pair.imaging, uid, mrn, "OTHER-HOSP")
    queued = eventually(lambda: reconciliation(pair.sandbox).get(uid), "the other issuer's study queued")
    assert queued["subject_identifier"] == {"system": OTHER_SYSTEM, "value": mrn}
    assert uid not in patient_studies(pair.sandbox, patient)


def test_an_issuer_without_an_identifier_system_is_not_sent(pair: Pair) -> None:
    """The index notes why; the EHR never sees a bare PatientID."""
    uid = generate_uid()
    before = publish_puts(pair.sandbox)
    store(pair.imaging, uid, WALTER[1], "UNMAPPED-ISSUER")
    url = f"sqlite:///{pair.imaging.data / 'index.sqlite3'}"
    engine = create_engine(url)
    try:

        def note() -> str | None:
            with engine.connect() as conn:
                return conn.execute(
                    text("SELECT published_note FROM studies WHERE study_uid = :uid"), {"uid": uid}
                ).scalar()

        assert "has no identifier system" in eventually(note, "the study noted as not publishable")
    finally:
        engine.dispose()
    assert publish_puts(pair.sandbox) == before


def test_a_restart_does_not_publish_again_what_the_ehr_has(pair: Pair, tmp_path: Path) -> None:
    uid = generate_uid()
    store(pair.imaging, uid, WALTER[1], "APERTURE-GH")
    eventually(lambda: patient_studies(pair.sandbox, WALTER[0]).get(uid), "the study published")
    pair.imaging.stop()
    sent = publish_puts(pair.sandbox)
    pair.imaging = start_server(pair.imaging.data, config=pair.config)
    after = generate_uid()
    store(pair.imaging, after, WALTER[1], "APERTURE-GH")
    eventually(lambda: patient_studies(pair.sandbox, WALTER[0]).get(after), "a new study published after restart")
    eventually(lambda: publish_puts(pair.sandbox) > sent or None, "its PUT in the sandbox's access log")
    assert publish_puts(pair.sandbox) == sent + 1, "only the new study was sent; the published ones were not"


def test_a_refused_token_is_retried_until_the_registration_exists(pair: Pair, tmp_path: Path) -> None:
    """The EHR refuses our client (not registered yet): logged, retried with backoff, published once it is."""
    key = RSAKey.generate_key(2048, parameters={"kid": "late-1"})
    (tmp_path / "late.json").write_text(json.dumps(key.as_dict(private=True)))
    config = pair.config.replace('"imaging-publisher"', '"late-publisher"').replace(
        str(pair.imaging.data.parent / "private.json"), str(tmp_path / "late.json")
    )
    assert "late-publisher" in config and "late.json" in config
    server = start_server(tmp_path / "imaging", config=config)
    try:
        uid = generate_uid()
        store(server, uid, PRIYA[1], "APERTURE-GH")
        eventually(lambda: "refused Backend Services client 'late-publisher'" in server.log.read_text() or None,
                   "the refusal logged")  # fmt: skip
        assert uid not in patient_studies(pair.sandbox, PRIYA[0])
        (tmp_path / "late-public.json").write_text(json.dumps(public_jwks(key)))
        register(pair.sandbox.data, "--kind", "backend", "--name", "late", "--client-id", "late-publisher",
                 "--scope", "system/ImagingStudy.cu", "--jwks", str(tmp_path / "late-public.json"))  # fmt: skip
        eventually(lambda: patient_studies(pair.sandbox, PRIYA[0]).get(uid), "published after the registration")
        assert "publishing paused for" in server.log.read_text()
    finally:
        server.stop()


def test_an_unreadable_backend_key_stops_the_server_before_it_starts(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[auth]\nehr_issuer = "http://127.0.0.1:1/fhir"\nbackend_client_id = "x"\n'
                      f'backend_private_key_file = "{tmp_path / "missing.json"}"\n')  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "aperture", "serve", "--auth", "none", "--data", str(tmp_path / "d"), "--config",
         str(config), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "'auth.backend_private_key_file'" in result.stderr and "missing.json" in result.stderr


def test_publishing_is_off_without_backend_credentials_or_with_zero_seconds(tmp_path: Path) -> None:
    config = tmp_path / "a.toml"
    config.write_text('[auth]\nehr_issuer = "http://ehr.test/fhir"\n[fhir]\npublish_after_seconds = 5\n')
    assert not publishing_enabled(load_config(config))
    config.write_text(
        '[auth]\nehr_issuer = "http://ehr.test/fhir"\nbackend_client_id = "x"\n[fhir]\npublish_after_seconds = 0\n'
    )
    assert not publishing_enabled(load_config(config))
    config.write_text('[auth]\nehr_issuer = "http://ehr.test/fhir"\nbackend_client_id = "x"\n')
    assert publishing_enabled(load_config(config)), "on by default (30 s) once credentials are configured"


def test_several_workers_publish_each_study_once(tmp_path: Path, pair: Pair) -> None:
    """Only the worker holding the data folder's lock publishes; the others would send every study again."""
    data = tmp_path / "imaging"
    server = start_server(data, config=pair.config.replace("[store]", "[server]\nworkers = 2\n[store]"))
    try:
        before = publish_puts(pair.sandbox)
        uids = [generate_uid() for _ in range(3)]
        for uid in uids:
            store(server, uid, PRIYA[1], "APERTURE-GH")
        eventually(
            lambda: all(uid in patient_studies(pair.sandbox, PRIYA[0]) for uid in uids) or None, "all three published"
        )
        eventually(lambda: publish_puts(pair.sandbox) >= before + 3 or None, "three PUTs in the sandbox's log")
        assert publish_puts(pair.sandbox) == before + 3
        assert server.log.read_text().count("publishing stable studies to") == 1
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0007_adds_the_publication_columns_and_downgrades(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import inspect

    from aperture.store.engine import open_engine

    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    if backend == "postgresql":
        url = str(
            request.getfixturevalue("postgres").create_database(f"publish_{generate_uid()[-10:].replace('.', '')}")
        )
    engine = open_engine(url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("studies")}
        assert {"published_updated", "published_note"} <= columns
        with engine.begin() as conn:
            alembic = AlembicConfig()
            alembic.set_main_option("script_location", str(Path(__file__).parents[2] / "aperture/store/migrations"))
            alembic.attributes["connection"] = conn
            command.downgrade(alembic, "0006")
        assert not {"published_updated", "published_note"} & {c["name"] for c in inspect(engine).get_columns("studies")}
    finally:
        engine.dispose()
