"""WADO-RS bulk data (PS3.18 §10.4.1.1.5): one bulk value of an instance, by its BulkDataURI.

Values are read from the stored file by the offset recorded at ingest, or by parsing it where no
offset is reliable (Deflated files, values inside sequences). Encapsulated Pixel Data comes back
as its frames; video as one stream (`video/mp4`, …); an encapsulated document as its own media
type (e.g. `application/pdf`).
"""

from __future__ import annotations

import json
from typing import Any

import pydicom
from pydicom.encaps import generate_fragments
from starlette.requests import Request
from starlette.responses import Response

from aperture.dicom.frames import FrameIndex, read_frames
from aperture.dicomweb.caching import etag, not_modified
from aperture.dicomweb.frames import multipart_response, stored_media_type
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.wado import accept_ranges, resolve, validator
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
    tag = etag(validator(ref), "bulkdata", path_text, single, own_type)
    if (unchanged := not_modified(request, tag)) is not None:
        return unchanged
    if video:  # the whole stream, as one video: PS3.18 §8.7.3.3 video/mpeg2, video/mp4, video/H265
        data = await off_loop(_encapsulated_payload, file_path, offset, length)
        if single:
            return Response(data, media_type=own_type, headers={"ETag": tag})
        return multipart_response([data], own_type, f"{own_type}; transfer-syntax={ref.transfer_syntax}", None, tag)
    if path_text == "7FE00010" and ref.frames is not None and FrameIndex.from_json(ref.frames).encapsulated:
        index = FrameIndex.from_json(ref.frames)
        frames = await off_loop(read_frames, file_path, index, list(range(1, len(index.frames) + 1)))
        media = stored_media_type(ref.transfer_syntax)
        part_type = f"{media}; transfer-syntax={ref.transfer_syntax}"
        return multipart_response(frames, media, part_type, ref.transfer_syntax, tag)
    if offset is not None and length is not None and length != 0xFFFFFFFF:
        data = await off_loop(_read_slice, file_path, offset, length)
    else:
        data = await off_loop(_read_by_parsing, file_path, path_text)
    if single:
        return Response(data, media_type=own_type, headers={"ETag": tag})
    return multipart_response([data], own_type, own_type, None, tag)


def _encapsulated_payload(path: Any, offset: int, length: int) -> bytes:
    """The fragments of encapsulated pixel data joined, without item headers or offset table."""
    value = _read_slice(path, offset, length)
    fragments = generate_fragments(value)
    next(fragments, None)  # the Basic Offset Table item
    return b"".join(fragments)


def _read_slice(path: Any, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


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
