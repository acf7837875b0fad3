"""A plain SMART EHR (introspection without `authorization_details`): the imaging server binds the token's
patient itself, reading `Patient/{id}` at the EHR with its own Backend Services credentials.

The sandbox runs with `--no-authorization-details` (`[ehr] authorization_details = false`), so its
introspection answers as any SMART EHR with RFC 7662 does: `patient`, scopes, no imaging policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import ECKey

from aperture.ehr.people import load_directory
from tests.conftest import ApertureServer, start_command, start_server
from tests.ehr.conftest import IMAGING_FHIR_BASE, ehr, public_jwks, register, start_sandbox
from tests.helpers import make_instance, multipart_body

MRN = "http://aperture.example.org/fhir/sid/mrn"
ISSUER = "APERTURE-GH"


@dataclass
class Stack:
    sandbox: ApertureServer
    imaging: ApertureServer
    walter_study: str
    maya_study: str
    same_mrn_other_issuer: str

    def token(self, scope: str, patient: str | None = None, user: str | None = None) -> str:
        extra = ["--patient", patient] if patient else []
        extra += ["--user", user] if user else []
        done = ehr("token", "--data", str(self.sandbox.data), "--client-id", "viewer", "--scope", scope, *extra)
        return str(json.loads(done.stdout)["access_token"])


def _config(sandbox: ApertureServer, secret: Path, key: Path, *, backend: bool) -> str:
    lines = [
        "[server]", 'auth = "smart"', "[store]", "htj2k_copies = false", "[auth]",
        f'ehr_issuer = "{sandbox.url}/fhir"', 'client_id = "imaging-server"', f'client_secret_file = "{secret}"',
        f'audience = "{IMAGING_FHIR_BASE}"', "cache_seconds = 5",
    ]  # fmt: skip
    if backend:
        lines += ['backend_client_id = "imaging-reader"', f'backend_private_key_file = "{key}"']
    lines += ["[fhir]", "publish_after_seconds = 0", "[fhir.patient_identifier_systems]", f'"{MRN}" = "{ISSUER}"']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module", params=[True, False], ids=["with-backend-credentials", "without"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("plain-smart")
    sandbox = start_sandbox(root / "ehr", config="[ehr]\nauthorization_details = false\n")
    imaging: ApertureServer | None = None
    try:
        secret = register(root / "ehr", "--kind", "confidential", "--client-id", "imaging-server", "--name", "Imaging",
                          "--introspect")["client_secret"]  # fmt: skip
        (root / "secret").write_text(secret)
        key = ECKey.generate_key("P-384", parameters={"kid": "reader-1"}, private=True)
        (root / "key.json").write_text(json.dumps(key.as_dict(private=True)))
        (root / "jwks.json").write_text(json.dumps(public_jwks(key)))
        patients = sorted(load_directory().patients)
        register(root / "ehr", "--kind", "backend", "--client-id", "imaging-reader", "--name", "Imaging reader",
                 "--scope", "system/Patient.r", "--jwks", str(root / "jwks.json"), "--patients", *patients)  # fmt: skip
        register(root / "ehr", "--kind", "public", "--client-id", "viewer", "--name", "Viewer",
                 "--redirect-uri", "http://127.0.0.1:1/cb", "--scope",
                 "launch/patient patient/ImagingStudy.rs user/ImagingStudy.rs")  # fmt: skip
        studies = {"walter": "2.25.9001", "maya": "2.25.9002", "other": "2.25.9003"}
        files = [
            make_instance(study=studies["walter"], patient_id="AGH-100377", issuer=ISSUER),
            make_instance(study=studies["maya"], patient_id="AGH-100234", issuer=ISSUER),
            make_instance(study=studies["other"], patient_id="AGH-100377", issuer="ANOTHER-HOSPITAL"),
        ]
        loader = start_server(root / "data")
        body, content_type = multipart_body(files)
        assert httpx.post(f"{loader.dicomweb}/studies", content=body, headers={"Content-Type": content_type}).is_success
        loader.stop()
        config = _config(sandbox, root / "secret", root / "key.json", backend=request.param)
        imaging = start_command(["serve", "--data", str(root / "data")], root / "data", config=config)
        yield Stack(sandbox, imaging, studies["walter"], studies["maya"], studies["other"])
    finally:
        if imaging is not None:
            imaging.stop()
        sandbox.stop()


def _studies(stack: Stack, token: str) -> set[str]:
    answer = httpx.get(f"{stack.imaging.dicomweb}/studies", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code in (200, 204), answer.text
    return {s["0020000D"]["Value"][0] for s in (answer.json() if answer.content else [])}


def test_the_sandbox_answers_as_a_plain_smart_ehr(stack: Stack) -> None:
    token = stack.token("launch/patient patient/ImagingStudy.rs", patient="walter-nguyen")
    answer = httpx.post(f"{stack.sandbox.url}/auth/introspect", data={"token": token},
                        auth=("imaging-server", (stack.imaging.data.parent / "secret").read_text())).json()  # fmt: skip
    assert answer["active"] is True and answer["patient"] == "walter-nguyen"
    assert "authorization_details" not in answer


def test_a_patient_token_reaches_its_patients_studies_by_mrn_and_issuer(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    token = stack.token("launch/patient patient/ImagingStudy.rs", patient="walter-nguyen")
    with_backend = "with-backend-credentials" in request.node.callspec.id
    # with its own credentials the server reads Patient/walter-nguyen (MRN AGH-100377 of APERTURE-GH);
    # without, it cannot bind the patient and serves nothing (never a guess from the logical id)
    assert _studies(stack, token) == ({stack.walter_study} if with_backend else set())
    metadata = httpx.get(f"{stack.imaging.dicomweb}/studies/{stack.same_mrn_other_issuer}/metadata",
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert metadata.status_code == 404  # the same MRN value under another issuer is another person
    fhir = httpx.get(f"{stack.imaging.url}/fhir/ImagingStudy", params={"patient": "maya-alvarez"},
                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert fhir.status_code == 403


def test_user_and_system_grants_reach_nothing_without_the_ehrs_policy(stack: Stack) -> None:
    clinician = stack.token("user/ImagingStudy.rs", user="Practitioner/dr-chen")
    assert _studies(stack, clinician) == set()
