"""WADO-RS bulk data (PS3.18 §10.4.1.1.5): one bulk value of an instance, by its BulkDataURI.

Values are read from the stored file by the offset recorded at ingest and streamed in pieces (a
value, a frame, a video fragment at a time), or read by parsing the file where no offset is
reliable (Deflated files, values inside sequences). Encapsulated Pixel Data comes back
as its frames; video as one stream (`video/mp4`, …); an encapsulated document as its own media
type (e.g. `application/pdf`). In a multipart answer, a value's part names its BulkDataURI in
Content-Location, and each frame's part its frame URL (PS3.18 §8.6.1.2, Table 8.6.1-1).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pydicom
from pydicom.encaps import generate_fragments
from starlette.requests import Request
from starlette.responses import Response

from aperture.dicom.frames import FrameIndex, read_frames
from aperture.dicomweb import multipart
from aperture.dicomweb.caching import boundary_for, etag, not_modified
from aperture.dicomweb.frames import frames_url, multipart_response, multipart_stream, stored_media_type
from aperture.dicomweb.streaming import StreamingResponse
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.urls import public_base
from aperture.dicomweb.wado import CHUNK, LOOP_READ, accept_ranges, resolve, validator
from aperture.errors import NotFound

_OCTET = "application/octet-stream"


async def retrieve_bulkdata(request: Request) -> Response:
    refs, *_ = await resolve(request)
    ref = refs[0]
    path_text = request.path_params["path"].strip("/").upper()
    bulk = json.loads(ref.bulk)
    if path_text not in bulk:
        raise NotFound(f"Instance {ref.sop_uid} has no bulk data element {path_text!r}.")
    vr, offset, length, *rest = bulk[path_text]
    file_path = request.app.state.blobs.path(ref.blob)
    ranges = accept_ranges(request)
    video = path_text == "7FE00010" and stored_media_type(ref.transfer_syntax).startswith("video/")
    own_type = stored_media_type(ref.transfer_syntax) if video else (rest[0] if rest and rest[0] else _OCTET)
    first = ranges[0] if ranges else None
    single = (
        first is not None
        and first.type != "multipart/related"
        and (first.type == _OCTET or first.covers(own_type) or (video and first.type.startswith("video/")))
    )
    base = None if single else public_base(request)  # in the parts' Content-Location, so in the tag
    tag = etag(validator(ref), "bulkdata", path_text, single, own_type, base)
    if (unchanged := not_modified(request, tag)) is not None:
        return unchanged
    here = f"{base}/studies/{ref.study_uid}/series/{ref.series_uid}/instances/{ref.sop_uid}/bulkdata/{path_text}"
    # `here` (the BulkDataURI, as /metadata writes it) is only used by the multipart answers below
    if video:  # the whole stream, as one video: PS3.18 §8.7.3.3 video/mpeg2, video/mp4, video/H265
        pieces = _encapsulated_payload(file_path, offset)
        if single:
            return StreamingResponse(_off_loop_pieces(pieces), media_type=own_type, headers={"ETag": tag})
        part_type = f"{own_type}; transfer-syntax={ref.transfer_syntax}"
        return _one_part(pieces, own_type, part_type, tag, here)
    if path_text == "7FE00010" and ref.frames is not None and FrameIndex.from_json(ref.frames).encapsulated:
        index = FrameIndex.from_json(ref.frames)
        media = stored_media_type(ref.transfer_syntax)
        part_type = f"{media}; transfer-syntax={ref.transfer_syntax}"
        numbers = range(1, len(index.frames) + 1)
        prefix = frames_url(str(base), ref)
        locations = [prefix + str(number) for number in numbers]  # each part is one frame: name it
        if ref.size <= LOOP_READ:  # a small file: its frames in one read and one answer
            frames = await off_loop(read_frames, file_path, index, list(numbers))
            return multipart_response(frames, media, part_type, ref.transfer_syntax, tag, locations)
        each = _each_frame(file_path, index)
        head: bytes = await off_loop(next, each, b"")
        return multipart_stream(head, each, media, part_type, ref.transfer_syntax, tag, locations)
    if offset is not None and length is not None and length != 0xFFFFFFFF:
        if length <= CHUNK:  # one piece: read whole and answered as before streaming existed
            data = await off_loop(_read_value, file_path, offset, length)
        elif single:
            return StreamingResponse(
                _off_loop_pieces(_read_slice(file_path, offset, length)),
                media_type=own_type,
                headers={"ETag": tag, "Content-Length": str(length)},
            )
        else:
            return _one_part(_read_slice(file_path, offset, length), own_type, own_type, tag, here)
    else:
        data = await off_loop(_read_by_parsing, file_path, path_text)  # a value in a sequence, or deflated
    if single:
        return Response(data, media_type=own_type, headers={"ETag": tag})
    return multipart_response([data], own_type, own_type, None, tag, [here])


def _one_part(pieces: Iterator[bytes], media: str, part_type: str, tag: str, location: str) -> StreamingResponse:
    """A one-part multipart/related answer whose body is sent piece by piece, as read."""
    boundary = boundary_for(tag)

    async def body() -> AsyncIterator[bytes]:
        yield multipart.part_header(boundary, part_type, first=True, location=location)
        async for piece in _off_loop_pieces(pieces):
            yield piece
        yield multipart.closing(boundary)

    return StreamingResponse(body(), headers={"Content-Type": multipart.content_type(boundary, media), "ETag": tag})


async def _off_loop_pieces(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    while (piece := await off_loop(next, pieces, None)) is not None:
        yield piece


def _each_frame(path: Any, index: FrameIndex) -> Iterator[bytes]:
    for number in range(1, len(index.frames) + 1):
        yield read_frames(path, index, (number,))[0]


def _encapsulated_payload(path: Any, offset: int) -> Iterator[bytes]:
    """The fragments of encapsulated pixel data one by one, without item headers or offset table."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        fragments = generate_fragments(handle)
        next(fragments, None)  # the Basic Offset Table item
        yield from fragments


def _read_value(path: Any, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def _read_slice(path: Any, offset: int, length: int) -> Iterator[bytes]:
    """The bytes of one stored value in pieces of at most CHUNK."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        while length > 0:
            piece = handle.read(min(CHUNK, length))
            if not piece:
                raise OSError(f"Stored file {path} ends inside a bulk data value; it was truncated after ingest")
            length -= len(piece)
            yield piece


def _read_by_parsing(path: Any, path_text: str) -> bytes:
    node: Any = pydicom.dcmread(path)
    parts = path_text.split("/")
    for position, part in enumerate(parts):
        if position % 2 == 0:
            node = node[int(part, 16)].value
        else:
            node = node[int(part)]
    if isinstance(node, bytes):
        return node
    if isinstance(node, str):
        return node.encode("latin-1", "replace")  # a malformed text value kept as bulk data
    return bytes(node)
