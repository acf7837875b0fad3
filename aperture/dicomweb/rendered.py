"""Rendered and thumbnail resources (PS3.18 §10.4.1.1.3, §8.3.5): consumer images from DICOM.

`draw_response` is the one drawing path: WADO-RS /rendered and /thumbnail parse their URL into an
`Ask` here, WADO-URI (`aperture.dicomweb.wadouri`) parses its query into one, and both are
answered by it (same cache, same ETags, same pixels). Images are drawn by `aperture.dicom.render`,
honouring the `window`, `viewport` and `quality` query parameters and the header's rescale and
VOI LUT. An uncompressed grayscale frame (most CT, MR, CR and DX) is drawn from its stored bytes,
read by offset, and the instance's DICOM JSON from the index; anything else is decoded from the
file by pydicom. Series and study thumbnails use the middle instance, which is more
representative than the first. Rendered images are kept in a bounded in-memory cache
(`dicomweb.rendered_cache_bytes`). Rendered Study and Rendered Series (`rendered_collection`) are
multipart answers streamed part by part, each part drawn by the same steps as one instance. Stored
data that cannot be drawn is 406 when it is valid but not drawable here (no decoder installed, a
colour model not handled) and 422 when its pixel data contradicts its header; never a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any

import pydicom
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from aperture.dicom.frames import FrameIndex, read_frames
from aperture.dicom.render import (
    PixelDataError,
    Region,
    RenderError,
    UnsupportedPixelData,
    Viewport,
    Window,
    parse_viewport,
    parse_window,
    render,
    render_native,
    thumbnail,
)
from aperture.dicom.transcode import LITTLE_ENDIAN_NATIVE
from aperture.dicomweb import multipart
from aperture.dicomweb.caching import boundary_for, etag, etag_of_many, not_modified_tag
from aperture.dicomweb.lru import ByteCache, RecentValues
from aperture.dicomweb.media import MediaRange, parse_accept
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.urls import public_base
from aperture.dicomweb.wado import SMALL_FILE, resolve_and, validator
from aperture.errors import ApertureError, InvalidPixelData, InvalidRequest, NotAcceptable, NotFound
from aperture.store.index import Index, InstanceRef
from aperture.store.scope import AccessScope

log = logging.getLogger("aperture.dicomweb")
_RENDERED = ("image/jpeg", "image/png", "image/gif")
_DEFLATED = "1.2.840.10008.1.2.1.99"


def _media_type(request: Request) -> str:
    for media in parse_accept(request.query_params.get("accept") or request.headers.get("accept")):
        for candidate in _RENDERED:
            if media.covers(candidate):
                return candidate
    raise NotAcceptable(f"Rendered images are available as {', '.join(_RENDERED)}.")


@dataclass(frozen=True)
class Ask:
    """What a request asks to be drawn, parsed before any lookup so that a bad value is a 400."""

    media_type: str
    frame: int
    thumbnail: bool
    quality: int | None
    window: Window | None
    viewport: Viewport | None
    region: Region | None = None

    @property
    def key(self) -> tuple[object, ...]:
        """The parsed parameters that change the image: cache key and ETag (never raw text)."""
        return (self.quality, self.window, self.viewport, self.region)


def _ask(request: Request, as_thumbnail: bool, media_type: str | None = None) -> Ask:
    """The request's `Ask`: single-part media type from Accept unless `media_type` is given."""
    media_type = media_type or _media_type(request)
    frame = 1
    if "frames" in request.path_params:
        text = request.path_params["frames"]
        # ASCII digits only (str.isdigit() also accepts '¹', which int() refuses); 10 digits hold any frame number
        if not _is_number(text, 10) or int(text) < 1:
            raise InvalidRequest(f"Rendered frames take one 1-based frame number, not {text[:40]!r}.")
        frame = int(text)
    params = request.query_params
    quality = params.get("quality")
    if quality is not None and (not _is_number(quality, 3) or not 1 <= int(quality) <= 100):
        raise InvalidRequest(f"quality must be an integer from 1 to 100, not {quality[:40]!r}.")
    try:
        window = parse_window(params["window"]) if params.get("window") else None
        viewport = parse_viewport(params["viewport"]) if params.get("viewport") else None
    except RenderError as exc:
        raise InvalidRequest(str(exc)) from exc
    return Ask(
        media_type=media_type,
        frame=frame,
        thumbnail=as_thumbnail and viewport is None,
        quality=int(quality) if quality else None,
        window=window,
        viewport=viewport,
    )


