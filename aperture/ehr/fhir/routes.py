"""The FHIR routes: `metadata`, read (`GET {fhir}/{Type}/{id}`), search (`GET {fhir}/{Type}`, `POST .../_search`),
and the one write, `PUT {fhir}/ImagingStudy?identifier=...` from the imaging server (`submissions.py`).

Each route is thin: check the bearer token, decide what it may reach (`access.py`), parse, ask the
record (`records.py`), answer. A token is looked up by its hash like introspection does; no valid
bearer token (none, unknown, expired, revoked, or not meant for this server by `aud`) is 401 with
`WWW-Authenticate: Bearer`. Scopes that do not cover the type, or a read or a `patient=` search of a
patient the token does not reach, are 403 (the SMART Imaging Access rule: never an empty Bundle for
another patient); other criteria are confined to the reachable patients. Errors are OperationOutcome.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aperture.ehr.config import EhrConfig
from aperture.ehr.errors import (
    EhrError,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    ResourceNotFound,
)
from aperture.ehr.fhir import records, submissions
from aperture.ehr.fhir.access import access
from aperture.ehr.fhir.capability import capability_statement
from aperture.ehr.fhir.outcomes import FhirResponse, error_outcome, operation_outcome
from aperture.ehr.fhir.params import PARAMS
from aperture.ehr.fhir.query import MAX_SEARCH_BODY, Search, parse_search
from aperture.ehr.scopes import contexts_allowing
from aperture.ehr.tokens import AccessToken, find_token

Handler = Callable[[Request], Awaitable[Response]]


def fhir_endpoint(handler: Handler) -> Handler:
    """Answer the sandbox's errors from `handler` as OperationOutcome instead of OAuth JSON."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except EhrError as error:
            return error_outcome(error, request.app.state.config.fhir_base)

    return endpoint


def bearer_token(request: Request) -> AccessToken:
    """The request's valid access token for this server, or InvalidToken."""
    config: EhrConfig = request.app.state.config
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken()
    token = find_token(request.app.state.authorization.engine, value.strip())
    if token is None or token.is_expired() or token.is_revoked() or config.fhir_base not in token.audience:
        raise InvalidToken("The access token is unknown, expired, revoked, or not for this server.")
    return token


def read_resource(request: Request, resource_type: str, resource_id: str) -> dict[str, Any]:
    engine = request.app.state.authorization.engine
    reach = access(engine, request.app.state.directory, bearer_token(request), resource_type, "r")
    stored = records.read(engine, resource_type, resource_id)
    if stored is None or stored.study_uid in reach.hidden_studies:
        raise ResourceNotFound(f"No {resource_type}/{resource_id}.")
    if not reach.reaches(stored.patient, stored.study_uid):
        raise InsufficientScope(f"This token does not reach {resource_type}/{resource_id}: another patient's record.")
    return stored.resource


