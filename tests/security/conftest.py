"""Fixtures of the attack suite: the session's demo stack, the studies attacked and the tokens attacking them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from aperture.dicom.synthetic import patient_study
from tests.conftest import ApertureServer
from tests.security.attacks import Target, learn
from tests.security.servers import introspecting_client, load, seed_files, start_imaging, target_of
from tests.stack import DemoStack

VIEWER = "sample-viewer"  # the demo's public app (patient/ and user/ ImagingStudy.rs)
WALTER_STUDY = "2.25.268441305134709541612117823451873091521"
MAYA_WITHHELD = "2.25.268441305134709541612117823451873091502"  # withheld from Elena's proxy access
PRIYA_CONSENT = "2.25.268441305134709541612117823451873091531"  # patient_only: Priya's own eyes only


def patient_token(stack: DemoStack, patient: str, scope: str = "launch/patient patient/ImagingStudy.rs") -> str:
    return stack.token(VIEWER, scope, patient=patient, user=f"Patient/{patient}")


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def root(demo_stack: DemoStack) -> str:
    return demo_stack.dicomweb.removesuffix("/dicom-web")


@pytest.fixture(scope="session")
def walter(demo_stack: DemoStack, http: httpx.Client) -> Target:
    """Walter's CT, learned from his own metadata: the study every cross-patient attack aims at."""
    return learn(http, demo_stack.dicomweb, patient_token(demo_stack, "walter-nguyen"), WALTER_STUDY, "walter-nguyen")


@pytest.fixture(scope="session")
def maya_withheld(demo_stack: DemoStack, http: httpx.Client) -> Target:
    """Maya's pelvic ultrasound (withheld from her mother's proxy access), as Maya herself reads it."""
    return learn(
        http,
        demo_stack.dicomweb,
        patient_token(demo_stack, "maya-alvarez"),
        MAYA_WITHHELD,
        "maya-alvarez",
        withheld=True,
    )


@pytest.fixture(scope="session")
def priya_consent(demo_stack: DemoStack, http: httpx.Client) -> Target:
    """Priya's brain MR, restricted by her consent to herself, as Priya reads it."""
    return learn(
        http, demo_stack.dicomweb, patient_token(demo_stack, "priya-raman"), PRIYA_CONSENT, "priya-raman", withheld=True
    )


@pytest.fixture
def maya_token(demo_stack: DemoStack) -> str:
    return patient_token(demo_stack, "maya-alvarez")


IMPOSTOR_ISSUER = "OTHER-HOSPITAL"  # an issuer the imaging server maps to no EHR identifier system
WRITER = "attack-writer"  # a public app that may be granted every ImagingStudy permission


@dataclass
class OwnStore:
    """An imaging server of the suite's own (`--auth smart` at the demo's EHR, deleting enabled), so
    that write and delete attacks cannot disturb the demo every other test reads."""

    server: ApertureServer
    impostor: Target  # PatientID = Maya's MRN value, under another issuer: another person

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def own_store(tmp_path_factory: pytest.TempPathFactory, demo_stack: DemoStack) -> Iterator[OwnStore]:
    """Maya's, Walter's and an impostor's studies, loaded with `--auth none`, then served with `--auth smart`.

    The imaging server is registered at the demo's EHR as a second introspecting client; its
    audience is the demo imaging server's, so the demo EHR's tokens are for it.
    """
    folder = tmp_path_factory.mktemp("own-store")
    impostor_files = list(
        patient_study(
            study_uid="2.25.9" + "7" * 30 + "1", accession="OTH-A-1", modality="CT", description="CT impostor abdomen",
            study_date="20260301", patient_id="AGH-100234", issuer=IMPOSTOR_ISSUER, patient_name="Quist^Isabella",
            images=3, rows=128, cols=128,
        )
    )  # fmt: skip
    load(folder / "data", seed_files("maya-alvarez", "walter-nguyen") + impostor_files)
    secret = introspecting_client(demo_stack, folder, "attack-imaging")
    server = start_imaging(
        folder / "data", ehr_issuer=demo_stack.ehr_fhir, client_id="attack-imaging", secret_file=secret,
        audience=demo_stack.imaging_fhir, associated=(demo_stack.dicomweb,),
    )  # fmt: skip
    demo_stack.register(
        kind="public", name="attack writer", client_id=WRITER, redirect_uris=("http://127.0.0.1:65500/cb",),
        scope="launch/patient patient/ImagingStudy.cruds user/ImagingStudy.cruds",
    )  # fmt: skip
    try:
        impostor = target_of(impostor_files, "maya-alvarez")
        impostor.mrn_secret = False  # Maya's own MRN value: the issuer (in `extra`) is what tells them apart
        yield OwnStore(server, impostor)
    finally:
        server.stop()
