"""STOW-RS sender (PS3.18 §10.5): one multipart/related POST per study (in chunks), read per instance.

An instance counts as sent only when the answer's ReferencedSOPSequence (0008,1199) names it;
a FailedSOPSequence (0008,1198) item gives its FailureReason (0008,1197). The HTTP status says
how to read the body (Table 10.5.3-1): 200 all stored, 202 some stored, 409 none stored (a
conflict), 400 bad syntax. Out of resources (A7xx), 408, 429, 5xx and transport errors are
retried; everything else is a refusal and is not.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from aperture.clients.transmit.report import InstanceResult, status_reason
from aperture.clients.transmit.retry import Backoff, TransientFailure, parse_retry_after, until_acknowledged
from aperture.clients.transmit.source import BearerAuth, SourceInstance

CHUNK_BYTES = 64 << 20  # at most this much DICOM per request (one instance may exceed it alone)
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def read_secret(path: str | os.PathLike[str] | None, env: str | None) -> str | None:
    """A credential from the file at `path` (stripped), else from the environment variable `env`; None if neither."""
    if path:
        return Path(path).read_text(encoding="utf-8").strip() or None
    return (os.environ.get(env) or None) if env else None


def receiver_auth(token: str | None, basic: str | None) -> httpx.Auth | None:
    """The receiver's credentials: a bearer token or `user:password` (read from a file or the environment by
    the caller, never given as an argument), or none; ValueError when both are given or basic is malformed."""
    if token and basic:
        raise ValueError("give the receiver either a bearer token or basic credentials, not both")
    if token:
        return BearerAuth(lambda: token)
    if basic:
        user, sep, password = basic.partition(":")
        if not sep:
            raise ValueError("basic credentials must read user:password")
        return httpx.BasicAuth(user, password)
    return None


class StowSender:
    def __init__(self, base_url: str, auth: httpx.Auth | None = None, backoff: Backoff | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.http = httpx.Client(auth=auth, timeout=httpx.Timeout(300, connect=10))
        self.backoff = backoff or Backoff()

    def close(self) -> None:
        self.http.close()

    def send(self, study: str, instances: list[SourceInstance], results: dict[str, InstanceResult]) -> None:
        """Send one study's instances; set each one's outcome in `results` (keyed by SOP Instance UID)."""
        for chunk in _chunks(instances):
            self._send_chunk(study, chunk, results)

    def _send_chunk(self, study: str, chunk: list[SourceInstance], results: dict[str, InstanceResult]) -> None:
        until_acknowledged(chunk, results, self.backoff, lambda pending: self._post(study, pending, results))

    def _post(
        self, study: str, instances: list[SourceInstance], results: dict[str, InstanceResult]
    ) -> list[SourceInstance]:
        """One POST; returns the instances worth retrying (A7xx). Raises TransientFailure for the whole request."""
        boundary = secrets.token_hex(16)
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        url = f"{self.base}/studies/{study}"
        try:
            response = self.http.post(url, content=_body(instances, boundary), headers=headers)
        except httpx.TransportError as exc:
            raise TransientFailure(f"could not reach {self.base}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in _TRANSIENT_STATUS:
            raise TransientFailure(
                f"the receiver answered HTTP {status}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        body = _json(response)
        if status not in (200, 202, 409, 400) or (body is None and status != 200):
            hint = {401: " (check the receiver's credentials)", 403: " (the credentials do not allow storing)",
                    404: " (is the URL the DICOMweb base?)", 413: " (the request is too large for the receiver)",
                    415: " (the receiver does not take application/dicom)"}.get(status, "")  # fmt: skip
            for instance in instances:
                result = results[instance.sop_instance]
                result.outcome, result.status = "refused", f"HTTP {status}"
                result.reason = f"the receiver answered HTTP {status}{hint}: {response.text[:200]}".rstrip(": ")
            return []
        referenced = {_uid(item): item for item in _items(body, "00081199")}
        failed = {_uid(item): item for item in _items(body, "00081198")}
        retry: list[SourceInstance] = []
        for instance in instances:
            result = results[instance.sop_instance]
            if instance.sop_instance in referenced:
                item = referenced[instance.sop_instance]
                result.outcome, result.sent_as = "sent", instance.transfer_syntax
                warning = _code(item, "00081196")
                result.status = f"{warning:04X}" if warning is not None else None
                result.reason = status_reason(warning) if warning is not None else None
            elif instance.sop_instance in failed:
                code = _code(failed[instance.sop_instance], "00081197")
                comment = _text(failed[instance.sop_instance], "00000902")
                result.status = f"{code:04X}" if code is not None else None
                result.reason = (status_reason(code) if code is not None else "refused by the receiver") + (
                    f": {comment}" if comment else ""
                )
                if code is not None and 0xA700 <= code <= 0xA7FF:
                    retry.append(instance)
                else:
                    result.outcome = "refused"
            else:
                result.outcome = "failed"
                result.reason = f"the receiver answered HTTP {status} without naming this instance"
        return retry


def _chunks(instances: list[SourceInstance]) -> Iterator[list[SourceInstance]]:
    chunk: list[SourceInstance] = []
    size = 0
    for instance in instances:
        length = instance.path.stat().st_size
        if chunk and size + length > CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(instance)
        size += length
    if chunk:
        yield chunk


def _body(instances: list[SourceInstance], boundary: str) -> Iterator[bytes]:
    """The multipart body, streamed file by file (a study is never held in memory whole)."""
    for instance in instances:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        with open(instance.path, "rb") as handle:
            while block := handle.read(1 << 20):
                yield block
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _json(response: httpx.Response) -> dict[str, Any] | None:
    if not response.content:
        return None
    try:
        document = json.loads(response.content)
    except ValueError:
        return None
    if isinstance(document, list) and len(document) == 1:
        document = document[0]  # some servers wrap the answer's data set in an array
    return document if isinstance(document, dict) else None


def _items(body: dict[str, Any] | None, tag: str) -> list[dict[str, Any]]:
    element = (body or {}).get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def _first(item: dict[str, Any], tag: str) -> object:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return values[0] if isinstance(values, list) and values else None


def _uid(item: dict[str, Any]) -> str:
    return str(_first(item, "00081155") or "")


def _code(item: dict[str, Any], tag: str) -> int | None:
    value = _first(item, tag)
    return int(value) if isinstance(value, int | float) else None


def _text(item: dict[str, Any], tag: str) -> str | None:
    value = _first(item, tag)
    return str(value) if value is not None else None
