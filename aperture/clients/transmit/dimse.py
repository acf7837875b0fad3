"""DIMSE C-STORE sender (pynetdicom SCU) to `AET@host:port`.

Presentation contexts, per SOP class in the batch: one with exactly the stored transfer syntax,
and one with Explicit and Implicit VR Little Endian as a fallback. When the receiver accepts
the stored syntax the file's data set goes out byte for byte (pynetdicom's chunked sending reads
it from the file, never decoding it); only when it refuses that syntax is the instance decoded
to the little-endian syntax it accepted (`aperture.dicom.transcode.transcode_file`). Success
(0000) and warning (B000, B006, B007, 0107, 0116) statuses acknowledge an instance; A7xx, an
aborted association, no answer and a refused connection are retried on a new association;
other failures are refusals.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context

from aperture.clients.transmit.address import Peer
from aperture.clients.transmit.report import InstanceResult, status_reason
from aperture.clients.transmit.retry import Backoff, until_acknowledged
from aperture.clients.transmit.source import SourceInstance
from aperture.dicom.transcode import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    TranscodeError,
    transcode_file,
)

_config.STORE_SEND_CHUNKED_DATASET = True  # a path is sent as its stored bytes, not re-encoded
MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1..255
_WARNINGS = {0xB000, 0xB006, 0xB007, 0x0107, 0x0116}


class DimseSender:
    def __init__(self, peer: Peer, calling_aet: str = "APERTURE", backoff: Backoff | None = None,
                 timeout: float = 60) -> None:  # fmt: skip
        self.peer = peer
        self.calling_aet = calling_aet
        self.backoff = backoff or Backoff()
        self.timeout = timeout

    def close(self) -> None:
        pass

    def send(self, study: str, instances: list[SourceInstance], results: dict[str, InstanceResult]) -> None:
        for batch in _batches(instances):
            self._send_batch(batch, results)

    def _send_batch(self, batch: list[SourceInstance], results: dict[str, InstanceResult]) -> None:
        def attempt(pending: list[SourceInstance]) -> list[SourceInstance]:
            retry, reason = self._associate_and_send(pending, results)
            for instance in retry:
                results[instance.sop_instance].reason = reason
            return retry

        until_acknowledged(batch, results, self.backoff, attempt)

    def _associate_and_send(
        self, pending: list[SourceInstance], results: dict[str, InstanceResult]
    ) -> tuple[list[SourceInstance], str]:
        """One association; returns the instances to retry and why."""
        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.requested_contexts = _contexts(pending)
        assoc = ae.associate(self.peer.host, self.peer.port, ae_title=self.peer.aet)
        where = f"{self.peer.aet}@{self.peer.host}:{self.peer.port}"
        if not assoc.is_established:
            if assoc.is_rejected:
                # rejected-permanent (result 1) is a refusal, e.g. our or its AE title is unknown there
                permanent = assoc.acceptor.primitive is not None and assoc.acceptor.primitive.result == 0x01
                reason = f"{where} rejected the association (check --calling-aet and the called AE title)"
                if permanent:
                    for instance in pending:
                        result = results[instance.sop_instance]
                        result.outcome, result.reason = "refused", reason
                    return [], reason
                return pending, reason + ", transiently"
            return pending, f"no association with {where} (connection refused, reset or timed out)"
        retry: list[SourceInstance] = []
        reason = ""
        try:
            accepted = [cx for cx in assoc.accepted_contexts]
            for index, instance in enumerate(pending):
                if not assoc.is_established:
                    reason = f"the association with {where} was aborted"
                    retry.extend(pending[index:])
                    break
                outcome = self._store_one(assoc, instance, accepted, results[instance.sop_instance])
                if outcome is not None:
                    reason = outcome
                    retry.append(instance)
        finally:
            if assoc.is_established:
                assoc.release()
        return retry, reason

    def _store_one(self, assoc: Association, instance: SourceInstance, accepted: list[PresentationContext],
                   result: InstanceResult) -> str | None:  # fmt: skip
        """Send one instance; returns a reason to retry it, or None when its outcome is final."""
        syntaxes = [str(cx.transfer_syntax[0]) for cx in accepted if cx.abstract_syntax == instance.sop_class]
        if not syntaxes:
            result.outcome = "refused"
            result.reason = f"the receiver does not accept SOP class {instance.sop_class} (no presentation context)"
            return None
        if instance.transfer_syntax in syntaxes:
            target, path = instance.transfer_syntax, instance.path
            return self._c_store(assoc, instance, path, target, result)
        fallback = next((ts for ts in (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN) if ts in syntaxes), None)
        if fallback is None:
            result.outcome = "refused"
            result.reason = f"the receiver accepts SOP class {instance.sop_class} only in {', '.join(syntaxes)}"
            return None
        try:
            data = transcode_file(instance.path, fallback)
        except TranscodeError as exc:
            result.outcome = "refused"
            result.reason = f"the receiver does not accept {instance.transfer_syntax}, and {exc}"
            return None
        with tempfile.NamedTemporaryFile(suffix=".dcm") as handle:
            handle.write(data)
            handle.flush()
            return self._c_store(assoc, instance, Path(handle.name), fallback, result)

    def _c_store(self, assoc: Association, instance: SourceInstance, path: Path, target: str,
                 result: InstanceResult) -> str | None:  # fmt: skip
        try:
            status = assoc.send_c_store(path)
        except (OSError, RuntimeError, ValueError, AttributeError) as exc:
            if "association" in str(exc).lower() or isinstance(exc, OSError | RuntimeError):
                return f"sending failed: {exc}"
            result.outcome, result.reason = "refused", f"cannot send this file: {exc}"
            return None
        if not status or "Status" not in status:
            return "no C-STORE response (association aborted or timed out)"
        code = int(status.Status)
        result.status = f"{code:04X}"
        comment = str(status.get("ErrorComment") or "")
        if code == 0x0000 or code in _WARNINGS:
            result.outcome, result.sent_as = "sent", target
            result.reason = status_reason(code) if code else None
            return None
        result.reason = status_reason(code) + (f": {comment}" if comment else "")
        if 0xA700 <= code <= 0xA7FF:
            return result.reason
        result.outcome = "refused"
        return None


def _pairs(instances: list[SourceInstance]) -> set[tuple[str, str]]:
    return {(i.sop_class, i.transfer_syntax) for i in instances}


def _context_count(pairs: set[tuple[str, str]]) -> int:
    return len(pairs) + len({sop_class for sop_class, _ in pairs})


def _batches(instances: list[SourceInstance]) -> list[list[SourceInstance]]:
    """Split so that no association needs more than 128 presentation contexts."""
    batches: list[list[SourceInstance]] = []
    current: list[SourceInstance] = []
    for instance in instances:
        if current and _context_count(_pairs([*current, instance])) > MAX_CONTEXTS:
            batches.append(current)
            current = []
        current.append(instance)
    if current:
        batches.append(current)
    return batches


def _contexts(instances: list[SourceInstance]) -> list[PresentationContext]:
    contexts = []
    classes: list[str] = []
    for sop_class, ts in sorted(_pairs(instances)):
        contexts.append(build_context(sop_class, [ts]))
        if sop_class not in classes:
            classes.append(sop_class)
    for sop_class in classes:
        contexts.append(build_context(sop_class, [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]))
    return contexts
