"""QIDO-RS: Search for Studies, Series and Instances (PS3.18 §10.6).

Route → policy → index → DICOM JSON (or DICOM XML made from it, when asked for). When a page is
cut by `limit`, the answer carries the `Warning: 299` header PS3.18 §8.3.4.4 defines, so clients
know to ask for the next page.
"""

from __future__ import annotations

from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response

from aperture.auth.policy import Decision
from aperture.auth.requirements import READ_IMAGING, decide
from aperture.dicom.attributes import Level
from aperture.dicom.query import Match, Query, QueryError, parse_query
from aperture.dicomweb.caching import json_response
from aperture.dicomweb.media import MetadataFormat, metadata_format
from aperture.dicomweb.state import index_of
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.urls import optional_uid, with_base
from aperture.dicomweb.xmlparts import xml_documents, xml_multipart
from aperture.errors import Forbidden, InvalidQuery, NotFound
from aperture.store.index import is_point_lookup

_JSON = MetadataFormat.JSON
# Parsed queries and their SQL are remembered for repeats, but only for query strings up to this
# size: the caches hold at most 1024 and 256 entries, so their memory stays bounded (a few MB)
# however long the queries clients send.
REMEMBERED_QUERY_BYTES = 2048
PATIENT_ID = 0x00100020


async def search(request: Request, level: Level) -> Response:
    study_uid = optional_uid(request, "study")
    series_uid = optional_uid(request, "series")
    wanted = _check_accept(request)
    decision = await decide(request, READ_IMAGING)
    scope = decision.scope
    config = request.app.state.config.dicomweb
    remember = len(request.scope["query_string"]) <= REMEMBERED_QUERY_BYTES
    try:
        params = tuple((k, v) for k, v in request.query_params.multi_items() if k != "accept")
        parse = _parsed_query if remember else _parsed_query.__wrapped__
        query = parse(params, level, config.default_limit, config.max_limit)
    except QueryError as exc:
        raise InvalidQuery(str(exc)) from exc
    if decision.bound:
        _check_patients(query, decision)
    index = index_of(request)
    if index.answers_inline and is_point_lookup(query, study_uid):  # a few indexed rows: cheaper here than a hop
        result = index.search(query, scope, remember=remember)
    else:
        result = await off_loop(
            index.search, query, scope, study_uid=study_uid, series_uid=series_uid, remember=remember
        )
    if not result.documents and study_uid is not None:
        if not await off_loop(index.has_study, scope, study_uid):
            raise NotFound(f"Study {study_uid} is not on this server.")
        if series_uid is not None and not await off_loop(index.has_series, scope, study_uid, series_uid):
            raise NotFound(f"Series {series_uid} in study {study_uid} is not on this server.")
    if wanted is _JSON:
        response = json_response(request, with_base(b"[" + b",".join(result.documents) + b"]", request))
    else:  # DICOM XML, one document per match (PS3.18 §10.6.3.3, §8.7.3.2)
        body, content_type = xml_multipart(await off_loop(xml_documents, result.documents, request))
        response = json_response(request, body, media_type=content_type)
    if result.more:
        response.headers["Warning"] = '299 aperture "There are additional results that can be requested"'
    return response


def _check_patients(query: Query, decision: Decision) -> None:
    """A search by the PatientID of someone the token does not reach is refused (403), not answered empty.

    Only exact values are checked (single or list matching); a wildcard is filtered like any search.
    docs/authorization.md §What an imaging server does, rule 2.
    """
    for cond in query.conditions:
        if cond.tag != PATIENT_ID or cond.sequence_path:
            continue
        asked = cond.values if cond.match is Match.LIST else (cond.value,) if cond.match is Match.SINGLE else ()
        if asked and not set(asked) <= decision.patient_ids():
            raise Forbidden("PatientID names a patient this access token does not reach.")


@lru_cache(maxsize=1024)
def _parsed_query(params: tuple[tuple[str, str], ...], level: Level, default_limit: int, max_limit: int) -> Query:
    """`parse_query`, remembered: viewers and worklists repeat the same searches (queries are immutable)."""
    return parse_query(list(params), level, default_limit=default_limit, max_limit=max_limit)


def _check_accept(request: Request) -> MetadataFormat:
    """DICOM JSON or DICOM XML in parts; a single-part XML is not offered, results being a list (406)."""
    header = request.query_params.get("accept") or request.headers.get("accept")
    return metadata_format(header, single=False, what="Search results")


async def search_studies(request: Request) -> Response:
    return await search(request, Level.STUDY)


async def search_series(request: Request) -> Response:
    return await search(request, Level.SERIES)


async def search_instances(request: Request) -> Response:
    return await search(request, Level.INSTANCE)
