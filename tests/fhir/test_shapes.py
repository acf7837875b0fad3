"""Shapes the newest SMART Imaging IG build shows that stored data rarely produces: built and valid.

A study row the index keeps without any instance is the IG's metadata-only shape (`registered`, no
series, no endpoint); the resource builder is called directly with such a row.
"""

from __future__ import annotations

from aperture.config import FhirConfig
from aperture.fhir.imagingstudy import imaging_study
from aperture.fhir.patients import DicomPatient
from aperture.store.index import StudySummary
from tests.fhir import r4


def test_a_study_without_instances_is_registered_with_no_series_and_no_endpoint() -> None:
    row = StudySummary(1, "1.2.3.4", "PAT-1", "HOSP", "20240105", "101500", "", "", ("MR",), 0, 0, 1_700_000_000)
    config = FhirConfig(ehr_base="https://ehr.example.org/fhir", patient_identifier_systems={"http://h/mrn": "HOSP"})
    study = imaging_study(row, [], asked=DicomPatient("PAT-1", "HOSP", "p1"), config=config, endpoint_reference="x")
    r4.imaging_study(study)
    assert study["status"] == "registered"
    assert "series" not in study and "endpoint" not in study and "numberOfInstances" not in study
    assert study["subject"] == {
        "type": "Patient",
        "reference": "https://ehr.example.org/fhir/Patient/p1",
        "identifier": {"system": "http://h/mrn", "value": "PAT-1"},
    }
    assert study["meta"]["lastUpdated"] == "2023-11-14T22:13:20Z"
