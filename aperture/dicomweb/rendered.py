"""Rendered and thumbnail resources (PS3.18 §10.4.1.1.3, §8.3.5): consumer images from DICOM.

`draw_response` is the one drawing path: WADO-RS /rendered and /thumbnail parse their URL into an
`Ask` here, WADO-URI (`aperture.dicomweb.wadouri`) parses its query into one, and both are
answered by it (same cache, same ETags, same pixels). Images are drawn by `aperture.dicom.render`,
honouring the `window`, `viewport` and `quality` query parameters and the header's rescale and
VOI LUT. An uncompressed grayscale frame (most CT, MR, CR and DX) is drawn from its stored bytes,
read by offset, and the instance's DICOM JSON from the index; anything else is decoded from the
file by pydicom. Series and study thumbnails use the middle instance, which is more
representative than the first. Rendered images are kept in a bounded in-memory cache
(`dicomweb.rendered_cache_bytes`). Stored data that cannot be drawn
is 406 when it is valid but not drawable here (no decoder installed, a colour model not handled)
and 422 when its pixel data contradicts its header; never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from starlette.requests import Request
from starlette.responses import Response

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
from aperture.dicomweb.caching import etag, not_modified_tag
from aperture.dicomweb.lru import ByteCache, RecentValues
from aperture.dicomweb.media import parse_accept
from aperture.dicomweb.wado import SMALL_FILE, resolve_and, validator
from aperture.errors import ApertureError, InvalidPixelData, InvalidRequest, NotAcceptable, NotFound
from aperture.store.index import InstanceRef
from aperture.store.scope import AccessScope

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


def _ask(request: Request, as_thumbnail: bool) -> Ask:
    media_type = _media_type(request)
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


def _draw(ask: Ask, ref: InstanceRef, path: Path, header: Callable[[], dict[str, Any]]) -> bytes:
    """Uncompressed grayscale frames straight from their bytes; anything else through pydicom."""
    try:
        if not ask.thumbnail and ref.frames is not None and ref.transfer_syntax in LITTLE_ENDIAN_NATIVE:
            pixels = read_frames(path, FrameIndex.from_json(ref.frames), [ask.frame])[0]
            body = render_native(
                header(),
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
        ds = pydicom.dcmread(path, defer_size=4096 if from_file else None)
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
    blobs = request.app.state.blobs
    index = request.app.state.index
    cache: ByteCache | None = request.app.state.rendered_cache
    parsed_headers: RecentValues[str, dict[str, Any]] = request.app.state.render_headers
    if_none_match = request.headers.get("if-none-match", "")

    def draw(refs: list[InstanceRef], scope: AccessScope) -> tuple[str, bytes | None]:
        with_pixels = [r for r in refs if r.num_frames] or refs  # a report in the series is not a thumbnail
        ref = with_pixels[len(with_pixels) // 2]
        if ref.num_frames == 0:
            raise no_pixels(ref.sop_uid)
        if ask.frame > ref.num_frames:
            raise no_frame(ask.frame, ref.sop_uid, ref.num_frames)
        key = (ref.blob, ask.frame, ask.media_type, ask.thumbnail, *ask.key)
        tag = etag(validator(ref), *key[1:])
        if if_none_match and not_modified_tag(if_none_match, tag):
            return tag, None
        body = cache.get(key) if cache is not None else None
        if body is None:

            def header() -> dict[str, Any]:
                parsed = parsed_headers.get(ref.blob)
                if parsed is None:
                    found = index.metadata(scope, ref.study_uid, ref.series_uid, ref.sop_uid)
                    parsed = json.loads(found[0][0]) if found else {}
                    parsed_headers.put(ref.blob, parsed)  # read only, by every later drawing of this instance
                return parsed

            body = _draw(ask, ref, blobs.path(ref.blob), header)
            if cache is not None:
                cache.put(key, body)
        return tag, body

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
