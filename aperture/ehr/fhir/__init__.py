"""The sandbox's clinical FHIR R4 server: Patient, RelatedPerson, Practitioner, ServiceRequest,
DiagnosticReport, the EHR's ImagingStudy index, and the chart an app reads on start-up (AllergyIntolerance,
Condition, MedicationRequest, Observation, Encounter, DocumentReference, Procedure), read and searched
under the token's scopes.

    resources.py   the seed people and studies as FHIR resources (MRN, accession, urn:oid: UIDs, Endpoint)
    clinical.py    the seed's chart, and each study's Procedure and report document
    records.py     those resources in the sandbox's SQLite file, with a search index
    params.py      the search parameters of each type; dates.py and query.py parse searches
    access.py      what a token reaches: scopes -> types, context -> patients, policy -> hidden studies
    routes.py      the HTTP routes; outcomes.py its answers; capability.py the CapabilityStatement

`load` brings the stored record in line with the seed at start-up; `ROUTES` are mounted by the app.
"""

from __future__ import annotations

from sqlalchemy import Engine

from aperture.ehr.config import EhrConfig
from aperture.ehr.fhir.clinical import chart_records, check_ties
from aperture.ehr.fhir.records import load_record
from aperture.ehr.fhir.resources import seed_records
from aperture.ehr.fhir.routes import ROUTES
from aperture.ehr.people import Directory

__all__ = ["ROUTES", "load"]


def load(engine: Engine, directory: Directory, config: EhrConfig) -> None:
    """Store the seed's clinical record (the endpoints from `config`), keeping unchanged resources' dates."""
    record = [*seed_records(directory, config.wado_rs_base), *chart_records(directory)]
    check_ties(record)
    load_record(engine, record)
