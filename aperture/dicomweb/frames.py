"""WADO-RS frames (PS3.18 §10.4.1.1.6, media types §8.7.3.3).

Frames are read by seek from the stored file using the frame index computed at ingest. A request
that takes any syntax (`*/*`, `transfer-syntax=*`, OHIF's default) gets the background HTJ2K copy
when there is one, else the stored bytes, labelled with their media type and transfer syntax on
every part (cornerstone reads the syntax from the part header), and each part names its frame's own
URL in Content-Location (PS3.18 §8.6.1.2). `application/octet-stream` without
a syntax means uncompressed: compressed frames are decoded to Explicit VR Little Endian. A lossless
compressed syntax named by the client is encoded on request, through a bounded cache. Answers
carry a content ETag and honour one byte range. A frame that must be decoded but whose pixel data
contradicts its header is 422; a syntax that cannot be produced (no decoder, an encoder that
refuses the layout) is 406.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import numpy as np
import pydicom
from starlette.requests import Request
from starlette.responses import Response

from aperture.dicom.encode import ENCODE_TARGETS, EncodeError, encodable_targets, encode_frame
from aperture.dicom.frames import FrameError, FrameIndex, read_frames
from aperture.dicom.htj2k import HTJ2K_LOSSLESS_RPCL, HTJ2K_MEDIA_TYPE
from aperture.dicom.transcode import (
    DECODE_FAILURES,
    EXPLICIT_VR_LITTLE_ENDIAN,
    FRAME_MEDIA_TYPES,
    MEDIA_TYPE_ALIASES,
    NATIVE_SYNTAXES,
    FrameDecodeError,
    TranscodeError,
    can_transcode,
    frame_media_type,
    pixel_defaults,
    transcode_frame,
)
from aperture.dicomweb import multipart
from aperture.dicomweb.caching import boundary_for, etag, not_modified, with_range
from aperture.dicomweb.lru import ByteCache
from aperture.dicomweb.media import MediaRange
from aperture.dicomweb.streaming import StreamingResponse
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.urls import public_base
from aperture.dicomweb.wado import LOOP_READ, accept_ranges, resolve_and, validator
from aperture.errors import InvalidPixelData, InvalidRequest, NotAcceptable, NotFound
from aperture.store.index import InstanceRef
from aperture.store.scope import AccessScope

_OCTET = "application/octet-stream"
_FRAME_LIST = re.compile(r"[0-9]{1,10}(,[0-9]{1,10})*", re.ASCII)  # 10 digits hold any frame number
_NATIVE_LE = ("1.2.840.10008.1.2", EXPLICIT_VR_LITTLE_ENDIAN)
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"


def parse_frame_list(text: str) -> list[int]:
    """The 1-based frame numbers of a frames URL, each at most once.

    Refusing repeats bounds a list by the instance's frame count (a number past it is a 404), so a
    whole multi-frame instance can still be asked for in one list, but not one frame a thousand
    times over.
    """
    if not _FRAME_LIST.fullmatch(text):
        raise InvalidRequest(
            f"Frame list {text[:60]!r} is not valid: use 1-based numbers of at most 10 digits separated by commas."
        )
    numbers = [int(n) for n in text.split(",")]
    if any(n < 1 for n in numbers):
        raise InvalidRequest("Frame numbers start at 1.")
    if len(numbers) > 1 and len(set(numbers)) != len(numbers):
        seen: set[int] = set()
        repeated = next(n for n in numbers if n in seen or seen.add(n))  # type: ignore[func-returns-value]
        raise InvalidRequest(f"Frame {repeated} is listed more than once: ask for each frame once per request.")
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


_ENCODE_FAILURES: tuple[type[Exception], ...] = (EncodeError, *DECODE_FAILURES)


def _encoded(ref: InstanceRef, path: Any, numbers: list[int], target: str, cache: ByteCache | None) -> Iterator[bytes]:
    """Frames encoded on request in a lossless syntax, through the bounded frame cache."""
    keys = [(ref.blob, number, target) for number in numbers]
    cached = [cache.get(key) if cache is not None else None for key in keys]
    ds = None
    for key, number, body in zip(keys, numbers, cached, strict=True):
        if body is None:
            if ds is None:
                # Pixel Data is left in the file: each frame is read from it alone (a whole 200 MB
                # instance in memory was the worst single request). Deflated data must be inflated whole.
                deflated = ref.transfer_syntax == _DEFLATED
                ds = pydicom.dcmread(path, defer_size=None if deflated else 4096)
                source = ds if deflated else path
                if target not in encodable_targets(ds, ref.transfer_syntax):
                    raise NotAcceptable(
                        f"Frames of this instance ({ref.transfer_syntax}) cannot be encoded losslessly as {target}; "
                        f"available by request: {', '.join(encodable_targets(ds, ref.transfer_syntax)) or 'none'}."
                    )
            pixels = _decoded(source, number, ds)
            try:
                body = encode_frame(pixels, target, ds)
            except _ENCODE_FAILURES as exc:  # the encoder refuses this pixel layout
                raise NotAcceptable(
                    f"Frame {number} cannot be encoded as {target}: {exc}. "
                    f"Ask for transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN} or transfer-syntax=* instead."
                ) from exc
            if cache is not None:
                cache.put(key, body)
        yield body


def frame_bodies(
    ref: InstanceRef, path: Any, numbers: list[int], target: str, blobs: Any = None, cache: ByteCache | None = None
) -> Iterator[bytes]:
    """The frames `numbers` in syntax `target`, one at a time: a long list never sits in memory whole.

    A frame past the last is refused before the first frame is given, and a syntax that cannot be
    produced shows on the first frame, so callers take the first one before answering. A later
    frame that fails to convert (data that differs from frame to frame) can only end the answer
    early: its status has been sent.
    """
    if any(n > ref.num_frames for n in numbers):
        raise NotFound(f"Frame {max(numbers)} does not exist: this instance has {ref.num_frames} frame(s).")
    if (
        target in ENCODE_TARGETS
        and target != ref.transfer_syntax
        and not (target == HTJ2K_LOSSLESS_RPCL and ref.copy_frames is not None)
    ):
        yield from _encoded(ref, path, numbers, target, cache)
        return
    if target == HTJ2K_LOSSLESS_RPCL and ref.copy_frames is not None and ref.transfer_syntax != target:
        yield from _stored(blobs.path(ref.copy_blob), FrameIndex.from_json(ref.copy_frames), numbers)
        return
    if ref.frames is None:
        yield from _frames_by_decoding(ref, path, numbers, target)
        return
    frames = _stored(path, FrameIndex.from_json(ref.frames), numbers)
    if target == ref.transfer_syntax or (target in _NATIVE_LE and ref.transfer_syntax in _NATIVE_LE):
        yield from frames
        return
    header = pydicom.dcmread(path, stop_before_pixels=True)
    for frame in frames:
        try:
            yield transcode_frame(frame, source_ts=ref.transfer_syntax, target_ts=target, dataset=header)
        except FrameDecodeError as exc:
            raise InvalidPixelData(f"{exc}. Retrieve it with transfer-syntax=* to inspect it.") from exc
        except TranscodeError as exc:
            raise NotAcceptable(str(exc)) from exc


def _stored(path: Any, index: FrameIndex, numbers: list[int]) -> Iterator[bytes]:
    for number in numbers:
        try:
            (frame,) = read_frames(path, index, (number,))
        except FrameError as exc:
            raise NotFound(str(exc)) from exc
        yield frame


def _frames_by_decoding(ref: InstanceRef, path: Any, numbers: list[int], target: str) -> Iterator[bytes]:
    """Slow path for files whose frames cannot be located by offset (deflated, bit-packed, float)."""
    if target not in _NATIVE_LE:
        raise NotAcceptable(
            f"Frames of this instance ({ref.transfer_syntax}) can only be sent decoded: ask for "
            f'multipart/related; type="{_OCTET}"; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}.'
        )
    ds = pydicom.dcmread(path)
    if not any(keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise NotFound(f"Instance {ref.sop_uid} has no pixel data.")
    if max(numbers) > ref.num_frames:
        raise NotFound(f"Frame {max(numbers)} does not exist: this instance has {ref.num_frames} frame(s).")
    for number in numbers:
        array = _decoded(ds, number, ds, raw=True)
        yield array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _decoded(source: Any, number: int, ds: pydicom.Dataset, *, raw: bool = False) -> np.ndarray:
    """Frame `number` decoded by pydicom; pixel data its header does not describe is a 422 that says why."""
    try:
        return np.asarray(pydicom.pixels.pixel_array(source, index=number - 1, raw=raw, **pixel_defaults(ds)))
    except DECODE_FAILURES as exc:
        raise InvalidPixelData(
            f"Frame {number} cannot be decoded as the instance's Image Pixel attributes describe: {exc}. "
            "Retrieve it with transfer-syntax=* to inspect it."
        ) from exc


_NO_MORE: Iterator[bytes] = iter(())


def first_and_rest(
    ref: InstanceRef, path: Any, numbers: list[int], target: str, blobs: Any = None, cache: ByteCache | None = None
) -> tuple[bytes, Iterator[bytes]]:
    """The first frame, made now so that a refusal comes before the answer starts, and the rest to come.

    One frame as stored, the common request, is read straight away, without the iterator.
    """
    if len(numbers) == 1 and ref.frames is not None and target == ref.transfer_syntax and numbers[0] <= ref.num_frames:
        try:
            return read_frames(path, FrameIndex.from_json(ref.frames), numbers)[0], _NO_MORE
        except FrameError as exc:
            raise NotFound(str(exc)) from exc
    bodies = frame_bodies(ref, path, numbers, target, blobs, cache)
    return next(bodies), bodies


async def retrieve_frames(request: Request) -> Response:
    numbers = parse_frame_list(request.path_params["frames"])
    ranges = accept_ranges(request)
    blobs = request.app.state.blobs
    cache: ByteCache | None = request.app.state.frame_cache

    def read(
        refs: list[InstanceRef], _scope: AccessScope
    ) -> tuple[bool, str, str, str, tuple[bytes, Iterator[bytes]] | None]:
        ref = refs[0]
        if ref.num_frames == 0:
            raise NotFound(f"Instance {ref.sop_uid} has no pixel data (or Number of Frames 0), so it has no frames.")
        is_multipart, media, ts = negotiate_frames(
            ranges, ref.transfer_syntax, ref.frames is not None, ref.copy_frames is not None
        )
        copy = ref.copy_blob if ts == HTJ2K_LOSSLESS_RPCL and ref.transfer_syntax != ts else None
        base = public_base(request) if is_multipart else None  # in the parts' Content-Location, so in the tag
        tag = etag(validator(ref), "frames", ",".join(map(str, numbers)), media, ts, is_multipart, copy, base)
        if request.headers.get("if-none-match"):
            return is_multipart, media, ts, tag, None  # the caller may answer 304 without reading
        return is_multipart, media, ts, tag, first_and_rest(ref, blobs.path(ref.blob), numbers, ts, blobs, cache)

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
    if not is_multipart and len(numbers) != 1:
        raise NotAcceptable("Several frames need a multipart/related Accept; a single part holds one frame.")
    if frames is None:
        frames = await off_loop(first_and_rest, refs[0], blobs.path(refs[0].blob), numbers, ts, blobs, cache)
    first, rest = frames
    part_type = f"{media}; transfer-syntax={ts}"
    if not is_multipart:
        return with_range(request, first, {"ETag": tag, "Content-Type": part_type})
    prefix = frames_url(public_base(request), refs[0])
    locations = [prefix + str(number) for number in numbers]
    if len(numbers) == 1:
        bodies = [first]
    elif refs[0].size <= LOOP_READ and ts == refs[0].transfer_syntax:
        bodies = [first, *rest]  # stored bytes of a file of at most 1 MB: one answer, as cheap as a read
    else:  # streamed part by part; a byte range is only honoured on answers made whole
        return multipart_stream(first, rest, media, part_type, ts, tag, locations)
    response = multipart_response(bodies, media, part_type, ts, tag, locations)
    return with_range(request, response.body, {k: v for k, v in response.headers.items() if k != "content-length"})


def frames_url(base: str, ref: InstanceRef) -> str:
    """The URL of the instance's frames up to the frame number: `…/frames/` (PS3.18 §10.4.1.1.1)."""
    return f"{base}/studies/{ref.study_uid}/series/{ref.series_uid}/instances/{ref.sop_uid}/frames/"


