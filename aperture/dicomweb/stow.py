"""STOW-RS: Store Instances (PS3.18 §10.5).

The body streams to temporary files (never held in memory), then each part is parsed, checked and
handed to the store's single write path as one batch. The answer follows PS3.18 Table 10.5.3-1
(see `status_of`), with a ReferencedSOPSequence and a FailedSOPSequence whose items carry a
FailureReason (Table I.2-2) and a readable ErrorComment. A body that is not well-formed multipart
is a 400 with the error format, and nothing from it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import re
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, BinaryIO

import xxhash
from starlette.requests import Request
from starlette.responses import Response

from aperture.auth.requirements import AUDIT_STUDIES, WRITE_IMAGING, authorize
from aperture.dicom.instance import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH_SOP_CLASS, InvalidInstance
from aperture.dicom.nativexml import native_xml
from aperture.dicomweb.body import read_ahead
from aperture.dicomweb.media import DICOM_JSON, DICOM_XML, parse_accept
from aperture.dicomweb.multipart import Part, read_parts
from aperture.dicomweb.threads import off_loop
from aperture.dicomweb.urls import optional_uid, public_base
from aperture.errors import (
    InsufficientStorage,
    InvalidRequest,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from aperture.store.ingest import Outcome, Upload, prepare_uploads

_DICOM = "application/dicom"
log = logging.getLogger("aperture.dicomweb")


def _media(content_type: str) -> tuple[str, dict[str, str]]:
    ranges = parse_accept(content_type, "The Content-Type")
    if not ranges:
        return "", {}
    return ranges[0].type, ranges[0].params


class _TempSink:
    """One part's temporary file, fingerprinted as it is written (so the parser reads it once)."""

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path = path
        self.handle = handle
        self.fingerprint = xxhash.xxh3_128()

    def write(self, data: bytes | memoryview) -> object:
        self.fingerprint.update(data)
        return self.handle.write(data)


# Parts per trip to a parser process: a trip costs about 0.1 ms of this process's CPU, as much as
# parsing a part; a few per trip keep parsing in step with the body as it arrives.
PARSE_BATCH = 4


