"""The HTJ2K copy worker keeps out of the uploads' way, still gets its work done, and records each file's SHA-256."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import Engine, select

from aperture.auth.policy import allow_everything
from aperture.config import DuplicatePolicy
from aperture.store import copies as copies_module
from aperture.store.blobs import BlobStore
from aperture.store.copies import CopyWorker
from aperture.store.engine import open_engine
from aperture.store.ingest import Ingest, Upload, prepare_upload
from aperture.store.schema import frame_copies, instances
from tests.helpers import make_instance


def _store(engine: Engine, blobs: BlobStore, files: list[bytes], policy: DuplicatePolicy = "reject") -> None:
    batch = []
    for data in files:
        temp, handle = blobs.new_temp()
        with handle:
            handle.write(data)
        upload = prepare_upload(temp)
        assert isinstance(upload, Upload)
        batch.append((temp, upload))
    outcomes = Ingest(engine, blobs, policy).ingest(batch, allow_everything())
    assert all(outcome.reason is None for outcome in outcomes), outcomes


def _worker_with_work(tmp_path: Path, count: int = 3) -> CopyWorker:
    blobs = BlobStore(tmp_path)
    engine = open_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    _store(engine, blobs, [make_instance(instance_number=n, rows=64, columns=64) for n in range(count)])
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


def _work_through(worker: CopyWorker) -> int:
    """Everything the worker would claim, done in this thread (no timing involved); how many instances."""
    done = 0
    while claims := worker._claim():
        for claim in claims:
            worker._copy(claim)
        done += len(claims)
    return done


def _rows(engine: Engine) -> dict[str, tuple[str, str | None, str]]:
    """sop_uid → (blob, sha256, copy status) of every instance."""
    stmt = select(instances.c.sop_uid, instances.c.blob, instances.c.sha256, frame_copies.c.status).select_from(
        instances.outerjoin(frame_copies, frame_copies.c.instance_pk == instances.c.pk)
    )
    with engine.connect() as conn:
        return {row.sop_uid: (row.blob, row.sha256, row.status) for row in conn.execute(stmt)}


def _file_sha256(blobs: BlobStore, relative: str) -> str:
    return hashlib.sha256(blobs.path(relative).read_bytes()).hexdigest()


def test_the_pass_records_the_sha256_of_each_stored_file_copied_or_not(tmp_path: Path) -> None:
    worker = _worker_with_work(tmp_path, count=2)
    palette = generate_uid()  # an image that gets no copy (status "none"): its file is hashed all the same
    no_copy = make_instance(sop=palette, extra={"PhotometricInterpretation": "PALETTE COLOR"})
    _store(worker.engine, worker.blobs, [no_copy])
    assert all(sha256 is None for _, sha256, _ in _rows(worker.engine).values()), "STOW-RS must not hash"
    assert _work_through(worker) == 3
    rows = _rows(worker.engine)
    assert sorted(status for _, _, status in rows.values()) == ["none", "ready", "ready"]
    assert rows[palette][2] == "none"
    for blob, sha256, _ in rows.values():
        assert sha256 == _file_sha256(worker.blobs, blob)


def test_a_file_that_cannot_be_read_gets_no_sha256(tmp_path: Path) -> None:
    worker = _worker_with_work(tmp_path, count=2)
    (lost_sop, (lost_blob, _, _)), (kept_sop, _) = sorted(_rows(worker.engine).items())
    worker.blobs.path(lost_blob).unlink()
    assert _work_through(worker) == 2
    rows = _rows(worker.engine)
    assert rows[lost_sop][1:] == (None, "none")  # requests hash such a file themselves (and fail as they would)
    assert rows[kept_sop][1] == _file_sha256(worker.blobs, rows[kept_sop][0])


def test_a_replaced_instance_has_no_sha256_until_the_pass_reads_its_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = BlobStore(tmp_path)
    engine = open_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    worker = CopyWorker(engine, blobs)
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    first = make_instance(study=study, series=series, sop=sop, rows=32, columns=32)
    second = make_instance(study=study, series=series, sop=sop, rows=32, columns=32, extra={"ImageComments": "v2"})
    third = make_instance(study=study, series=series, sop=sop, rows=32, columns=32, extra={"ImageComments": "v3"})
    fourth = make_instance(study=study, series=series, sop=sop, rows=32, columns=32, extra={"ImageComments": "v4"})
    _store(engine, blobs, [first], "overwrite")
    _work_through(worker)
    old_blob, old_sha256, _ = _rows(engine)[sop]
    assert old_sha256 == hashlib.sha256(first).hexdigest()

    _store(engine, blobs, [second], "overwrite")  # a deleted row and a new one: no hash of its own yet
    new_blob, new_sha256, _ = _rows(engine)[sop]
    assert new_blob != old_blob and new_sha256 is None
    assert _work_through(worker) == 1
    assert _rows(engine)[sop][1] == hashlib.sha256(second).hexdigest() == _file_sha256(blobs, new_blob)

    # replaced after the worker hashed the file and before it wrote the hash: the new row does not get it
    # (SQLite gives the new row the old row's pk back: the blob condition is what tells them apart)
    _store(engine, blobs, [third], "overwrite")
    (claim,) = worker._claim()
    encode = worker._encode

    def replaced_meanwhile(claim: Any) -> Any:
        _store(engine, blobs, [fourth], "overwrite")
        return encode(claim)

    monkeypatch.setattr(worker, "_encode", replaced_meanwhile)
    worker._copy(claim)
    monkeypatch.undo()
    blob, sha256, _ = _rows(engine)[sop]
    assert blob != claim.blob and sha256 is None, "a replacement was given the hash of the file it replaced"
    assert _work_through(worker) == 1
    assert _rows(engine)[sop][1] == hashlib.sha256(fourth).hexdigest() == _file_sha256(blobs, blob)
