"""The HTJ2K copy worker keeps out of the uploads' way, and still gets its work done."""

from __future__ import annotations

import time
from pathlib import Path

from aperture.auth.policy import allow_everything
from aperture.store import copies as copies_module
from aperture.store.blobs import BlobStore
from aperture.store.copies import CopyWorker
from aperture.store.engine import open_engine
from aperture.store.ingest import Ingest, Upload, prepare_upload
from tests.helpers import make_instance


def _worker_with_work(tmp_path: Path, count: int = 3) -> CopyWorker:
    blobs = BlobStore(tmp_path)
    engine = open_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    batch = []
    for n in range(count):
        temp, handle = blobs.new_temp()
        with handle:
            handle.write(make_instance(instance_number=n, rows=64, columns=64))
        upload = prepare_upload(temp)
        assert isinstance(upload, Upload)
        batch.append((temp, upload))
    Ingest(engine, blobs, "reject").ingest(batch, allow_everything())
    return CopyWorker(engine, blobs, idle_seconds=0.05)


def _wait(condition, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_no_copy_is_made_while_an_upload_is_in_flight_or_just_ended(tmp_path: Path) -> None:
    worker = _worker_with_work(tmp_path)
    worker.uploads_in_flight = 1
    worker.start()
    try:
        time.sleep(0.5)
        assert worker.pending() == 3, "the worker encoded while a STOW-RS request was running"
        worker.uploads_in_flight = 0
        worker.nudge()  # the upload ended just now
        time.sleep(copies_module.SETTLE_SECONDS / 3)
        assert worker.pending() == 3, "the worker did not wait for the uploads to settle"
        assert _wait(lambda: worker.pending() == 0, 30), "the copies were never made"
    finally:
        worker.stop()


def test_a_steady_stream_of_uploads_does_not_starve_the_copies(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(copies_module, "MAX_DEFER_SECONDS", 0.3)
    worker = _worker_with_work(tmp_path, count=2)
    worker.uploads_in_flight = 1  # never ends during this test
    worker.start()
    try:
        assert _wait(lambda: worker.pending() == 0, 30), "uploads kept the worker from ever copying"
    finally:
        worker.stop()