def search_resources(request: Request, resource_type: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    config: EhrConfig = request.app.state.config
    engine = request.app.state.authorization.engine
    reach = access(engine, request.app.state.directory, bearer_token(request), resource_type, "s")
    query = parse_search(resource_type, pairs, config.fhir_base)
    if reach.patients is not None:
        others = sorted(query.patients_named(config.fhir_base) - reach.patients)
        if others:
            raise InsufficientScope(f"This token does not reach patient {others[0]}.")
    total, found = records.search(engine, query, reach.confinement())
    return searchset(config, query, pairs, total, found)


def searchset(
    config: EhrConfig, query: Search, pairs: list[tuple[str, str]], total: int, found: list[dict[str, Any]]
) -> dict[str, Any]:
    """A searchset Bundle with `self` (and `next` while more pages remain) links."""
    base = f"{config.fhir_base}/{query.resource_type}"
    kept = [(k, v) for k, v in pairs if k != "_offset"]
    links = [{"relation": "self", "url": f"{base}?{urlencode(pairs)}" if pairs else base}]
    if query.count and query.offset + query.count < total:
        following = urlencode([*kept, ("_offset", str(query.offset + query.count))])
        links.append({"relation": "next", "url": f"{base}?{following}"})
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": records.instant_now()},
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [{"fullUrl": f"{base}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in found],
    }


async def metadata(request: Request) -> Response:
    return FhirResponse(capability_statement(request.app.state.config))


@fhir_endpoint
async def read(request: Request) -> Response:
    resource_type, resource_id = request.path_params["type"], request.path_params["id"]
    if resource_type not in PARAMS:
        raise ResourceNotFound(
            f"This server has no {resource_type[:40]} resources; see {request.app.state.config.fhir_base}/metadata."
        )
    return FhirResponse(await run_in_threadpool(read_resource, request, resource_type, resource_id))


@fhir_endpoint
async def search(request: Request) -> Response:
    resource_type = request.path_params["type"]
    if resource_type not in PARAMS:
        raise ResourceNotFound(
            f"This server has no {resource_type[:40]} resources; see {request.app.state.config.fhir_base}/metadata."
        )
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    if request.method == "POST":
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise InvalidRequest("POST _search takes application/x-www-form-urlencoded parameters.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SEARCH_BODY:
                raise InvalidRequest(f"A POST _search body is at most {MAX_SEARCH_BODY} bytes.")
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return FhirResponse(await run_in_threadpool(search_resources, request, resource_type, pairs))


def write_study(request: Request, criteria: list[tuple[str, str]], document: Any) -> Response:
    """Conditional update of an ImagingStudy by a backend client (`system/ImagingStudy.c` and/or `.u`)."""
    config: EhrConfig = request.app.state.config
    token = bearer_token(request)
    may_create = "system" in contexts_allowing(token.scope, "ImagingStudy", "c")
    may_update = "system" in contexts_allowing(token.scope, "ImagingStudy", "u")
    if token.user is not None or not (may_create or may_update):
        raise InsufficientScope(
            "Publishing ImagingStudy needs a Backend Services token with system/ImagingStudy.cu "
            "(v1: system/ImagingStudy.write)."
        )
    study_uid = submissions.study_uid_of(criteria)
    submission = submissions.check(document, study_uid)
    outcome = submissions.submit(
        request.app.state.authorization.engine, request.app.state.directory, submission, token.client_id,
        may_create=may_create, may_update=may_update,
    )  # fmt: skip
    location = f"{config.fhir_base}/ImagingStudy/{outcome.resource['id']}"
    headers = {"Location": location, "Last-Modified": outcome.resource["meta"]["lastUpdated"]}
    return FhirResponse(outcome.resource, status_code=201 if outcome.created else 200, headers=headers)


@fhir_endpoint
async def write(request: Request) -> Response:
    resource_type = request.path_params["type"]
    if resource_type != "ImagingStudy" or request.method != "PUT":
        return operation_outcome(
            405,
            f"{request.method} {resource_type[:40]} is not supported: the only write is the conditional update "
            "PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:<StudyInstanceUID> "
            f"(see {request.app.state.config.fhir_base}/metadata).",
            {"Allow": "GET, PUT" if resource_type == "ImagingStudy" else "GET"},
        )
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in ("application/fhir+json", "application/json"):
        raise InvalidRequest("Send the ImagingStudy as Content-Type: application/fhir+json.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > submissions.MAX_BODY:
            raise InvalidRequest(f"An ImagingStudy body is at most {submissions.MAX_BODY} bytes.")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"The body is not JSON: {exc}.") from None
    criteria = parse_qsl(request.url.query, keep_blank_values=True)
    return await run_in_threadpool(write_study, request, criteria, document)


async def write_instance(request: Request) -> Response:
    """405 for writes to one resource (or to `_search`), with the methods that do work there in `Allow`."""
    if request.path_params["id"] == "_search":
        return operation_outcome(405, "_search takes GET or POST.", {"Allow": "GET, POST"})
    return operation_outcome(
        405,
        f"{request.method} on one resource is not supported: publish an ImagingStudy by its StudyInstanceUID "
        "with PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:<StudyInstanceUID> (conditional update).",
        {"Allow": "GET"},
    )


async def not_supported(request: Request) -> Response:
    return operation_outcome(404, "No such FHIR endpoint; what this server offers is listed at {fhir}/metadata.")


ROUTES = [
    Route("/fhir/metadata", metadata),
    Route("/fhir/{type}/_search", search, methods=["GET", "POST"]),  # FHIR R4 §3.1.1.5.1: GET too
    Route("/fhir/{type}/{id}", read),
    Route("/fhir/{type}/{id}", write_instance, methods=["PUT", "PATCH", "DELETE", "POST"]),
    Route("/fhir/{type}", search),
    Route("/fhir/{type}", write, methods=["PUT", "POST"]),  # FHIR R4 §3.1.0.4.3 conditional update
    Route("/fhir/{path:path}", not_supported),
]
