"""Rendered and thumbnail resources (PS3.18 §10.4.1.1.3, §8.3.5): consumer images from DICOM.

The stored file is decoded with pydicom and rendered by `aperture.dicom.render`, honouring
`window`, `viewport` and `quality` query parameters and the header's rescale and VOI LUT. Series
and study thumbnails use the middle instance, which is more representative than the first. Rendered
images are kept in a bounded in-memory cache (`dicomweb.rendered_cache_bytes`).
"""

from __future__ import annotations

import pydicom
from starlette.requests import Request
from starlette.responses import Response

from aperture.dicom.render import RenderError, parse_viewport, parse_window, render, thumbnail
from aperture.dicomweb.caching import etag, not_modified_tag
from aperture.dicomweb.lru import ByteCache
from aperture.dicomweb.media import parse_accept
from aperture.dicomweb.wado import resolve_and, validator
from aperture.errors import InvalidRequest, NotAcceptable, NotFound
from aperture.store.index import InstanceRef

_RENDERED = ("image/jpeg", "image/png", "image/gif")
_RENDER_PARAMS = ("window", "viewport", "quality")


def _media_type(request: Request) -> str:
    for media in parse_accept(request.query_params.get("accept") or request.headers.get("accept")):
        for candidate in _RENDERED:
            if media.covers(candidate):
                return candidate
    raise NotAcceptable(f"Rendered images are available as {', '.join(_RENDERED)}.")


def _render(path: object, frame: int, media_type: str, params: dict[str, str], as_thumbnail: bool) -> bytes:
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise NotFound("This instance has no pixel data to render.")
    try:
        if as_thumbnail and "viewport" not in params:
            return thumbnail(ds, frame=frame, media_type=media_type)
        quality = params.get("quality")
        if quality is not None and (not quality.isdigit() or not 1 <= int(quality) <= 100):
            raise InvalidRequest(f"quality must be an integer from 1 to 100, not {quality!r}.")
        return render(
            ds,
            frame=frame,
            media_type=media_type,
            quality=int(quality) if quality else None,
            window=parse_window(params["window"]) if params.get("window") else None,
            viewport=parse_viewport(params["viewport"]) if params.get("viewport") else None,
        )
    except RenderError as exc:
        message = str(exc)
        if "frame" in message.lower() and "exist" in message.lower():
            raise NotFound(message) from exc
        raise InvalidRequest(message) from exc


async def _respond(request: Request, as_thumbnail: bool) -> Response:
    media_type = _media_type(request)
    frame = 1
    if "frames" in request.path_params:
        text = request.path_params["frames"]
        if not text.isdigit() or int(text) < 1:
            raise InvalidRequest(f"Rendered frames take one 1-based frame number, not {text[:40]!r}.")
        frame = int(text)
    params = dict(request.query_params)
    blobs = request.app.state.blobs
    cache: ByteCache | None = request.app.state.rendered_cache
    if_none_match = request.headers.get("if-none-match", "")

    def draw(refs: list[InstanceRef]) -> tuple[str, bytes | None]:
        with_pixels = [r for r in refs if r.num_frames] or refs  # a report in the series is not a thumbnail
        ref = with_pixels[len(with_pixels) // 2]
        if ref.num_frames == 0:
            raise NotFound(f"Instance {ref.sop_uid} has no pixel data to render.")
        if frame > ref.num_frames:
            raise NotFound(f"Frame {frame} does not exist: instance {ref.sop_uid} has {ref.num_frames} frame(s).")
        key = (ref.blob, frame, media_type, as_thumbnail, *(params.get(k) for k in _RENDER_PARAMS))
        tag = etag(validator(ref), *key[1:])
        if if_none_match and not_modified_tag(if_none_match, tag):
            return tag, None
        body = cache.get(key) if cache is not None else None
        if body is None:
            body = _render(blobs.path(ref.blob), frame, media_type, params, as_thumbnail)
            if cache is not None:
                cache.put(key, body)
        return tag, body

    _, answer = await resolve_and(request, draw)
    assert answer is not None
    tag, body = answer
    if body is None:
        return Response(status_code=304, headers={"ETag": tag})
    return Response(body, media_type=media_type, headers={"Cache-Control": "private, max-age=3600", "ETag": tag})


async def rendered(request: Request) -> Response:
    return await _respond(request, as_thumbnail=False)


async def thumbnail_route(request: Request) -> Response:
    return await _respond(request, as_thumbnail=True)
