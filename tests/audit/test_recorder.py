"""The recorder writes off the request's path, aggregates reads, keeps everything on a clean close.

Every test runs on SQLite and PostgreSQL. Times are given explicitly on the records (the
aggregation window is measured on them), so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from aperture.audit.events import COUNT_EXTENSION, AccessRecord, Action, Outcome, token_digest
from aperture.audit.recorder import AuditRecorder, RecorderClosed
from aperture.audit.store import AuditFilter, AuditStore, audit_events
from aperture.store.engine import open_engine
from tests.audit.conftest import SERVER

T0 = datetime(2026, 12, 2, 5, 0, 0, tzinfo=UTC)
STUDY_A, STUDY_B = "1.2.826.0.1.3680043.8.498.10", "1.2.826.0.1.3680043.8.498.11"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkci0xIn0.c2lnbmF0dXJlLXNlY3JldC14eXo"


def _read(seconds: float, study: str = STUDY_A, outcome: Outcome = Outcome.PERMIT, **fields: Any) -> AccessRecord:
    values: dict[str, Any] = {
        "status": 200 if outcome is Outcome.PERMIT else 403,
        "time": T0 + timedelta(seconds=seconds),
        "client_id": "viewer-app",
        "user": "Practitioner/dr-1",
        "patient": "Patient/p-1",
        "studies": (study,),
        "source_address": "192.0.2.7",
        "token_hash": token_digest(TOKEN),
    }
    return AccessRecord(Action.READ, outcome, **{**values, **fields})


def _events(engine: Engine) -> list[dict[str, Any]]:
    found = AuditStore(engine, SERVER).find(AuditFilter(limit=1000))
    return sorted((e.document for e in found), key=lambda d: (d["recorded"], int(d["id"])))


def _count(event: dict[str, Any]) -> int:
    return next((x["valueInteger"] for x in event.get("extension", []) if x["url"] == COUNT_EXTENSION), 1)


def test_frame_reads_of_one_study_within_a_minute_are_one_event_with_a_count(engine: Engine) -> None:
    recorder = AuditRecorder(AuditStore(engine, SERVER))
    for second in range(3):
        recorder.record(_read(second))
    recorder.flush()  # the first three are on disk as one event; the next two grow it there
    recorder.record(_read(10))
    recorder.record(_read(59.5))
    recorder.close()
    (event,) = _events(engine)
    assert _count(event) == 5
    assert event["period"] == {"start": "2026-12-02T05:00:00.000Z", "end": "2026-12-02T05:00:59.500Z"}
    with engine.connect() as conn:
        assert conn.execute(select(audit_events.c.count)).scalar_one() == 5


def test_a_new_window_another_study_or_another_token_is_a_new_event(engine: Engine) -> None:
    recorder = AuditRecorder(AuditStore(engine, SERVER))
    recorder.record(_read(0))
    recorder.record(_read(1, STUDY_B))
    recorder.record(_read(2, token_hash=token_digest("another token")))
    recorder.flush()
    recorder.record(_read(60))  # 60 s after the first read: its window is over
    recorder.record(_read(61))
    recorder.close()
    counts = [(e["entity"][1]["what"]["identifier"]["value"], e["period"]["start"], _count(e)) for e in _events(engine)]
    assert counts == [
        (f"urn:oid:{STUDY_A}", "2026-12-02T05:00:00.000Z", 1),
        (f"urn:oid:{STUDY_B}", "2026-12-02T05:00:01.000Z", 1),
        (f"urn:oid:{STUDY_A}", "2026-12-02T05:00:02.000Z", 1),
        (f"urn:oid:{STUDY_A}", "2026-12-02T05:01:00.000Z", 2),
    ]


def test_denies_are_never_aggregated_away(engine: Engine) -> None:
    recorder = AuditRecorder(AuditStore(engine, SERVER))
    recorder.record(_read(0))
    for second in range(1, 4):
        recorder.record(_read(second, outcome=Outcome.DENY))
    recorder.record(_read(5))
    recorder.close()
    events = _events(engine)
    assert [(e["outcome"], _count(e)) for e in events] == [("0", 2), ("4", 1), ("4", 1), ("4", 1)]


def test_a_clean_close_writes_everything_and_a_reopened_index_has_it(database_url: str) -> None:
    engine = open_engine(database_url)
    recorder = AuditRecorder(AuditStore(engine, SERVER), batch=7)
    kinds = [Action.READ, Action.SEARCH, Action.WRITE, Action.DELETE]
    expected = set()
    for i in range(100):  # nothing aggregates: each read is of a study of its own
        outcome = Outcome.DENY if i % 5 == 0 else Outcome.PERMIT
        recorder.record(_read(i, study=f"1.2.3.{i}", outcome=outcome))
        recorder.record(
            AccessRecord(kinds[i % 4], Outcome.PERMIT, 200, time=T0 + timedelta(seconds=i), studies=(f"9.9.{i}",))
        )
        expected |= {(f"urn:oid:1.2.3.{i}", "R", i), (f"urn:oid:9.9.{i}", "RECD"[i % 4], i)}
    recorder.close()  # no flush before: close alone must write what is queued
    with pytest.raises(RecorderClosed):
        recorder.record(_read(0))
    engine.dispose()
    reopened = open_engine(database_url)
    try:
        events = _events(reopened)
    finally:
        reopened.dispose()
    found = {
        (
            next(e["what"]["identifier"]["value"] for e in event["entity"] if e["role"]["code"] == "3"),
            event["action"],
            int((datetime.fromisoformat(event["recorded"].replace("Z", "+00:00")) - T0).total_seconds()),
        )
        for event in events
    }
    assert len(events) == 200 and found == expected


def test_no_token_text_in_any_stored_field(database_url: str) -> None:
    engine = open_engine(database_url)
    recorder = AuditRecorder(AuditStore(engine, SERVER))
    recorder.record(_read(0))
    recorder.record(_read(1, outcome=Outcome.DENY))
    query = f"PatientID=p-1&access_token={TOKEN}&code=auth-code-123&client_secret=s3cr3t-value"
    recorder.record(AccessRecord(Action.SEARCH, Outcome.PERMIT, 200, token_hash=token_digest(TOKEN), query=query))
    recorder.close()
    secrets = [TOKEN, TOKEN.split(".")[2], "auth-code-123", "s3cr3t-value", token_digest(TOKEN)]
    with engine.connect() as conn:
        rows = conn.execute(select(audit_events)).fetchall()
        assert len(rows) == 3
        stored = " ".join(str(value) for row in rows for value in row)
        assert not [s for s in secrets if s in stored]
        if engine.dialect.name == "postgresql":
            dump = conn.execute(text("SELECT string_agg(t::text, ' ') FROM audit_events t")).scalar_one()
            assert not [s for s in secrets if s in dump]
    engine.dispose()
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        files = b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
        assert not [s for s in secrets if s.encode() in files]


def test_record_does_not_wait_for_a_slow_writer_and_counts_what_a_full_queue_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "index.sqlite3"
    engine = open_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the database: the audit writer waits for it
    recorder = AuditRecorder(AuditStore(engine, SERVER), queue_size=2, batch=1, put_timeout=0.01)
    total = 12
    with caplog.at_level(logging.WARNING, logger="aperture.audit"):
        for i in range(total):
            recorder.record(_read(i, outcome=Outcome.DENY))  # returns although nothing can be written
    dropped = recorder.dropped
    assert dropped >= total - 3  # at most queue_size queued and one batch in the writer's hands
    assert f"{dropped} audit record(s) dropped so far" in caplog.text
    holder.execute("ROLLBACK")
    holder.close()
    recorder.close()
    assert len(_events(engine)) == total - dropped  # everything that was not dropped is written
    engine.dispose()


_KILLED_WRITER = """
import os, signal, sys
from datetime import UTC, datetime, timedelta
from aperture.audit.events import AccessRecord, Action, Outcome
from aperture.audit.recorder import AuditRecorder
from aperture.audit.store import AuditStore
from aperture.store.engine import open_engine

