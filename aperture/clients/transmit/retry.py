"""Retries with exponential backoff, for failures that may pass; permanent refusals are never retried."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from aperture.clients.transmit.report import InstanceResult
from aperture.clients.transmit.source import SourceInstance


class TransientFailure(Exception):
    """Worth trying again: connection refused or reset, a 5xx, 503 with Retry-After, an aborted association."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    attempts: int = 4  # in all, the first one included
    base: float = 0.5  # seconds before the second attempt; doubled each time
    cap: float = 30.0  # no single wait is longer (a Retry-After is capped too)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): Retry-After when given, else jittered."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        return float(min(self.base * 2 ** (attempt - 1), self.cap) * random.uniform(0.75, 1.0))

    def sleep(self, attempt: int, retry_after: float | None = None) -> None:
        time.sleep(self.delay(attempt, retry_after))


def parse_retry_after(value: str | None) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def until_acknowledged(
    batch: list[SourceInstance],
    results: dict[str, InstanceResult],
    backoff: Backoff,
    attempt: Callable[[list[SourceInstance]], list[SourceInstance]],
) -> None:
    """Send `batch` with `attempt` (one request or association) until nothing is left to retry.

    `attempt` records each instance's outcome and returns those worth another try (their reason
    set), or raises TransientFailure for all of them. Whatever is still unacknowledged when the
    attempts run out is marked failed: never reported as sent.
    """
    pending = list(batch)
    tries = 0
    while pending:
        tries += 1
        for instance in pending:
            results[instance.sop_instance].attempts = tries
        wait = None
        try:
            retry = attempt(pending)
        except TransientFailure as exc:
            retry, wait = pending, exc.retry_after
            for instance in pending:
                results[instance.sop_instance].reason = str(exc)
        if not retry:
            return
        if tries >= backoff.attempts:
            for instance in retry:
                result = results[instance.sop_instance]
                result.outcome = "failed"
                result.reason = f"not acknowledged after {tries} attempts: {result.reason}"
            return
        backoff.sleep(tries, wait)
        pending = retry
