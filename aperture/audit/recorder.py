"""Writing audit records off the request's path: a bounded queue and one background writer thread.

`AuditRecorder.record` only puts the record on a queue; the writer thread takes whatever queues
within `linger` (0.2 s) of the first record it is waiting for (up to `batch` records) and writes it
in one transaction, so a request never waits for the database, and a busy server commits (and
syncs to disk) a few times a second instead of once per request. Reads aggregate: a permitted
read with the same token hash (or none, under `--auth none`), study UIDs, action, outcome and
source address as one written less than `window` (60 s) after the first of them does not get
an event of its own; the first event's count grows and its period ends at the latest read. The
count is an extension on the AuditEvent (`events.COUNT_EXTENSION`, valueInteger) and the span is
`AuditEvent.period`: the entity keeps exactly one study identifier as BALP expects, and the count
is typed and read from one place. A deny is never aggregated.

The aggregated event is written when its first read is (not when the window ends) and then
rewritten as the count grows, so an open window is on disk up to its last written batch.

Full queue: `record` waits up to `put_timeout` for room (the writer is behind, e.g. the database
is locked), then counts the record as dropped and logs a warning with the running total on
`aperture.audit`; `dropped` holds the number. It never drops silently and never stalls a request
for longer than `put_timeout`.

Durability: `close()` (clean shutdown) writes everything queued and returns once it is committed;
after it `record` raises; `flush()` returns once everything queued before it is committed (it cuts
the linger short). A crash (SIGKILL, power loss) loses what was queued or in the batch being
written at that moment: the records of the last `linger` seconds or so before the kill, at most
`queue_size + batch` records. Committed rows are as durable as the index (SQLite synchronous=FULL).
A batch the database refuses with an error is logged (with its size) as lost, and the writer goes on.

`aperture serve` creates one recorder per worker process in the app's lifespan; the declared route
wrapper (`aperture.auth.requirements.needs`) calls `record` once per decided request.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from aperture.audit.events import AccessRecord
from aperture.audit.store import AuditStore

log = logging.getLogger("aperture.audit")

WINDOW = timedelta(seconds=60)
LINGER = 0.2  # seconds the writer waits for more records after the first, to write them in one commit


class RecorderClosed(RuntimeError):
    """`record` after `close`: the record would never be written."""


@dataclass
class _Open:
    """An aggregated event on disk: its row and the record as written (its `time` starts the window)."""

    pk: int
    record: AccessRecord


_Key = tuple[str | None, tuple[str, ...], str, str, str | None]
_FLUSH = object()
_STOP = object()


def _key(record: AccessRecord) -> _Key:
    return (record.token_hash, record.studies, record.action.value, record.outcome.value, record.source_address)


class AuditRecorder:
    def __init__(
        self,
        store: AuditStore,
        *,
        queue_size: int = 10_000,
        batch: int = 500,
        put_timeout: float = 0.05,
        window: timedelta = WINDOW,
        linger: float = LINGER,
    ) -> None:
        self.store = store
        self.batch = batch
        self.linger = linger
        self.put_timeout = put_timeout
        self.window = window
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._open: dict[_Key, _Open] = {}
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="aperture-audit-writer", daemon=True)
        self._thread.start()

    def record(self, record: AccessRecord) -> None:
        """Queue `record` for writing; returns at once, or after `put_timeout` when the queue is full."""
        if self._closed:
            raise RecorderClosed("The audit recorder is closed; the record would be lost.")
        try:
            self._queue.put(record, timeout=self.put_timeout)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                dropped = self.dropped
            log.warning(
                "Audit queue full (the database is not keeping up): %d audit record(s) dropped so far.", dropped
            )

    def flush(self, timeout: float | None = None) -> None:
        """Return once every record queued before this call is committed."""
        if self._closed:
            return  # close() has written everything
        done = threading.Event()
        self._queue.put((_FLUSH, done))
        done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, then stop the writer (clean shutdown). Idempotent.

        Call it once requests have stopped (the server's shutdown order): `record` after it raises,
        and one racing with it is still written if it reached the queue before the writer's last drain.
        """
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            deadline = time.monotonic() + self.linger
            while len(items) < self.batch and not _urgent(items[-1]):
                try:
                    items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            if any(item is _STOP for item in items):  # last round: whatever queued meanwhile goes too
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            records = [item for item in items if isinstance(item, AccessRecord)]
            try:
                self._write(records)
            except Exception:  # the writer must outlive a failed batch; the log says what was lost
                log.exception("Writing %d audit record(s) failed; those not committed are lost.", len(records))
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, tuple) and item[0] is _FLUSH:
                    item[1].set()

    def _write(self, records: list[AccessRecord]) -> None:
        new: list[AccessRecord] = []
        opened: dict[_Key, int] = {}  # aggregation key -> index in `new` of the event it opens
        grown: dict[_Key, _Open] = {}
        for record in records:
            if not record.aggregatable:
                new.append(record)
                continue
            key = _key(record)
            current = self._open.get(key)
            if current is not None and timedelta(0) <= record.time - current.record.time < self.window:
                current.record = _merged(current.record, record)
                grown[key] = current
                continue
            pending = opened.get(key)
            if pending is not None and timedelta(0) <= record.time - new[pending].time < self.window:
                new[pending] = _merged(new[pending], record)
                continue
            opened[key] = len(new)
            new.append(record)
        # only an event that opens an aggregation window is rewritten later, so only it needs its row key
        opening = {index: key for key, index in opened.items()}
        keys = self.store.write(
            [record for index, record in enumerate(new) if index not in opening],
            [new[index] for index in opening],
            [(entry.pk, entry.record) for entry in grown.values()],
        )
        for pk, (index, key) in zip(keys, opening.items(), strict=True):
            self._open[key] = _Open(pk, new[index])
        self._forget_closed_windows()

    def _forget_closed_windows(self) -> None:
        """Drop windows no new read can join (memory stays bounded by the reads of the last window)."""
        if not self._open:
            return
        newest = max(entry.record.last or entry.record.time for entry in self._open.values())
        for key in [k for k, e in self._open.items() if newest - e.record.time >= self.window]:
            del self._open[key]


def _urgent(item: object) -> bool:
    """A flush or a stop: write what is there now, without lingering."""
    return item is _STOP or (isinstance(item, tuple) and item[0] is _FLUSH)


def _merged(first: AccessRecord, later: AccessRecord) -> AccessRecord:
    last: datetime = max(first.last or first.time, later.last or later.time)
    return replace(first, count=first.count + later.count, last=last)