recorder = AuditRecorder(AuditStore(open_engine(sys.argv[1]), "https://imaging.example.org"))
t0 = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
for i in range(50):
    recorder.record(AccessRecord(Action.SEARCH, Outcome.PERMIT, 200, t0 + timedelta(seconds=i), client_id="c"))
recorder.flush()
os.kill(os.getpid(), signal.SIGKILL)  # no close(): the crash the documentation's window is about
"""


def test_what_was_flushed_survives_a_kill(database_url: str) -> None:
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, database_url], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    engine = open_engine(database_url)
    try:
        assert len(_events(engine)) == 50
    finally:
        engine.dispose()


def test_reads_without_a_token_aggregate_by_address(database_url: str) -> None:
    """`--auth none` has no token: a viewer's frame reads of one study from one address are one event."""
    engine = open_engine(database_url)
    recorder = AuditRecorder(AuditStore(engine, SERVER))
    for i in range(5):
        recorder.record(AccessRecord(Action.READ, Outcome.PERMIT, 200, time=T0 + timedelta(seconds=i),
                                     studies=("7.7",), source_address="10.0.0.1"))  # fmt: skip
    recorder.record(AccessRecord(Action.READ, Outcome.PERMIT, 200, time=T0, studies=("7.7",),
                                 source_address="10.0.0.2"))  # fmt: skip
    recorder.close()
    try:
        events = _events(engine)
    finally:
        engine.dispose()
    counts = sorted(
        next((x["valueInteger"] for x in e.get("extension", []) if x["url"] == COUNT_EXTENSION), 1) for e in events
    )
    assert counts == [1, 5]