class _Parsing:
    """Hands received parts to the parser processes a few at a time; one future per part."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Executor) -> None:
        self.loop = loop
        self.pool = pool
        self.unsent: list[tuple[Path, str, asyncio.Future[Upload | InvalidInstance]]] = []

    def add(self, path: Path, fingerprint: str) -> asyncio.Future[Upload | InvalidInstance]:
        future: asyncio.Future[Upload | InvalidInstance] = self.loop.create_future()
        self.unsent.append((path, fingerprint, future))
        if len(self.unsent) >= PARSE_BATCH:
            self.flush()
        return future

    def flush(self) -> None:
        """Send what is waiting (at the end of the body, or when a batch is full)."""
        if not self.unsent:
            return
        batch, self.unsent = self.unsent, []
        trip = self.loop.run_in_executor(self.pool, prepare_uploads, [(path, digest) for path, digest, _ in batch])

        def deliver(trip: asyncio.Future[list[Upload | InvalidInstance]]) -> None:
            error = None if trip.cancelled() else trip.exception()
            for index, (_, _, future) in enumerate(batch):
                if future.done():
                    continue
                if trip.cancelled():
                    future.cancel()
                elif error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(trip.result()[index])

        trip.add_done_callback(deliver)

    def cancel_unsent(self) -> None:
        """The request failed before the body ended: parts not yet sent are never parsed."""
        for _, _, future in self.unsent:
            future.cancel()
        self.unsent = []


async def store_instances(request: Request) -> Response:
    """STOW-RS; background HTJ2K work waits while it runs, and is told afterwards there is more."""
    copies = request.app.state.copies
    if copies is None:
        return await _store_instances(request)
    copies.uploads_in_flight += 1
    try:
        return await _store_instances(request)
    finally:
        copies.uploads_in_flight -= 1
        copies.nudge()


async def _store_instances(request: Request) -> Response:
    study_uid = optional_uid(request, "study")
    answer_as = response_type(request.query_params.get("accept") or request.headers.get("accept"))
    scope = await authorize(request, WRITE_IMAGING)
    state = request.app.state
    limit = state.config.store.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 19 or int(declared) > limit):
        raise PayloadTooLarge(f"The Content-Length is over the upload limit of {limit} bytes (store.max_upload_bytes).")
    media, params = _media(request.headers.get("content-type", ""))
    sinks: list[_TempSink] = []
    parts: list[tuple[Part, _TempSink]] = []
    prepared: list[asyncio.Future[Upload | InvalidInstance]] = []
    loop = asyncio.get_running_loop()
    parsing = _Parsing(loop, state.parsers)

    def open_sink(_part: Part) -> _TempSink:
        path, handle = state.blobs.new_temp()
        sink = _TempSink(path, handle)
        sinks.append(sink)
        return sink

    def close_sink(part: Part, sink: Any) -> None:
        sink.handle.close()
        state.blobs.start_writeback(sink.path)  # the disk works while the rest arrives
        parts.append((part, sink))
        # parse each part in a parser process while the rest of the body is still arriving
        declared = _media(part.content_type)[0] if part.content_type else _DICOM
        if declared not in (_DICOM, "application/octet-stream"):
            problem = InvalidInstance(CANNOT_UNDERSTAND, f"Its Content-Type is {declared}, not application/dicom.")
        elif part.size == 0:
            problem = InvalidInstance(CANNOT_UNDERSTAND, "It is empty.")
        else:
            prepared.append(parsing.add(sink.path, sink.fingerprint.hexdigest()))
            return
        done: asyncio.Future[Upload | InvalidInstance] = loop.create_future()
        done.set_result(problem)
        prepared.append(done)

    try:
        if media == "multipart/related":
            part_type = (params.get("type") or _DICOM).lower()
            if part_type != _DICOM:
                raise UnsupportedMediaType(
                    f'Parts of type "{part_type}" are not accepted; send multipart/related; type="application/dicom" '
                    "(Part-10 files). The metadata-and-bulk-data form of STOW-RS is not supported."
                )
            boundary = params.get("boundary", "")
            async with contextlib.aclosing(read_ahead(request)) as body:
                await read_parts(body, boundary, open_sink, close_sink, max_bytes=state.config.store.max_upload_bytes)
        elif media == _DICOM:  # a single Part-10 body: accepted for convenience
            part = Part({"content-type": _DICOM})
            sink = open_sink(part)
            total = 0
            async with contextlib.aclosing(read_ahead(request)) as body:
                async for chunk in body:
                    total += len(chunk)
                    if total > state.config.store.max_upload_bytes:
                        sink.handle.close()
                        raise PayloadTooLarge(
                            f"The upload exceeds the limit of {state.config.store.max_upload_bytes} bytes."
                        )
                    sink.write(chunk)
            part.size = total
            close_sink(part, sink)
        else:
            raise UnsupportedMediaType(
                f"Content-Type {media or '(none)'} cannot be stored; send "
                'multipart/related; type="application/dicom"; boundary=... with one Part-10 file per part.'
            )
        if not parts:
            raise InvalidRequest("The multipart body holds no parts; send at least one DICOM Part-10 file.")
        parsing.flush()
        records = await asyncio.gather(*prepared)
        results = await off_loop(_store, state, parts, records, study_uid, scope)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage() from exc
        raise
    finally:
        parsing.cancel_unsent()
        await asyncio.gather(*prepared, return_exceptions=True)  # no parser may still hold a temp file
        for sink in sinks:
            with contextlib.suppress(OSError):
                sink.handle.close()
            sink.path.unlink(missing_ok=True)  # placed blobs were renamed away; the rest is discarded
    stored = (r.study_uid for r in results if r.reason is None and r.study_uid)
    request.scope[AUDIT_STUDIES] = tuple(dict.fromkeys(stored))
    return _response(request, results, study_uid, answer_as)


def _store(
    state: Any,
    parts: list[tuple[Part, _TempSink]],
    records: list[Upload | InvalidInstance],
    study_uid: str | None,
    scope: Any,
) -> list[Outcome]:
    batch: list[tuple[Path, Upload]] = []
    results: list[Outcome | None] = []
    for number, ((_, sink), record) in enumerate(zip(parts, records, strict=True), start=1):
        if isinstance(record, InvalidInstance):
            results.append(_failure(record, number))
            continue
        if study_uid is not None and record.study_uid != study_uid:
            results.append(
                Outcome.of(
                    record,
                    DATASET_DOES_NOT_MATCH_SOP_CLASS,
                    f"Part {number}: not in the study the URL names. It is in study {record.study_uid}.",
                )
            )
            continue
        batch.append((sink.path, record))
        results.append(None)
    stored = iter(state.ingest.ingest(batch, scope) if batch else [])
    return [r if r is not None else next(stored) for r in results]


def _failure(exc: InvalidInstance, number: int) -> Outcome:
    return Outcome(exc.sop_class_uid, exc.sop_instance_uid, reason=exc.reason, message=f"Part {number}: {exc}")


def response_type(header: str | None) -> str:
    """The media type of the Store Instances Response Module (PS3.18 Annex I) the client prefers.

    DICOM JSON unless the first acceptable range asks for DICOM XML (PS3.19 Annex A, one document:
    the response is a single item). Decided before the body is read, so a client that accepts
    neither is refused before anything is stored.
    """
    for media in parse_accept(header):
        if media.type in (DICOM_JSON, "application/json", "*/*", "*", "application/*"):
            return DICOM_JSON
        if media.type == DICOM_XML:
            return DICOM_XML
    raise NotAcceptable(
        f"The STOW-RS response can be sent as {DICOM_JSON} or {DICOM_XML}. The Accept header asked for neither."
    )


def _response(request: Request, results: list[Outcome], study_uid: str | None, media_type: str) -> Response:
    base = public_base(request)
    referenced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for outcome in results:
        item: dict[str, Any] = {
            "00081150": _ui(outcome.sop_class_uid),
            "00081155": _ui(outcome.sop_uid),
        }
        if outcome.reason is None:
            item["00081190"] = {
                "vr": "UR",
                "Value": [
                    f"{base}/studies/{outcome.study_uid}/series/{outcome.series_uid}/instances/{outcome.sop_uid}"
                ],
            }
            referenced.append(dict(sorted(item.items())))
        else:
            item["00081197"] = {"vr": "US", "Value": [outcome.reason]}
            item["00000902"] = {"vr": "LO", "Value": [error_comment(outcome.message)]}
            log.info("STOW-RS refused %s: %s", outcome.sop_uid or "(no SOP Instance UID)", unquoted(outcome.message))
            failed.append(dict(sorted(item.items())))
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in results if o.reason is None}
    target = study_uid or (next(iter(studies)) if len(studies) == 1 else None)
    if target and referenced:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{target}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    status = status_of(results)
    document = dict(sorted(body.items()))
    if media_type == DICOM_XML:
        return Response(native_xml(document), status_code=status, media_type=DICOM_XML)
    return Response(json.dumps(document, separators=(",", ":")), status_code=status, media_type=DICOM_JSON)


def status_of(results: list[Outcome]) -> int:
    """PS3.18 §10.5.3.1, Table 10.5.3-1: 200 "stored all Instances"; 202 "stored some of the Instances
    but warnings or failures exist for others"; 400 "unable to store any instances due to bad
    syntax": every part failed as not understood (C000: not DICOM, truncated, unparsable); 409
    "formed correctly but ... unable to store any instances due to a conflict (e.g., unsupported SOP
    Class or Study Instance UID mismatch)", which "may also be used ... for a mixture of reasons"."""
    reasons = [outcome.reason for outcome in results if outcome.reason is not None]
    if not reasons:
        return 200
    if len(reasons) < len(results):
        return 202
    return 400 if all(reason == CANNOT_UNDERSTAND for reason in reasons) else 409


