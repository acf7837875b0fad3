"""WADO-URI, the URI Service of PS3.18 §9: one instance named by query parameters, at `/wado`.

`GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…[&contentType=…]` is the oldest DICOM
web retrieval, still what many viewers, EHR links and IHE WADO Retrieve [RAD-55] use. The two
transactions share the URL and differ by the selected media type (§9.3): Retrieve DICOM Instance
(`application/dicom`, §9.4) answers with the file, through the same transfer syntax rules as
WADO-RS; Retrieve Rendered Instance (`image/jpeg`, `image/png`, `image/gif`, §9.5) is drawn by
`rendered.draw_response`, the path WADO-RS /rendered takes, with its cache and ETags.

Every parameter is checked before the store is read, so a malformed request is a 400 whatever it
names. What the standard lets a server leave out and Aperture does: `annotation`, `charset` and
presentation states are ignored (§8.3: unsupported parameters "shall" be ignored) and named in a
`Warning` header; `anonymize=yes` is refused (§9.4.2.3 allows an error when the server cannot
de-identify, and ignoring it would hand out identified data to a caller who asked for none).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from aperture.auth.requirements import AUDIT_STUDY
from aperture.dicom.identifiers import uid_problem
from aperture.dicom.render import (
    MAX_VIEWPORT_PIXELS,
    MAX_VIEWPORT_SIDE,
    RenderError,
    Viewport,
    parse_region,
    parse_window,
)
from aperture.dicom.transcode import available_targets, can_transcode
from aperture.dicomweb.caching import etag_of_many, not_modified
from aperture.dicomweb.media import MediaRange, parse_accept
from aperture.dicomweb.rendered import Ask, draw_response
from aperture.dicomweb.wado import (
    LOOP_READ,
    instance_response,
    read_small_instance,
    resolve_and,
    target_syntax,
    validator,
)
from aperture.errors import ApertureError, InvalidRequest, InvalidUID, NotAcceptable

_DICOM = "application/dicom"
_RENDERED = ("image/jpeg", "image/png", "image/gif")  # image/jpeg first: the default (§9.3, Table 8.7.4-1)
_UIDS = ("studyUID", "seriesUID", "objectUID")
# Every parameter this module reads or names; each may appear once (§9.4.2.3, §9.4.2.4, §9.5.2.1).
_KNOWN = (
    "requestType",
    *_UIDS,
    "contentType",
    "transferSyntax",
    "anonymize",
    "charset",
    "annotation",
    "imageAnnotation",
    "frameNumber",
    "rows",
    "columns",
    "region",
    "windowCenter",
    "windowWidth",
    "imageQuality",
    "presentationUID",
    "presentationSeriesUID",
)
_IGNORED = ("annotation", "imageAnnotation", "charset", "presentationUID", "presentationSeriesUID")


async def retrieve(request: Request) -> Response:
    """GET (and HEAD) /wado: Retrieve DICOM Instance or Retrieve Rendered Instance (§9.3)."""
    params = _single_values(request)
    uids = _identify(params)
    request.scope[AUDIT_STUDY] = uids[0]  # the study is in the query here, not the path
    if "anonymize" in params:  # §9.4.2.3
        if params["anonymize"] != "yes":
            raise InvalidRequest(
                f"anonymize takes the one value 'yes', not {params['anonymize'][:40]!r} (PS3.18 §9.4.1.2.1)."
            )
        raise InvalidRequest(
            "anonymize=yes cannot be honoured: Aperture has no de-identification (PS3.15 Basic Profile) yet. "
            "Retrieve without anonymize only if you may see the identified data."
        )
    media_type = _selected_media_type(params.get("contentType"), request.headers.get("accept"))
    if media_type == _DICOM:
        for name in ("windowCenter", "windowWidth"):  # §9.5.1.2.6
            if name in params:
                raise InvalidRequest(f"{name} cannot be used with contentType=application/dicom (PS3.18 §9.5.1.2.6).")
    # Parsed whichever transaction runs: an invalid value of a supported parameter is a 400 (§8.3)
    ask = _rendering(params, media_type)
    requested = params.get("transferSyntax")
    if requested is not None:
        problem = uid_problem(requested, strict=True)
        if problem:  # §9.4.2.4
            raise InvalidRequest(f"transferSyntax {requested[:80]!r} is not a valid Transfer Syntax UID: {problem}.")
    ignored = [name for name in _IGNORED if name in params]
    headers = {"Warning": f'299 - "Not supported, ignored: {", ".join(ignored)}"'} if ignored else {}
    if media_type == _DICOM:
        return await _dicom(request, requested, uids, headers)
    return await draw_response(
        request,
        ask,
        uids=uids,
        no_pixels=_no_pixels(media_type),
        no_frame=_no_frame,
        headers=headers,
    )


def _single_values(request: Request) -> dict[str, str]:
    """The query as one value per name; a parameter this service reads given twice is a 400."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in params and name in _KNOWN:
            raise InvalidRequest(f"{name} is given more than once; WADO-URI takes one value for it (PS3.18 §9).")
        params.setdefault(name, value)
    return params