def _is_number(text: str, digits: int) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= digits


class _Drawer:
    """Draws frames of one instance: uncompressed grayscale straight from their bytes, anything else through pydicom.

    The file is parsed at most once, however many of its frames are drawn (a Rendered Study draws
    every frame of a multi-frame instance).
    """

    def __init__(self, ref: InstanceRef, path: Path, header: Callable[[], dict[str, Any]]) -> None:
        self.ref, self.path, self.header = ref, path, header
        self.dataset: pydicom.Dataset | None = None

    def __call__(self, ask: Ask) -> bytes:
        ref, path = self.ref, self.path
        try:
            if not ask.thumbnail and ref.frames is not None and ref.transfer_syntax in LITTLE_ENDIAN_NATIVE:
                pixels = read_frames(path, FrameIndex.from_json(ref.frames), [ask.frame])[0]
                body = render_native(
                    self.header(),
                    pixels,
                    media_type=ask.media_type,
                    quality=ask.quality,
                    window=ask.window,
                    viewport=ask.viewport,
                    region=ask.region,
                )
                if body is not None:
                    return body
            # A large file keeps its Pixel Data on disk and the frame is decoded from the file alone (a
            # 200 MB multi-frame would otherwise be in memory for one frame); a small one is read whole,
            # which parses it once instead of twice. Deflated data can only be inflated whole.
            from_file = ref.size > SMALL_FILE and ref.transfer_syntax != _DEFLATED
            if self.dataset is None:
                self.dataset = pydicom.dcmread(path, defer_size=4096 if from_file else None)
            ds = self.dataset
            source = path if from_file else None
            if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
                raise NotFound("This instance has no pixel data to render.")
            if ask.thumbnail:
                return thumbnail(ds, frame=ask.frame, media_type=ask.media_type, pixels_from=source)
            return render(
                ds,
                frame=ask.frame,
                media_type=ask.media_type,
                quality=ask.quality,
                window=ask.window,
                viewport=ask.viewport,
                pixels_from=source,
                region=ask.region,
            )
        except UnsupportedPixelData as exc:  # valid data, no way to draw it here (PS3.18 §8.7: not acceptable)
            raise NotAcceptable(f"{exc}. Retrieve it with transfer-syntax=* and decode it on the client.") from exc
        except PixelDataError as exc:
            raise InvalidPixelData(f"{exc}. Retrieve it with transfer-syntax=* to inspect it.") from exc
        except RenderError as exc:
            message = str(exc)
            if "frame" in message.lower() and "exist" in message.lower():
                raise NotFound(message) from exc
            raise InvalidRequest(message) from exc


def _draw_cached(state: Any, scope: AccessScope, ask: Ask, ref: InstanceRef, drawer: _Drawer | None = None) -> bytes:
    """`ask` drawn for `ref`, or taken from the rendered-image cache: the one drawing step of every rendered route."""
    cache: ByteCache | None = state.rendered_cache
    key = (ref.blob, ask.frame, ask.media_type, ask.thumbnail, *ask.key)
    body = cache.get(key) if cache is not None else None
    if body is None:
        body = (drawer or _drawer(state, scope, ref))(ask)
        if cache is not None:
            cache.put(key, body)
    return body


def _drawer(state: Any, scope: AccessScope, ref: InstanceRef) -> _Drawer:
    """A `_Drawer` for `ref` whose header (for drawing from stored bytes) comes from the index, read once."""
    parsed_headers: RecentValues[str, dict[str, Any]] = state.render_headers

    def header() -> dict[str, Any]:
        parsed = parsed_headers.get(ref.blob)
        if parsed is None:
            index: Index = state.index  # the same object `index_of` gives handlers
            found = index.metadata(scope, ref.study_uid, ref.series_uid, ref.sop_uid)
            parsed = json.loads(found[0][0]) if found else {}
            parsed_headers.put(ref.blob, parsed)  # read only, by every later drawing of this instance
        return parsed

    return _Drawer(ref, state.blobs.path(ref.blob), header)


