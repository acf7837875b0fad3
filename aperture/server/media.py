"""`/media/studies[/{study}]`: a patient's images as a PDI zip (DICOMDIR inside), streamed as it is built.

GET takes `Authorization: Bearer`; POST takes an `application/x-www-form-urlencoded` body with
`access_token` (RFC 6750 §2.2), so a browser form can save the zip straight to disk without the
token in any URL. Either way the request goes route → policy → store like every read: the scope
from `authorize` picks the studies (another patient's study is a 404, like a missing one), and
only the files the index names for that scope are opened. The zip itself is `aperture.media.archive`:
stored entries, CRCs, ZIP64 when needed, constant memory, no temp copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from aperture.auth.requirements import AUDIT_STUDIES, FORM_TOKEN, READ_IMAGING, Endpoint, authorize, reads
from aperture.dicomweb.state import index_of
from aperture.dicomweb.streaming import StreamingResponse
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.urls import path_uid
from aperture.errors import InvalidRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from aperture.media.archive import MediaSource, pdi_zip
from aperture.store.index import Index, InstanceRef
from aperture.store.scope import AccessScope

FORM = "application/x-www-form-urlencoded"
MAX_FORM = 16 * 1024  # an access token and nothing else
PAGE = 200


async def bounded_body(request: Request, limit: int, too_large: str) -> bytes:
    """A small body whole: refused (413, `too_large` its message) once it passes `limit` bytes, never held larger."""
    received = bytearray()
    async for piece in request.stream():
        received += piece
        if len(received) > limit:
            raise PayloadTooLarge(too_large)
    return bytes(received)


async def _form_token(request: Request) -> None:
    """For a POST form: its RFC 6750 §2.2 `access_token`, handed to `authorize` (never logged).

    A POST that is not a form carries its token in the Authorization header like a GET, and may
    have no body (checked after authorization by `_no_body`, so a refusal of the token comes first).
    """
    if request.method != "POST":
        return
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM:
        return
    body = await bounded_body(request, MAX_FORM, f"The form may hold only access_token (at most {MAX_FORM} bytes).")
    values = parse_qs(body.decode("ascii", "replace"), keep_blank_values=True).get("access_token", [])
    if len(values) > 1:
        raise InvalidRequest("Send access_token once.")
    if values:
        if "authorization" in request.headers:
            # RFC 6750 §2: a client must not use more than one method to send the token
            raise InvalidRequest("Send the access token either in the form or in the Authorization header, not both.")
        request.scope[FORM_TOKEN] = values[0]


def _no_body(request: Request) -> None:
    """A POST other than the token form has nothing to say: refuse a body rather than ignore it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method != "POST" or kind == FORM:
        return
    if kind or request.headers.get("content-length", "0") not in ("", "0"):
        raise UnsupportedMediaType(
            f"POST a form ({FORM}) with access_token=..., or send Authorization: Bearer with no body."
        )


def reading(endpoint: Endpoint) -> Endpoint:
    """`reads(endpoint)` for both methods: the POST only carries the token in its body, it stores nothing."""
    declared = reads(endpoint)
    declared.actions = {"GET": READ_IMAGING, "POST": READ_IMAGING}  # type: ignore[attr-defined]  # route checks
    return declared


def _sources(request: Request, refs: list[InstanceRef]) -> Iterator[MediaSource]:
    blobs = request.app.state.blobs
    for ref in refs:
        yield MediaSource(ref.study_uid, ref.series_uid, ref.sop_uid, blobs.path(ref.blob), ref.size)


def _zip(request: Request, sources: Iterator[MediaSource], name: str) -> Response:
    config = request.app.state.config
    return StreamingResponse(
        pdi_zip(sources, institution=config.server.public_url or None),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",  # never kept by a cache; the app's form gets it fresh
        },
    )


async def study(request: Request) -> Response:
    """One study as PDI media."""
    await _form_token(request)
    uid = path_uid(request, "study")
    scope = await authorize(request, READ_IMAGING)
    _no_body(request)
    index = index_of(request)
    refs: list[InstanceRef] = await off_loop(index.instance_refs, scope, uid)
    if not refs:
        raise NotFound(f"Study {uid} is not on this server.")
    return _zip(request, _sources(request, refs), f"study-{uid}.zip")


def _study_uids(index: Index, scope: AccessScope) -> list[str]:
    """Every study the scope reaches, in the order they were stored (keyset pages, so none is missed)."""
    uids: list[str] = []
    after: int | None = None
    while True:
        page, _ = index.study_summaries(scope, patient_id=None, issuer=None, after_pk=after, limit=PAGE)
        uids += [s.study_uid for s in page]
        if len(page) < PAGE:
            return uids
        after = page[-1].pk


async def studies(request: Request) -> Response:
    """Every study the authorization reaches, as one PDI medium."""
    await _form_token(request)
    scope = await authorize(request, READ_IMAGING)
    _no_body(request)
    index = index_of(request)
    uids = await off_loop(_study_uids, index, scope)
    if not uids:
        raise NotFound("No study is on this server for this authorization.")
    request.scope[AUDIT_STUDIES] = tuple(uids)

    def sources() -> Iterator[MediaSource]:  # runs in the worker thread that drives the zip
        for uid in uids:
            yield from _sources(request, index.instance_refs(scope, uid))

    return _zip(request, sources(), "studies.zip")