ERROR_COMMENT_CHARS = 64  # ErrorComment is LO (PS3.5 Table 6.2-1)
_PART = re.compile(r"Part \d+: ")
_CLAUSE_END = re.compile(r"\.(?= )|:(?= )|\.$")


def unquoted(message: str) -> str:
    """`message` for the log, cut where it starts to quote anything ('…' in its place).

    Refusals quote what they read from the file (pydicom's parse errors, a UID as found), and a file's
    values may identify its patient; the client is told them in its answer, the log keeps the reason.
    Cutting at the first quote mark, not between pairs, is what survives values that hold quotes.
    """
    cut = min((i for i in (message.find("'"), message.find('"')) if i >= 0), default=-1)
    return message if cut < 0 else message[:cut] + "…"


def error_comment(message: str) -> str:
    """`message` as an ErrorComment: whole when it fits in 64 characters, never cut inside a word.

    PS3.18 Table I.1-1 has no attribute for a longer text, so a longer message is cut where a
    sentence or clause ends, when that keeps at least 48 characters, or else after the last whole
    word, with "..." (messages lead with the point). The server log has the whole message.
    """
    if len(message) <= ERROR_COMMENT_CHARS:
        return message
    after_part = match.end() if (match := _PART.match(message)) else 0
    ends = [
        m.end() if m.group() == "." else m.start()
        for m in _CLAUSE_END.finditer(message, after_part)
        if (m.end() if m.group() == "." else m.start()) <= ERROR_COMMENT_CHARS
    ]
    if ends and ends[-1] >= ERROR_COMMENT_CHARS * 3 // 4:  # a clause that leaves little room unused
        return message[: ends[-1]]
    space = message.rfind(" ", after_part, ERROR_COMMENT_CHARS - 2)
    cut = space if space > after_part else ERROR_COMMENT_CHARS - 3  # one word longer than the room
    return message[:cut].rstrip(" ,;:") + "..."


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}