def _no_pixels(sop_uid: str) -> ApertureError:
    return NotFound(f"Instance {sop_uid} has no pixel data (or a Number of Frames of 0) to render.")


def _no_frame(frame: int, sop_uid: str, frames: int) -> ApertureError:
    return NotFound(f"Frame {frame} does not exist: instance {sop_uid} has {frames} frame(s).")


async def draw_response(
    request: Request,
    ask: Ask,
    *,
    uids: tuple[str, str | None, str | None] | None = None,
    no_pixels: Callable[[str], ApertureError] = _no_pixels,
    no_frame: Callable[[int, str, int], ApertureError] = _no_frame,
    headers: dict[str, str] | None = None,
) -> Response:
    """Authorize, find the instance (`uids`, else the URL path's), draw `ask` or take it from the cache.

    `no_pixels` and `no_frame` make the errors for an instance without pixel data and a frame past
    its last: WADO-RS answers 404, WADO-URI answers as PS3.18 §9.5 says. `headers` are added to a 200.
    """
    state = request.app.state
    if_none_match = request.headers.get("if-none-match", "")

    def draw(refs: list[InstanceRef], scope: AccessScope) -> tuple[str, bytes | None]:
        with_pixels = [r for r in refs if r.num_frames] or refs  # a report in the series is not a thumbnail
        ref = with_pixels[len(with_pixels) // 2]
        if ref.num_frames == 0:
            raise no_pixels(ref.sop_uid)
        if ask.frame > ref.num_frames:
            raise no_frame(ask.frame, ref.sop_uid, ref.num_frames)
        tag = etag(validator(ref), ask.frame, ask.media_type, ask.thumbnail, *ask.key)
        if if_none_match and not_modified_tag(if_none_match, tag):
            return tag, None
        return tag, _draw_cached(state, scope, ask, ref)

    _, answer = await resolve_and(request, draw, uids=uids)
    assert answer is not None
    tag, body = answer
    if body is None:
        return Response(status_code=304, headers={"ETag": tag})
    return Response(
        body,
        media_type=ask.media_type,
        headers={"Cache-Control": "private, max-age=3600", "ETag": tag, **(headers or {})},
    )


async def rendered(request: Request) -> Response:
    return await draw_response(request, _ask(request, as_thumbnail=False))


async def thumbnail_route(request: Request) -> Response:
    return await draw_response(request, _ask(request, as_thumbnail=True))


def _multipart_media_type(request: Request) -> str:
    """The part type of a Rendered Study or Series: only multipart/related media ranges count.

    PS3.18 §10.4.4: a single part media type is only for a resource that is a single response item;
    for other resources the origin server ignores it, and 406 if no media type remains ("if a user
    agent requests a Rendered Study resource and only lists single part Media Types in the Accept
    header, it should expect an error, even if the Study happens to only contain one single frame
    Instance"). `multipart/related` without a `type`, `multipart/*` and `*/*` get JPEG, the
    default rendered type (§8.7.4, Table 8.7.4-1).
    """
    for media in parse_accept(request.query_params.get("accept") or request.headers.get("accept")):
        if media.type in ("*/*", "*", "multipart/*"):
            return _RENDERED[0]
        if media.type == "multipart/related":
            part = MediaRange(media.part_type or _RENDERED[0])
            for candidate in _RENDERED:
                if part.covers(candidate):
                    return candidate
    raise NotAcceptable(
        "Rendered studies and series are sent as "
        + ", ".join(f'multipart/related; type="{media}"' for media in _RENDERED)
        + ". A single-part type such as image/jpeg is only for one instance or frame (PS3.18 §10.4.4)."
    )


def _instance_url(base: str, ref: InstanceRef) -> str:
    return f"{base}/studies/{ref.study_uid}/series/{ref.series_uid}/instances/{ref.sop_uid}"


def _rendered_parts(
    state: Any, scope: AccessScope, ask: Ask, refs: list[InstanceRef], base: str
) -> Iterator[tuple[str, bytes]]:
    """(Content-Location, image) of each frame of `refs` that can be drawn as `ask` says, one at a time.

    An instance that cannot be drawn (pixel data this installation cannot decode or draw, or that
    contradicts its header) is left out and logged; if none could be, the first refusal is raised,
    as the instance's own /rendered would.
    """
    first_error: ApertureError | None = None
    drawn = 0
    for ref in refs:
        drawer = _drawer(state, scope, ref)
        url = _instance_url(base, ref)
        for frame in range(1, ref.num_frames + 1):
            try:
                body = _draw_cached(state, scope, replace(ask, frame=frame), ref, drawer)
            except (InvalidRequest, NotFound, NotAcceptable, InvalidPixelData) as exc:
                log.warning("rendered %s: instance %s left out: %s", ask.media_type, ref.sop_uid, exc)
                first_error = first_error or exc
                break
            drawn += 1
            yield (f"{url}/frames/{frame}/rendered" if ref.num_frames > 1 else f"{url}/rendered"), body
    if drawn == 0 and first_error is not None:
        raise first_error


async def rendered_collection(request: Request) -> Response:
    """Rendered Study and Rendered Series (PS3.18 §10.4.1.1.3): every image of the study or series.

    §10.4.1.1.3: Rendered Resources "are used to retrieve representations of a DICOM Resource
    rendered as appropriate images, videos, text documents, or other representations"; §10.4.3.3:
    the payload holds "one or more representations of the Target Resource in the Selected Media
    Type". The answer is multipart/related (§10.4.4), one part per frame of each instance with pixel data,
    in the index's order: series by Series Number, instances by Instance Number, frames in order.
    A multi-frame instance is a Multi-frame Image, whose only single-image rendered type is
    image/gif (§8.7.2, Table 8.7.4-1 "Multi-frame Image"); each of its frames is a Single Frame
    Image ("a single frame selected from an Instance of a multi-frame SOP Class", §8.7.2), which is
    how it is sent here. Instances without pixel data (reports, documents: the Text category,
    rendered as text/html, which Aperture does not make) are left out. Each part is drawn exactly as
    the instance's (or frame's) own /rendered with the same query parameters, through the same
    cache, and carries that URL as its Content-Location.

    Parts are drawn one by one in a worker thread as they are sent (a 500-slice study is never in
    memory whole); the first is drawn before the status is sent, so a refusal is still a status
    code. The ETag covers the stored files, the media type, the parameters and the base URL in the
    Content-Locations: a repeat with If-None-Match is a 304 before anything is drawn.
    """
    ask = _ask(request, as_thumbnail=False, media_type=_multipart_media_type(request))
    state = request.app.state
    if_none_match = request.headers.get("if-none-match", "")
    base = public_base(request)

    def start(refs: list[InstanceRef], scope: AccessScope) -> tuple[str, Iterator[tuple[str, bytes]] | None]:
        drawable = [r for r in refs if r.num_frames]
        if not drawable:
            where = f"Series {refs[0].series_uid}" if "series" in request.path_params else f"Study {refs[0].study_uid}"
            raise NotFound(f"{where} has no instances with pixel data to render (reports and documents are not drawn).")
        tag = etag_of_many("rendered", (validator(r) for r in drawable), ask.media_type, str(ask.key), base)
        if if_none_match and not_modified_tag(if_none_match, tag):
            return tag, None
        parts = _rendered_parts(state, scope, ask, drawable, base)
        first = next(parts)  # a refusal before the status is sent
        return tag, chain([first], parts)

    _, answer = await resolve_and(request, start)
    assert answer is not None
    tag, parts = answer
    if parts is None:
        return Response(status_code=304, headers={"ETag": tag})
    boundary = boundary_for(tag)
    headers = {
        "Content-Type": multipart.content_type(boundary, ask.media_type),
        "Cache-Control": "private, max-age=3600",
        "ETag": tag,
    }
    if request.method == "HEAD":
        return StreamingResponse(iter(()), headers=headers)  # the same headers, nothing more drawn
    return StreamingResponse(_multipart_stream(parts, boundary, ask.media_type), headers=headers)


async def _multipart_stream(parts: Iterator[tuple[str, bytes]], boundary: str, media_type: str) -> AsyncIterator[bytes]:
    """The parts as multipart/related: each one after the first is drawn in a worker thread when it is due."""
    first = True
    while (part := next(parts, None) if first else await off_loop(next, parts, None)) is not None:
        location, body = part
        yield multipart.part_header(boundary, media_type, first=first, location=location)
        yield body
        first = False
    yield multipart.closing(boundary)
