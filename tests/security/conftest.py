"""Fixtures of the attack suite: the session's demo stack, the studies attacked and the tokens attacking them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.security.attacks import Target, learn
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
