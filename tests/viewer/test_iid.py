"""IHE Invoke Image Display: the parameters, parsed, checked, refused in words, handed on in a fixed form."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest

from aperture.errors import InvalidRequest
from aperture.viewer.iid import MAX_STUDIES, DisplayRequest, PatientIdentifier, parse, patient_identifier

SYSTEMS = {"http://aperture.example.org/fhir/sid/mrn": "APERTURE-GH", "http://other.example.org/mrn": "OTHER"}
UID_A, UID_B = "2.25.1001", "2.25.1002"


def ask(query: str) -> DisplayRequest:
    return parse(parse_qs(query, keep_blank_values=True), SYSTEMS)


@pytest.mark.parametrize(
    "query",
    [
        f"requestType=STUDY&studyUID={UID_A},{UID_B}",
        f"requestType=STUDY&studyUID={UID_A};{UID_B}",  # OHIF's separator
        f"requestType=STUDY&studyUID={UID_A}&studyUID={UID_B}",  # Weasis repeats the parameter
        f"requestType=study&studyUID={UID_A},,{UID_B}&viewerType=IHE_BIR&unknownParameter=ignored",
    ],
)
def test_a_study_request_names_its_studies_however_they_are_listed(query: str) -> None:
    request = ask(query)
    assert request.kind == "STUDY" and request.study_uids == (UID_A, UID_B) and request.accession_numbers == ()
    assert request.diagnostic_quality is True  # the default: the stored pixels


def test_accession_numbers_by_study_request_and_by_the_accession_alias() -> None:
    assert ask("requestType=STUDY&accessionNumber=AGH-A-7001").accession_numbers == ("AGH-A-7001",)
    alias = ask("requestType=ACCESSION&accessionNumber=AGH-A-7001,AGH-A-7002")
    assert alias.kind == "STUDY" and alias.accession_numbers == ("AGH-A-7001", "AGH-A-7002")


def test_a_patient_request_is_the_patients_identifier_with_its_issuer_and_the_filters() -> None:
    request = ask(
        "requestType=PATIENT&patientID=AGH-100234%5E%5E%5EAPERTURE-GH&lowerDateTime=2026-01-01T00:00:00Z"
        "&upperDateTime=2026-12-31T23:59:59%2B01:00&mostRecentResults=2&modalitiesInStudy=ct,MR"
        "&patientName=Ignored&diagnosticQuality=FALSE&keyImagesOnly=false"
    )
    assert request.patient == PatientIdentifier("http://aperture.example.org/fhir/sid/mrn", "AGH-100234")
    assert request.lower == datetime(2026, 1, 1, tzinfo=UTC)
    assert request.upper == datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC)  # normalised to UTC
    assert request.most_recent == 2 and request.modalities == ("CT", "MR") and request.diagnostic_quality is False


@pytest.mark.parametrize(
    ("cx", "system"),
    [
        ("12345^^^&1.2.3.4&ISO", "urn:oid:1.2.3.4"),
        ("12345^^^HOSP&1.2.3.4&iso", "urn:oid:1.2.3.4"),  # the universal id wins over the namespace
        ("12345^^^&http://h.example.org/mrn&URI", "http://h.example.org/mrn"),
        ("12345^^^OTHER", "http://other.example.org/mrn"),
    ],
)
def test_a_cx_patient_id_becomes_a_fhir_identifier(cx: str, system: str) -> None:
    assert patient_identifier(cx, SYSTEMS) == PatientIdentifier(system, "12345")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("", "requestType must be STUDY, PATIENT or ACCESSION; it is missing"),
        ("requestType=SERIES&studyUID=2.25.1", "not 'SERIES'"),
        ("requestType=STUDY&requestType=PATIENT&studyUID=2.25.1", "requestType is given 2 times"),
        ("requestType=STUDY", "exactly one of studyUID and accessionNumber"),
        ("requestType=STUDY&studyUID=2.25.1&accessionNumber=A1", "exactly one of studyUID and accessionNumber"),
        ("requestType=ACCESSION&studyUID=2.25.1", "by accessionNumber, not studyUID"),
        ("requestType=STUDY&studyUID=../../etc/passwd", "is not a UID"),
        ("requestType=STUDY&accessionNumber=" + "A" * 17, "longer than an accession number"),
        ("requestType=STUDY&studyUID=" + ",".join(f"2.25.{n}" for n in range(MAX_STUDIES + 1)), "at most 50"),
        ("requestType=PATIENT", "needs patientID"),
        ("requestType=PATIENT&patientID=AGH-100234", "names no issuer"),
        ("requestType=PATIENT&patientID=AGH-100234%5E%5E%5ENOWHERE", "no patient identifier system for the issuer"),
        ("requestType=PATIENT&patientID=%5E%5E%5EAPERTURE-GH", "no identifier before its first"),
        ("requestType=PATIENT&patientID=1%5E%5E%5E%261.2%26DNS", "universal id type must be one of"),
        ("requestType=PATIENT&patientID=1%5E%5E%5EOTHER&studyUID=2.25.1", "not studyUID or accessionNumber"),
        ("requestType=PATIENT&patientID=1%5E%5E%5EOTHER&mostRecentResults=0", "whole number from 1"),
        ("requestType=PATIENT&patientID=1%5E%5E%5EOTHER&modalitiesInStudy=C T", "not a modality code"),
        ("requestType=PATIENT&patientID=1%5E%5E%5EOTHER&lowerDateTime=yesterday", "a date and time such as"),
        (
            "requestType=PATIENT&patientID=1%5E%5E%5EOTHER&lowerDateTime=2026-02-01&upperDateTime=2026-01-01",
            "lowerDateTime is after upperDateTime",
        ),
        ("requestType=STUDY&studyUID=2.25.1&viewerType=WEASIS", "viewerType 'WEASIS' is not available here"),
        ("requestType=STUDY&studyUID=2.25.1&keyImagesOnly=true", "keyImagesOnly=true is not available here"),
        ("requestType=STUDY&studyUID=2.25.1&keyImagesOnly=yes", "keyImagesOnly must be true or false"),
        ("requestType=STUDY&studyUID=2.25.1&diagnosticQuality=1", "diagnosticQuality must be true or false"),
    ],
)
def test_what_cannot_be_shown_is_refused_saying_why(query: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        ask(query)
    assert words in refused.value.message


def test_the_app_gets_checked_values_only_in_a_fixed_form() -> None:
    study = ask("requestType=ACCESSION&accessionNumber=A1;A2&viewerType=IHE_BIR&x=<script>&studyUID=")
    assert study.app_query() == "requestType=STUDY&accessionNumber=A1%2CA2&diagnosticQuality=true"
    patient = ask(
        "requestType=PATIENT&patientID=AGH-1%5E%5E%5EAPERTURE-GH&lowerDateTime=2026-01-01&mostRecentResults=3"
    )
    assert parse_qs(patient.app_query()) == {
        "requestType": ["PATIENT"],
        "patientSystem": ["http://aperture.example.org/fhir/sid/mrn"],
        "patientValue": ["AGH-1"],
        "lowerDateTime": ["2026-01-01T00:00:00+00:00"],
        "mostRecentResults": ["3"],
        "diagnosticQuality": ["true"],
    }