def _identify(params: dict[str, str]) -> tuple[str, str, str]:
    """requestType and the three UIDs, which §9.4.2.1 and §9.4.2.2 require (400 when absent or wrong)."""
    if "requestType" not in params:
        raise InvalidRequest("requestType=WADO is required (PS3.18 §9.1.2.1).")
    if params["requestType"] != "WADO":
        raise InvalidRequest(
            f"requestType must be 'WADO' (case matters), not {params['requestType'][:40]!r} (PS3.18 §9.1.2.1.1)."
        )
    values = []
    for name in _UIDS:
        value = params.get(name)
        if value is None:
            raise InvalidRequest(
                f"{name} is required: WADO-URI names an instance by studyUID, seriesUID and objectUID."
            )
        problem = uid_problem(value)
        if problem:
            raise InvalidUID(f"{name} {value[:80]!r} is not a valid UID: {problem}.")
        values.append(value)
    return values[0], values[1], values[2]


def _selected_media_type(content_type: str | None, accept: str | None) -> str:
    """The Selected Media Type (§8.7.8.1): from contentType if given, else Accept; `*/*` is image/jpeg (§9.3)."""
    if content_type is not None:
        ranges = parse_accept(content_type, "The contentType parameter") if content_type.strip() else []
        if not content_type.strip() or any("/" not in media.type for media in ranges):
            raise InvalidRequest(
                f"contentType {content_type[:80]!r} is not a list of media types; give application/dicom or "
                "image/jpeg, for example."
            )
        for media in ranges:  # §9.1.2.2.1: these media type parameters are forbidden in WADO-URI
            for parameter, instead in (("transfer-syntax", "transferSyntax"), ("charset", "charset")):
                if parameter in media.params:
                    raise InvalidRequest(
                        f"contentType may not carry a {parameter} parameter (PS3.18 §9.1.2.2.1); "
                        f"use the {instead} query parameter instead."
                    )
        types = {media.type for media in ranges}
        if _DICOM in types and len(types) > 1:  # §9.1.2.2.1 and §8.7.5: DICOM or rendered types, not both
            raise InvalidRequest(
                "contentType is either application/dicom alone or a list of rendered types, not both (PS3.18 §8.7.5)."
            )
        chosen = _first_supported(ranges)
        if chosen is None:
            raise NotAcceptable(
                f"contentType {content_type[:80]!r} names nothing Aperture serves: WADO-URI answers with "
                f"application/dicom or {', '.join(_RENDERED)}."
            )
        return chosen
    chosen = _first_supported(parse_accept(accept))
    if chosen is None:
        raise NotAcceptable(
            "The Accept header allows nothing Aperture serves: WADO-URI answers with application/dicom or "
            f"{', '.join(_RENDERED)} (set contentType to choose)."
        )
    return chosen


def _first_supported(ranges: list[MediaRange]) -> str | None:
    for media in ranges:  # by preference
        if media.type in ("*/*", "*"):
            return _RENDERED[0]
        if media.type == _DICOM:
            return _DICOM
        for candidate in _RENDERED:
            if media.covers(candidate):
                return candidate
    return None


# --- Retrieve DICOM Instance (§9.4) ---------------------------------------------------------------


async def _dicom(
    request: Request, requested: str | None, uids: tuple[str, str, str], headers: dict[str, str]
) -> Response:
    blobs = request.app.state.blobs
    refs, prefetched = await resolve_and(
        request, read_small_instance(blobs), lambda refs: refs[0].size <= LOOP_READ, uids=uids
    )
    ref = refs[0]
    # §9.4.2.4: Explicit VR Little Endian unless named; lossy or undecodable data stay as stored (as WADO-RS)
    target = target_syntax(ref.transfer_syntax, requested)
    if not can_transcode(ref.transfer_syntax, target):
        raise NotAcceptable(
            f"Transfer syntax {target} cannot be produced for this instance (stored as {ref.transfer_syntax}); "
            f"available: {', '.join(available_targets(ref.transfer_syntax))}."
        )
    tag = etag_of_many("instances", [validator(ref)], target, False)
    if (unchanged := not_modified(request, tag)) is not None:
        return unchanged
    # §9.1.3: no transfer-syntax parameter on the media type in WADO-URI
    return await instance_response(ref, target, prefetched, blobs, _DICOM, {"ETag": tag, **headers})


