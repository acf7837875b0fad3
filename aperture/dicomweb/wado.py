"""WADO-RS: Retrieve Study / Series / Instance, their metadata, and study zips (PS3.18 §10.4).

Instances stream from their stored files in large chunks, so a 150 MB study never sits in memory;
with `transfer-syntax=*` the stored bytes are sent untouched, and without a transfer-syntax the
PS3.18 default applies (see `target_syntax`). `/metadata` is
answered from the DICOM JSON computed at ingest: the database rows are joined into one array and
the public base URL is put in, no DICOM file is opened. DICOM XML, when asked for, is written from
those same documents (`aperture.dicomweb.xmlparts`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from aperture.auth.requirements import READ_IMAGING, authorize
from aperture.dicom.transcode import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    LOSSY_SYNTAXES,
    TranscodeError,
    available_targets,
    can_transcode,
    transcode_file,
)
from aperture.dicomweb import multipart
from aperture.dicomweb.caching import boundary_for, etag_of_many, json_response, not_modified
from aperture.dicomweb.media import (
    DICOM_XML,
    MediaRange,
    MetadataFormat,
    accepts,
    choose,
    metadata_format,
    parse_accept,
)
from aperture.dicomweb.state import index_of
from aperture.dicomweb.streaming import StreamingResponse
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.urls import optional_uid, path_uid, public_base, with_base
from aperture.dicomweb.xmlparts import xml_metadata_documents, xml_multipart
from aperture.errors import NotAcceptable, NotFound
from aperture.media.zipsink import ZipSink
from aperture.store.index import InstanceRef
from aperture.store.scope import AccessScope

CHUNK = 1 << 20
SMALL_FILE = 16 << 20  # instances up to this size are read whole and sent in one piece
# Reads up to this size may run on the event loop: from the page cache a 1 MB read takes about
# 0.1 ms, less than a worker-thread trip; measured on a 525 KB CT instance, a retrieve cost 140 µs
# less CPU this way. (A read from disk blocks longer: nginx makes the same trade by default.)
LOOP_READ = 1 << 20
T = TypeVar("T")
_DICOM = "application/dicom"
_ZIP = "application/zip"
_JSON = MetadataFormat.JSON


def accept_ranges(request: Request) -> list[MediaRange]:
    return parse_accept(request.query_params.get("accept") or request.headers.get("accept"))


def not_found(study: str, series: str | None, instance: str | None) -> NotFound:
    if instance:
        return NotFound(f"Instance {instance} of series {series} in study {study} is not on this server.")
    if series:
        return NotFound(f"Series {series} in study {study} is not on this server.")
    return NotFound(f"Study {study} is not on this server.")


async def resolve(request: Request) -> tuple[list[InstanceRef], str, str | None, str | None]:
    """Authorize, then look up the instances the URL names; 404 when there are none."""
    refs, _ = await resolve_and(request, None)
    return refs, *_uids(request)


def _uids(request: Request) -> tuple[str, str | None, str | None]:
    return path_uid(request, "study"), optional_uid(request, "series"), optional_uid(request, "instance")


async def resolve_and(
    request: Request,
    then: Callable[[list[InstanceRef], AccessScope], T] | None,
    small: Callable[[list[InstanceRef]], bool] | None = None,
    uids: tuple[str, str | None, str | None] | None = None,
) -> tuple[list[InstanceRef], T | None]:
    """Authorize, look up the instances, and run `then` on them (and the scope): at most one worker-thread trip.

    The instances are the ones the URL path names, or `uids` (study, series, instance) when the
    caller has them from elsewhere (WADO-URI's query). On small requests (one frame, one
    instance) the hop to a worker thread costs as much as the work, so with an embedded index
    (`Index.answers_inline`) a URL that names an instance is looked up on the event loop (an
    indexed row or two), and `then` runs there too when `small(refs)` says it is a short read
    (`LOOP_READ`). Everything else makes one trip: lookup and `then` together.
    """
    study, series, instance = uids if uids is not None else _uids(request)
    scope = await authorize(request, READ_IMAGING)
    index = index_of(request)

    def lookup() -> list[InstanceRef]:
        refs: list[InstanceRef] = index.instance_refs(scope, study, series, instance)
        if not refs:
            raise not_found(study, series, instance)
        return refs

    if instance is None or not index.answers_inline:

        def work() -> tuple[list[InstanceRef], T | None]:
            refs = lookup()
            return refs, then(refs, scope) if then is not None else None

        return await off_loop(work)
    refs = lookup()
    if then is None:
        return refs, None
    if small is not None and small(refs):
        return refs, then(refs, scope)
    return refs, await off_loop(then, refs, scope)


async def retrieve(request: Request) -> Response:
    ranges = accept_ranges(request)
    single_instance = "instance" in request.path_params
    wants_zip = any(r.type == _ZIP for r in ranges[:1]) or (
        not any(r.type == "multipart/related" or r.type == _DICOM for r in ranges)
        and accepts(ranges, _ZIP)
        and not any(r.type in ("*/*", "*") for r in ranges)
    )
    blobs = request.app.state.blobs

    small_instance = read_small_instance(blobs)
    refs, prefetched = await resolve_and(
        request, small_instance if single_instance and not wants_zip else None, lambda refs: refs[0].size <= LOOP_READ
    )
    study, series, instance = _uids(request)
    if wants_zip:
        name = (instance or series or study) + ".zip"
        return StreamingResponse(
            _zip_stream(refs, blobs),
            media_type=_ZIP,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    choice = choose(ranges, part_types=(_DICOM,), single=single_instance, what="This resource")
    targets = [target_syntax(ref.transfer_syntax, choice.transfer_syntax) for ref in refs]
    missing = [r for r, t in zip(refs, targets, strict=True) if not can_transcode(r.transfer_syntax, t)]
    if missing:
        available = sorted(set.intersection(*(set(available_targets(r.transfer_syntax)) for r in refs)))
        raise NotAcceptable(
            f"Transfer syntax {choice.transfer_syntax} cannot be produced for {len(missing)} of {len(refs)} "
            f"instance(s) (stored as {missing[0].transfer_syntax}). Available for all: "
            f"{', '.join(available) or 'none'}; or ask for transfer-syntax=* to get the stored bytes."
        )
    base = public_base(request) if choice.multipart else None  # in the parts' Content-Location, so in the tag
    changed = [(r, t) for r, t in zip(refs, targets, strict=True) if r.transfer_syntax != t]
    digests = not changed and wants_sha256(request.headers.get("want-repr-digest"))
    tag = etag_of_many(
        "instances", (validator(r) for r in refs), *targets, choice.multipart, base, *(["sha-256"] if digests else [])
    )
    if (unchanged := not_modified(request, tag)) is not None:
        return unchanged
    headers: dict[str, str] = {"ETag": tag}
    if not choice.multipart:
        media = f"{_DICOM}; transfer-syntax={targets[0]}"
        if digests:
            digest = _recorded_digest(refs[0])
            if digest is None:
                digest = (
                    repr_digest(prefetched)
                    if prefetched is not None
                    else await off_loop(file_repr_digest, blobs.path(refs[0].blob))
                )
            headers["Repr-Digest"] = digest
        return await instance_response(refs[0], targets[0], prefetched, blobs, media, headers)
    if prefetched is not None and targets[0] == refs[0].transfer_syntax:
        media = f"{_DICOM}; transfer-syntax={targets[0]}"
        boundary = boundary_for(tag)
        where = instance_url(str(base), refs[0])
        digest = (_recorded_digest(refs[0]) or repr_digest(prefetched)) if digests else None
        body = multipart.part_header(boundary, media, first=True, location=where, digest=digest) + prefetched
        body += multipart.closing(boundary)
        headers["Content-Type"] = multipart.content_type(boundary, _DICOM, None)
        return Response(body, headers=headers)
    boundary = boundary_for(tag)
    if changed:  # fail with a status, before streaming, when the decoder cannot do it
        await off_loop(_transcode, blobs.path(changed[0][0].blob), changed[0][1])
    else:
        placeholder = _DIGEST_PLACEHOLDER if digests else None  # every sha-256 value has this length
        length = sum(
            len(_dicom_part_header(boundary, t, i == 0, instance_url(str(base), r), placeholder)) + r.size
            for i, (r, t) in enumerate(zip(refs, targets, strict=True))
        )
        headers["Content-Length"] = str(length + len(multipart.closing(boundary)))
    named = choice.transfer_syntax if choice.transfer_syntax not in (None, "*") else None
    return StreamingResponse(
        _multipart_stream(refs, targets, blobs, boundary, str(base), digests=digests),
        media_type=None,
        headers={"Content-Type": multipart.content_type(boundary, _DICOM, named), **headers},
    )


def wants_sha256(header: str | None) -> bool:
    """Whether `Want-Repr-Digest` (RFC 9530 §4) asks for sha-256: listed with a preference above 0.

    Digests are sent only on request, and only of bytes sent as stored: a download client
    (`aperture download`) checks every instance it writes against them. Each is the SHA-256 the
    background pass recorded for the stored file (`_recorded_digest`), or, for an instance it has not
    reached, computed from the file for this request.
    """
    for member in (header or "").split(","):
        name, _, weight = member.partition("=")
        if name.strip().lower() == "sha-256":
            return weight.strip() != "0"
    return False


def _digest_field(digest: bytes) -> str:
    """A `Repr-Digest` field value (RFC 9530): `sha-256=:<base64>:`."""
    return f"sha-256=:{base64.b64encode(digest).decode()}:"


def _recorded_digest(ref: InstanceRef) -> str | None:
    """The `Repr-Digest` value of the SHA-256 recorded for the stored file (None when none is yet)."""
    return _digest_field(bytes.fromhex(ref.sha256)) if ref.sha256 else None


def repr_digest(data: bytes | memoryview) -> str:
    return _digest_field(hashlib.sha256(data).digest())


def file_repr_digest(path: os.PathLike[str]) -> str:
    with open(path, "rb") as handle:
        return _digest_field(hashlib.file_digest(handle, "sha256").digest())


_DIGEST_PLACEHOLDER = repr_digest(b"")


async def instance_response(
    ref: InstanceRef, target: str, prefetched: bytes | None, blobs: Any, media_type: str, headers: dict[str, str]
) -> Response:
    """One instance as a single-part body in `target`: the bytes read already, the file streamed, or transcoded."""
    if target == ref.transfer_syntax:
        if prefetched is not None:
            return Response(prefetched, media_type=media_type, headers=headers)
        headers["Content-Length"] = str(ref.size)
        return StreamingResponse(_file_chunks(blobs.path(ref.blob)), media_type=media_type, headers=headers)
    data = await off_loop(_transcode, blobs.path(ref.blob), target)
    return Response(data, media_type=media_type, headers=headers)


def read_small_instance(blobs: Any) -> Callable[[list[InstanceRef], AccessScope], bytes | None]:
    """A `resolve_and` step that reads one instance of at most SMALL_FILE bytes whole (None otherwise)."""

    def read(refs: list[InstanceRef], _scope: AccessScope) -> bytes | None:
        if len(refs) == 1 and refs[0].size <= SMALL_FILE:
            with open(blobs.path(refs[0].blob), "rb", buffering=0) as handle:
                return handle.read()
        return None

    return read


def target_syntax(stored: str, requested: str | None) -> str:
    """The syntax to send an instance in: as stored for `*`, the named one, else the PS3.18 default.

    The default (no transfer-syntax parameter) is Explicit VR Little Endian (PS3.18 §8.7.3.4),
    except for lossy-compressed or undecodable pixel data, which stay as stored rather than being
    expanded (and, for lossy, misrepresented as original quality).
    """
    if requested == "*":
        return stored
    if requested is not None:
        return requested
    if stored in LOSSY_SYNTAXES or not can_transcode(stored, EXPLICIT_VR_LITTLE_ENDIAN):
        return stored
    return EXPLICIT_VR_LITTLE_ENDIAN


def _transcode(path: os.PathLike[str], target: str) -> bytes:
    try:
        return transcode_file(path, target)
    except TranscodeError as exc:
        raise NotAcceptable(
            f"{exc}. Ask for transfer-syntax=* to get the stored bytes and decode them on the client."
        ) from exc


def instance_url(base: str, ref: InstanceRef) -> str:
    """Where an instance can be retrieved alone: the Content-Location of its part (PS3.18 §8.6.1.2)."""
    return f"{base}/studies/{ref.study_uid}/series/{ref.series_uid}/instances/{ref.sop_uid}"


def _dicom_part_header(
    boundary: str, transfer_syntax: str, first: bool, location: str, digest: str | None = None
) -> bytes:
    media = f"{_DICOM}; transfer-syntax={transfer_syntax}"
    return multipart.part_header(boundary, media, first=first, location=location, digest=digest)


async def _file_chunks(path: os.PathLike[str]) -> AsyncIterator[bytes]:
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK * 4):
            yield chunk


async def _multipart_stream(
    refs: list[InstanceRef], targets: list[str], blobs: Any, boundary: str, base: str, *, digests: bool = False
) -> AsyncIterator[bytes]:
    for number, (ref, target) in enumerate(zip(refs, targets, strict=True)):
        where = instance_url(base, ref)
        if digests and (recorded := _recorded_digest(ref)) is not None:
            yield _dicom_part_header(boundary, target, number == 0, where, recorded)
        elif digests:  # every part as stored (no transcoding with digests): its digest goes before its bytes
            path = blobs.path(ref.blob)
            if ref.size <= LOOP_READ:
                with open(path, "rb", buffering=0) as handle:
                    data = handle.read()
                yield _dicom_part_header(boundary, target, number == 0, where, repr_digest(data)) + data
                continue
            yield _dicom_part_header(boundary, target, number == 0, where, await off_loop(file_repr_digest, path))
        else:
            yield _dicom_part_header(boundary, target, number == 0, where)
        if target == ref.transfer_syntax:
            with open(blobs.path(ref.blob), "rb", buffering=0) as handle:
                while chunk := handle.read(CHUNK * 4):
                    yield chunk
        else:
            yield await off_loop(_transcode, blobs.path(ref.blob), target)
    yield multipart.closing(boundary)


def _zip_stream(refs: list[InstanceRef], blobs: Any) -> Iterator[bytes]:
    sink = ZipSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for ref in refs:
            name = f"{ref.study_uid}/{ref.series_uid}/{ref.sop_uid}.dcm"
            with (
                archive.open(name, "w", force_zip64=ref.size > 0xFFFF0000) as member,
                open(blobs.path(ref.blob), "rb") as source,
            ):
                while chunk := source.read(CHUNK):
                    member.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


async def metadata(request: Request) -> Response:
    study = path_uid(request, "study")
    series = optional_uid(request, "series")
    instance = optional_uid(request, "instance")
    header = request.query_params.get("accept") or request.headers.get("accept")
    wanted = metadata_format(header, single=instance is not None, what="Metadata")
    scope = await authorize(request, READ_IMAGING)
    documents = await off_loop(index_of(request).metadata, scope, study, series, instance)
    if not documents:
        raise not_found(study, series, instance)
    if wanted is not _JSON:
        return await _xml_metadata(request, documents, wanted)
    tag = etag_of_many("metadata", (v for _, v in documents), public_base(request))
    if (unchanged := not_modified(request, tag)) is not None:
        return unchanged
    body = with_base(b"[" + b",".join(d for d, _ in documents) + b"]", request)
    return json_response(request, body, tag=tag)


async def _xml_metadata(request: Request, documents: list[tuple[bytes, str]], wanted: MetadataFormat) -> Response:
    """The metadata as DICOM XML (PS3.19 Annex A): ETag and 304 as for the JSON, per representation."""
    tag = etag_of_many("metadata", (v for _, v in documents), public_base(request), wanted.value)
    if (unchanged := not_modified(request, tag)) is not None:
        return unchanged
    parts = await off_loop(xml_metadata_documents, [d for d, _ in documents], request)
    if wanted is MetadataFormat.XML:
        return json_response(request, parts[0][0], tag=tag, media_type=DICOM_XML)
    xml, locations = [x for x, _ in parts], [where for _, where in parts]
    body, content_type = xml_multipart(xml, boundary_for(tag), locations)
    return json_response(request, body, tag=tag, media_type=content_type)


def validator(ref: InstanceRef) -> str:
    """What identifies an instance's stored bytes: their fingerprint, or the blob name for older rows."""
    return ref.digest or ref.blob
