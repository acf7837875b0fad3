"""The /fhir routes: ImagingStudy search and read, Endpoint read, metadata, SMART discovery.

Each handler that reads the index first asks `authorize(request, READ_IMAGING)` and passes the
AccessScope to the index, which filters in SQL: a study outside the scope is simply not found.
Every error under /fhir, unknown paths included, is an OperationOutcome (`fhir_errors`).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from aperture.audit.search import search_bundle
from aperture.auth import policy
from aperture.auth.requirements import (
    AUDIT_PATIENT,
    AUDIT_STUDY,
    READ_AUDIT,
    READ_IMAGING,
    audits,
    authorize,
    decide,
    reads,
    searches,
)
from aperture.config import Config
from aperture.dicom.identifiers import PatientKey, uid_problem
from aperture.dicomweb.state import index_of
from aperture.dicomweb.threads import off_loop
from aperture.errors import MethodNotAllowed, NotFound
from aperture.fhir.bundle import searchset
from aperture.fhir.capability import capability_statement
from aperture.fhir.imagingstudy import ENDPOINT_ID, imaging_study, wado_endpoint
from aperture.fhir.outcomes import FhirResponse, fhir_errors
from aperture.fhir.patients import DicomPatient
from aperture.fhir.search import parse_search
from aperture.fhir.urls import fhir_base, wado_base


@fhir_errors
async def search_studies(request: Request) -> Response:
    decision = await decide(request, READ_IMAGING)  # first: the patient binding is the token's
    search = parse_search(request)
    scope = decision.scope
    if search.patient.ehr_id is not None:
        request.scope[AUDIT_PATIENT] = search.patient.ehr_id
    if decision.bound and search.patient.ehr_id is not None:
        scope = policy.narrowed(decision, search.patient.ehr_id) or policy.reaches_nothing()
    index = index_of(request)
    config: Config = request.app.state.config
    rows, total = await off_loop(
        index.study_summaries,
        scope,
        patient_id=search.patient.patient_id,
        issuer=search.patient.issuer,
        study_uid=search.study_uid,
        updated_from=search.updated_from,
        updated_before=search.updated_before,
        after_pk=search.after_pk,
        limit=search.count + 1,  # one more than the page says whether a next page exists
    )
    page = rows[: search.count]
    contents = await off_loop(index.series_summaries, scope, [s.pk for s in page])
    base = fhir_base(request)
    endpoint_ref = f"{base}/Endpoint/{ENDPOINT_ID}"
    resources = [
        (s.pk, imaging_study(s, contents.get(s.pk, []), asked=search.patient, config=config.fhir,
                             endpoint_reference=endpoint_ref))
        for s in page
    ]  # fmt: skip
    bundle = searchset(
        base, resources, total, wado_endpoint(wado_base(request)), search.applied,
        has_next=len(rows) > search.count, after_pk=search.after_pk, now=int(time.time()),
    )  # fmt: skip
    return FhirResponse(bundle)


@fhir_errors
async def read_study(request: Request) -> Response:
    uid: str = request.path_params["id"]
    if uid_problem(uid):
        raise NotFound(f"No ImagingStudy {uid[:80]!r}: ImagingStudy ids here are Study Instance UIDs.")
    request.scope[AUDIT_STUDY] = uid
    decision = await decide(request, READ_IMAGING)
    index = index_of(request)
    study = await off_loop(index.study_summary, decision.scope, uid)
    if study is None:
        raise NotFound(f"No ImagingStudy {uid!r} on this server.")
    contents = await off_loop(index.series_summaries, decision.scope, [study.pk])
    reference = f"{fhir_base(request)}/Endpoint/{ENDPOINT_ID}"
    config: Config = request.app.state.config
    asked = None
    owner = decision.owner_of(PatientKey(study.patient_id, study.issuer).text) if decision.bound else None
    if owner is not None:
        asked = DicomPatient(study.patient_id, study.issuer, ehr_id=owner.ehr_id)
        request.scope[AUDIT_PATIENT] = owner.ehr_id
    return FhirResponse(
        imaging_study(study, contents.get(study.pk, []), asked=asked, config=config.fhir, endpoint_reference=reference)
    )


@fhir_errors
async def read_endpoint(request: Request) -> Response:
    if request.path_params["id"] != ENDPOINT_ID:
        raise NotFound(f"No Endpoint {request.path_params['id'][:80]!r}; this server has Endpoint/{ENDPOINT_ID}.")
    await authorize(request, READ_IMAGING)
    return FhirResponse(wado_endpoint(wado_base(request)))


@fhir_errors
async def metadata(request: Request) -> Response:
    return FhirResponse(capability_statement(fhir_base(request), request.app.state.config.server.auth))


@fhir_errors
async def smart_configuration(request: Request) -> Response:
    """SMART discovery: the EHR's own document, as fetched from `auth.ehr_issuer` (the IG's R2 rule).

    The app then authorizes at the EHR, which is the one authorization server.
    """
    config: Config = request.app.state.config
    if config.server.auth == "none":
        raise NotFound(
            "No SMART configuration: this server runs with --auth none, so no authorization server is in use."
        )
    document = await request.app.state.introspector.ehr_configuration()
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=60"})


@fhir_errors
async def search_audit(request: Request) -> Response:
    """AuditEvent search (patient, date, client, outcome, _count) for a `system/AuditEvent.rs` token."""
    await decide(request, READ_AUDIT)
    recorder = request.app.state.audit
    if recorder is None:
        raise NotFound("No audit trail: this server runs with [audit] enabled = false.")
    params = {name: request.query_params.getlist(name) for name in request.query_params}
    await off_loop(recorder.flush, 2.0)  # what was decided before this search is in its answer
    return FhirResponse(await off_loop(search_bundle, recorder.store, params, fhir_base(request)))


@fhir_errors
async def unknown(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{request.method} is not allowed: this FHIR endpoint is read-only (GET).")
    raise NotFound(
        f"No FHIR resource at /fhir/{request.path_params['rest'][:80]}: this endpoint serves ImagingStudy, "
        "Endpoint, AuditEvent and metadata (docs/fhir.md)."
    )


routes: list[BaseRoute] = [
    Route("/ImagingStudy", searches(search_studies), methods=["GET"]),
    Route("/ImagingStudy/{id}", reads(read_study), methods=["GET"]),
    Route("/Endpoint/{id}", reads(read_endpoint), methods=["GET"]),
    Route("/AuditEvent", audits(search_audit), methods=["GET"]),
    # Public: what a client needs before it has a token (capabilities, discovery, the 404 advice).
    Route("/metadata", metadata, methods=["GET"]),
    Route("/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
    Route("/{rest:path}", unknown, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
]