# --- Retrieve Rendered Instance (§9.5) ------------------------------------------------------------


def _rendering(params: dict[str, str], media_type: str) -> Ask:
    frame = 1
    if "frameNumber" in params:
        text = params["frameNumber"]
        if not _is_positive(text, 10):
            raise InvalidRequest(f"frameNumber must be a frame number from 1, not {text[:40]!r} (PS3.18 §9.5.1.2.1).")
        frame = int(text)
    quality = None
    if "imageQuality" in params:
        text = params["imageQuality"]
        if not _is_positive(text, 3) or int(text) > 100:
            raise InvalidRequest(
                f"imageQuality must be an integer from 1 to 100, not {text[:40]!r} (PS3.18 §8.3.5.1.2)."
            )
        quality = int(text)
    rows, columns = (_side(params, name) for name in ("rows", "columns"))
    viewport = None
    if rows is not None or columns is not None:
        # §9.5.2.5: both are maxima; one alone leaves the other side to the aspect ratio, within the drawing bound
        if rows is not None and columns is not None and rows * columns > MAX_VIEWPORT_PIXELS:
            raise InvalidRequest(
                f"rows x columns {rows}x{columns} is more than the {MAX_VIEWPORT_PIXELS} pixels "
                "(4096x4096) Aperture draws."
            )
        viewport = Viewport(
            vw=columns or min(MAX_VIEWPORT_SIDE, MAX_VIEWPORT_PIXELS // (rows or 1)),
            vh=rows or min(MAX_VIEWPORT_SIDE, MAX_VIEWPORT_PIXELS // (columns or 1)),
        )
    window = None
    center, width = params.get("windowCenter"), params.get("windowWidth")
    if (center is None) != (width is None):  # §9.5.2.2
        missing = "windowWidth" if width is None else "windowCenter"
        raise InvalidRequest(f"windowCenter and windowWidth go together; {missing} is missing (PS3.18 §9.5.1.2.6).")
    if center is not None and width is not None:
        if "presentationUID" in params or "presentationSeriesUID" in params:
            raise InvalidRequest("window parameters and a presentation state cannot be combined (PS3.18 §9.5.2.2).")
        for name, text in (("windowCenter", center), ("windowWidth", width)):
            if "," in text or not text.strip():
                raise InvalidRequest(f"{name} must be one decimal number, not {text[:40]!r}.")
        try:
            window = parse_window(f"{center},{width}")
        except RenderError as exc:
            raise InvalidRequest(f"windowCenter / windowWidth: {exc}.") from exc
    region = None
    if "region" in params:
        try:
            region = parse_region(params["region"])
        except RenderError as exc:
            raise InvalidRequest(f"{exc} (PS3.18 §9.5.1.2.5).") from exc
    return Ask(
        media_type=media_type,
        frame=frame,
        thumbnail=False,
        quality=quality,
        window=window,
        viewport=viewport,
        region=region,
    )


def _side(params: dict[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    if not _is_positive(text, 9):
        raise InvalidRequest(f"{name} must be a positive number of pixels, not {text[:40]!r} (PS3.18 §9.5.1.2.4).")
    if int(text) > MAX_VIEWPORT_SIDE:
        raise InvalidRequest(f"{name} must be at most {MAX_VIEWPORT_SIDE} pixels, not {text}.")
    return int(text)


def _is_positive(text: str, digits: int) -> bool:
    """ASCII digits only (str.isdigit() also accepts '¹', which int() refuses), at most `digits` of them, not 0."""
    return text.isascii() and text.isdigit() and len(text) <= digits and int(text) > 0


def _no_pixels(media_type: str) -> Callable[[str], ApertureError]:
    def refuse(sop_uid: str) -> ApertureError:
        return NotAcceptable(
            f"Instance {sop_uid} has no pixel data, so it cannot be drawn as {media_type}; "
            "ask for contentType=application/dicom to get the object itself."
        )

    return refuse


def _no_frame(frame: int, sop_uid: str, frames: int) -> ApertureError:
    # §9.5.2.1: a frame number past the last is a 400, not a 404
    return InvalidRequest(f"frameNumber {frame} is past the end: instance {sop_uid} has {frames} frame(s).")