def multipart_response(
    bodies: list[bytes], media: str, part_type: str, ts: str | None, tag: str, locations: list[str]
) -> Response:
    """A multipart/related answer made whole, its boundary fixed by the ETag so repeats are byte-identical.

    `locations[i]` is the Content-Location of part i: the URL of what it holds. The ETag must
    cover them (they hold the public base URL). Only for what is small or in memory already (one
    frame, the frames of a file of at most `LOOP_READ`, one bulk value); anything larger goes
    through `multipart_stream`, which holds one part at a time.
    """
    boundary = boundary_for(tag)
    chunks: list[bytes] = []
    for number, (body, location) in enumerate(zip(bodies, locations, strict=True)):
        chunks.append(multipart.part_header(boundary, part_type, first=number == 0, location=location))
        chunks.append(body)
    chunks.append(multipart.closing(boundary))
    headers = {"Content-Type": multipart.content_type(boundary, media, ts), "ETag": tag}
    return Response(b"".join(chunks), headers=headers)


def multipart_stream(
    first: bytes, rest: Iterator[bytes], media: str, part_type: str, ts: str | None, tag: str, locations: Iterable[str]
) -> StreamingResponse:
    """A multipart/related answer sent part by part: each further body is made in a worker thread when sent.

    `locations` gives each part's Content-Location, in order, as in `multipart_response`."""
    boundary = boundary_for(tag)
    where = iter(locations)

    async def parts() -> AsyncIterator[bytes]:
        yield multipart.part_header(boundary, part_type, first=True, location=next(where))
        yield first
        while (body := await off_loop(next, rest, None)) is not None:
            yield multipart.part_header(boundary, part_type, first=False, location=next(where))
            yield body
        yield multipart.closing(boundary)

    headers = {"Content-Type": multipart.content_type(boundary, media, ts), "ETag": tag}
    return StreamingResponse(parts(), headers=headers)
