"""WADO-RS frames (PS3.18 §10.4.1.1.6, media types §8.7.3.3).

Frames are read by seek from the stored file using the frame index computed at ingest. A request
that takes any syntax (`*/*`, `transfer-syntax=*`, OHIF's default) gets the background HTJ2K copy
when there is one, else the stored bytes, labelled with their media type and transfer syntax on
every part (cornerstone reads the syntax from the part header). `application/octet-stream` without
a syntax means uncompressed: compressed frames are decoded to Explicit VR Little Endian. A lossless
compressed syntax named by the client is encoded on request, through a bounded cache. Answers
carry a content ETag and honour one byte range.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pydicom
from starlette.requests import Request
from starlette.responses import Response

from aperture.dicom.encode import ENCODE_TARGETS, encodable_targets, encode_frame
from aperture.dicom.frames import FrameError, FrameIndex, read_frames
from aperture.dicom.htj2k import HTJ2K_LOSSLESS_RPCL, HTJ2K_MEDIA_TYPE
from aperture.dicom.transcode import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    FRAME_MEDIA_TYPES,
    MEDIA_TYPE_ALIASES,
    NATIVE_SYNTAXES,
    TranscodeError,
    can_transcode,
    frame_media_type,
    transcode_frame,
)
from aperture.dicomweb import multipart
from aperture.dicomweb.caching import boundary_for, etag, not_modified, with_range
from aperture.dicomweb.lru import ByteCache
from aperture.dicomweb.media import MediaRange
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.wado import LOOP_READ, accept_ranges, resolve_and, validator
from aperture.errors import InvalidRequest, NotAcceptable, NotFound
from aperture.store.index import InstanceRef
from aperture.store.scope import AccessScope

_OCTET = "application/octet-stream"
_FRAME_LIST = re.compile(r"^\d+(,\d+)*$")
_NATIVE_LE = ("1.2.840.10008.1.2", EXPLICIT_VR_LITTLE_ENDIAN)
_BIG_ENDIAN = "1.2.840.10008.1.2.2"


def parse_frame_list(text: str) -> list[int]:
    if not _FRAME_LIST.match(text):
        raise InvalidRequest(f"Frame list {text[:60]!r} is not valid: use 1-based numbers separated by commas.")
    numbers = [int(n) for n in text.split(",")]
    if any(n < 1 for n in numbers):
        raise InvalidRequest("Frame numbers start at 1.")
    return numbers


def stored_media_type(ts: str) -> str:
    """The PS3.18 media type of frames stored as `ts`; octet-stream for native or unlisted syntaxes."""
    if ts in NATIVE_SYNTAXES:
        return _OCTET
    try:
        return frame_media_type(ts)
    except TranscodeError:
        return _OCTET


_HTJ2K = (HTJ2K_LOSSLESS_RPCL, "1.2.840.10008.1.2.4.201")  # a .202 codestream is a valid .201 one


def negotiate_frames(
    ranges: list[MediaRange], stored_ts: str, indexed: bool, has_copy: bool = False
) -> tuple[bool, str, str]:
    """(multipart, media type, transfer syntax to send) for frames stored as `stored_ts`.

    `indexed`: the stored frames can be read by offset, so they can be sent as stored. Big-endian
    frames are only sent as stored when asked for by name or with `*`; a client that accepts
    anything gets them in little endian, which every decoder reads.
    """
    stored_media = stored_media_type(stored_ts)
    decodable = can_transcode(stored_ts, EXPLICIT_VR_LITTLE_ENDIAN)
    for media in ranges:
        multipart_ok = media.type == "multipart/related"
        part = (media.part_type or _OCTET) if multipart_ok else media.type
        part = MEDIA_TYPE_ALIASES.get(part, part)
        ts = media.transfer_syntax
        if has_copy:  # the HTJ2K copy answers whoever takes any syntax, or HTJ2K by name
            if part in ("*/*", "*", "multipart/*"):
                return True, HTJ2K_MEDIA_TYPE, HTJ2K_LOSSLESS_RPCL
            if part == _OCTET and (ts == "*" or ts in _HTJ2K):
                return multipart_ok, _OCTET, HTJ2K_LOSSLESS_RPCL
            if part == HTJ2K_MEDIA_TYPE and ts in (None, "*", *_HTJ2K):
                return multipart_ok, HTJ2K_MEDIA_TYPE, HTJ2K_LOSSLESS_RPCL
        if part in ("*/*", "*", "multipart/*"):
            if indexed and stored_ts != _BIG_ENDIAN:
                return True, stored_media, stored_ts
            if decodable:
                return True, _OCTET, EXPLICIT_VR_LITTLE_ENDIAN
            continue
        if part == _OCTET:
            if ts == "*":  # the stored bytes, whatever their encoding; the part header names it
                if indexed:
                    return multipart_ok, _OCTET, stored_ts
                if decodable:
                    return multipart_ok, _OCTET, EXPLICIT_VR_LITTLE_ENDIAN
                continue
            wanted = ts or EXPLICIT_VR_LITTLE_ENDIAN
            if wanted in _NATIVE_LE and (stored_ts in _NATIVE_LE or decodable):
                return multipart_ok, _OCTET, wanted
            if wanted == stored_ts and indexed:
                return multipart_ok, _OCTET, stored_ts
            if wanted in ENCODE_TARGETS and decodable:
                return multipart_ok, _OCTET, wanted
            continue
        if indexed and part == stored_media and ts in (None, "*", stored_ts):
            return multipart_ok, stored_media, stored_ts
        target = _encode_target(part, ts)
        if target is not None and decodable:  # a lossless syntax by name: encoded on request
            return multipart_ok, part if part != _OCTET else _OCTET, target
    offers = []
    if indexed:
        offers.append(f'multipart/related; type="{stored_media}"; transfer-syntax={stored_ts}')
    if decodable:
        offers.append(f'multipart/related; type="{_OCTET}"; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}')
    raise NotAcceptable(
        f"Frames of this instance are stored as {stored_ts} and available as "
        + (" or ".join(offers) if offers else "nothing: they can be neither read as stored nor decoded here")
        + "."
    )


def _encode_target(part: str, ts: str | None) -> str | None:
    """The lossless syntax a media range names, when Aperture could encode frames into it."""
    if part == _OCTET:
        return ts if ts in ENCODE_TARGETS else None
    for target in ENCODE_TARGETS:
        if FRAME_MEDIA_TYPES.get(target) == part and ts in (None, target):
            return target
    return None


def _encoded(ref: InstanceRef, path: Any, numbers: list[int], target: str, cache: ByteCache | None) -> list[bytes]:
    """Frames encoded on request in a lossless syntax, through the bounded frame cache."""
    keys = [(ref.blob, number, target) for number in numbers]
    cached = [cache.get(key) if cache is not None else None for key in keys]
    if all(body is not None for body in cached):
        return [body for body in cached if body is not None]
    ds = pydicom.dcmread(path)
    if target not in encodable_targets(ds, ref.transfer_syntax):
        raise NotAcceptable(
            f"Frames of this instance ({ref.transfer_syntax}) cannot be encoded losslessly as {target}; "
            f"available by request: {', '.join(encodable_targets(ds, ref.transfer_syntax)) or 'none'}."
        )
    out = []
    for key, number, body in zip(keys, numbers, cached, strict=True):
        if body is None:
            body = encode_frame(np.asarray(pydicom.pixels.pixel_array(ds, index=number - 1)), target, ds)
            if cache is not None:
                cache.put(key, body)
        out.append(body)
    return out


def _frames(
    ref: InstanceRef, path: Any, numbers: list[int], target: str, blobs: Any = None, cache: ByteCache | None = None
) -> list[bytes]:
    if any(n > ref.num_frames for n in numbers):
        raise NotFound(f"Frame {max(numbers)} does not exist: this instance has {ref.num_frames} frame(s).")
    if (
        target in ENCODE_TARGETS
        and target != ref.transfer_syntax
        and not (target == HTJ2K_LOSSLESS_RPCL and ref.copy_frames is not None)
    ):
        return _encoded(ref, path, numbers, target, cache)
    if target == HTJ2K_LOSSLESS_RPCL and ref.copy_frames is not None and ref.transfer_syntax != target:
        try:
            return read_frames(blobs.path(ref.copy_blob), FrameIndex.from_json(ref.copy_frames), numbers)
        except FrameError as exc:
            raise NotFound(str(exc)) from exc
    if ref.frames is None:
        return _frames_by_decoding(ref, path, numbers, target)
    index = FrameIndex.from_json(ref.frames)
    try:
        frames = read_frames(path, index, numbers)
    except FrameError as exc:
        raise NotFound(str(exc)) from exc
    if target == ref.transfer_syntax or (target in _NATIVE_LE and ref.transfer_syntax in _NATIVE_LE):
        return frames
    header = pydicom.dcmread(path, stop_before_pixels=True)
    try:
        return [transcode_frame(f, source_ts=ref.transfer_syntax, target_ts=target, dataset=header) for f in frames]
    except TranscodeError as exc:
        raise NotAcceptable(str(exc)) from exc


def _frames_by_decoding(ref: InstanceRef, path: Any, numbers: list[int], target: str) -> list[bytes]:
    """Slow path for files whose frames cannot be located by offset (deflated, bit-packed)."""
    if target not in _NATIVE_LE:
        raise NotAcceptable(
            f"Frames of this instance ({ref.transfer_syntax}) can only be sent decoded: ask for "
            f'multipart/related; type="{_OCTET}"; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}.'
        )
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise NotFound(f"Instance {ref.sop_uid} has no pixel data.")
    total = int(ds.get("NumberOfFrames", 1) or 1)
    out = []
    for number in numbers:
        if number > total:
            raise NotFound(f"Frame {number} does not exist: this instance has {total} frame(s).")
        array = pydicom.pixels.pixel_array(ds, index=number - 1, raw=True)
        out.append(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return out


async def retrieve_frames(request: Request) -> Response:
    numbers = parse_frame_list(request.path_params["frames"])
    ranges = accept_ranges(request)
    blobs = request.app.state.blobs
    cache: ByteCache | None = request.app.state.frame_cache

    def read(refs: list[InstanceRef], _scope: AccessScope) -> tuple[bool, str, str, str, list[bytes] | None]:
        ref = refs[0]
        if ref.num_frames == 0:
            raise NotFound(f"Instance {ref.sop_uid} has no pixel data, so it has no frames.")
        is_multipart, media, ts = negotiate_frames(
            ranges, ref.transfer_syntax, ref.frames is not None, ref.copy_frames is not None
        )
        copy = ref.copy_blob if ts == HTJ2K_LOSSLESS_RPCL and ref.transfer_syntax != ts else None
        tag = etag(validator(ref), "frames", ",".join(map(str, numbers)), media, ts, is_multipart, copy)
        if request.headers.get("if-none-match"):
            return is_multipart, media, ts, tag, None  # the caller may answer 304 without reading
        return is_multipart, media, ts, tag, _frames(ref, blobs.path(ref.blob), numbers, ts, blobs, cache)

    def small(refs: list[InstanceRef]) -> bool:  # a read of stored bytes, no decoding: fine on the loop
        ref = refs[0]
        if ref.size > LOOP_READ or ref.frames is None or ref.num_frames == 0:
            return False
        try:
            _, _, ts = negotiate_frames(ranges, ref.transfer_syntax, True, ref.copy_frames is not None)
        except NotAcceptable:  # `read` raises it again, where it runs
            return False
        return ts == ref.transfer_syntax

    refs, answer = await resolve_and(request, read, small)
    assert answer is not None
    is_multipart, media, ts, tag, frames = answer
    if (unchanged := not_modified(request, tag)) is not None:
        return unchanged
    if frames is None:
        frames = await off_loop(_frames, refs[0], blobs.path(refs[0].blob), numbers, ts, blobs, cache)
    part_type = f"{media}; transfer-syntax={ts}"
    if not is_multipart:
        if len(frames) != 1:
            raise NotAcceptable("Several frames need a multipart/related Accept; a single part holds one frame.")
        return with_range(request, frames[0], {"ETag": tag, "Content-Type": part_type})
    response = multipart_response(frames, media, part_type, ts, tag)
    return with_range(request, response.body, {k: v for k, v in response.headers.items() if k != "content-length"})


def multipart_response(bodies: list[bytes], media: str, part_type: str, ts: str | None, tag: str) -> Response:
    """One multipart/related answer, its boundary fixed by the ETag so repeats are byte-identical."""
    boundary = boundary_for(tag)
    chunks: list[bytes] = []
    for number, body in enumerate(bodies):
        chunks.append(multipart.part_header(boundary, part_type, first=number == 0))
        chunks.append(body)
    chunks.append(multipart.closing(boundary))
    headers = {"Content-Type": multipart.content_type(boundary, media, ts), "ETag": tag}
    return Response(b"".join(chunks), headers=headers)
