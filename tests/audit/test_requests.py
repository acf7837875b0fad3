"""Requests become audit events: the route wrapper records each decided request with the study it named."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.conftest import ApertureServer
from tests.helpers import make_instance, multipart_body


def _trail(server: ApertureServer) -> list[dict[str, object]]:
    server.stop()  # a clean shutdown writes everything queued
    done = subprocess.run(
        [sys.executable, "-m", "aperture", "audit", "--data", str(server.data), "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    answer = json.loads(done.stdout)
    return answer if isinstance(answer, list) else [e["resource"] for e in answer["entry"]]


def test_wado_uri_fhir_read_and_stow_are_audited_with_their_study(fresh_server: ApertureServer) -> None:
    study, series, sop = (
        "1.2.826.0.1.3680043.8.498.4401",
        "1.2.826.0.1.3680043.8.498.4401.1",
        "1.2.826.0.1.3680043.8.498.4401.1.1",
    )
    body, content_type = multipart_body([make_instance(study=study, series=series, sop=sop)])
    with httpx.Client(base_url=fresh_server.url, timeout=30) as http:
        stored = http.post("/dicom-web/studies", content=body, headers={"Content-Type": content_type})
        assert stored.status_code == 200, stored.text
        wado = http.get("/wado", params={"requestType": "WADO", "studyUID": study, "seriesUID": series,
                                         "objectUID": sop, "contentType": "application/dicom"})  # fmt: skip
        assert wado.status_code == 200
        assert http.get(f"/fhir/ImagingStudy/{study}").status_code == 200
        assert http.get("/fhir/Endpoint/dicom-wado-rs").status_code == 200
        assert http.get("/dicom-web/studies/1.2.3.404/metadata").status_code == 404
    events = _trail(fresh_server)
    by_action: dict[str, list[list[str]]] = {}
    for event in events:
        studies = [
            e["what"]["identifier"]["value"]
            for e in event.get("entity", [])  # type: ignore[attr-defined]
            if e.get("what", {}).get("identifier", {}).get("system") == "urn:dicom:uid"
        ]
        by_action.setdefault(f"{event['action']} {event['outcome']}", []).append(studies)
    assert [f"urn:oid:{study}"] in by_action["C 0"]  # STOW-RS
    reads = by_action["R 0"]
    assert reads.count([f"urn:oid:{study}"]) >= 1  # WADO-URI and the FHIR read, aggregated or not
    assert [] in reads  # the Endpoint read names no study
    assert ["urn:oid:1.2.3.404"] in by_action["R 4"]  # the 404 is a deny of its own
