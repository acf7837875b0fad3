"""Background HTJ2K copies: each losslessly stored frame gets a .202 codestream for fast viewing.

A worker thread per server process claims instances that have no copy yet (claims are rows in
`frame_copies`, written under the store's write lock, so two processes never do the same work),
encodes their frames with `aperture.dicom.htj2k`, writes the codestreams back to back into one
derived file next to the instance, and records where each frame is. The stored original is never
touched. Work is off the STOW-RS request path and yields to uploads: while any STOW-RS request is
in flight in this process, and for `SETTLE_SECONDS` after the last one ended (a client sending a
study in several requests leaves short gaps between them), the worker waits, also between the
instances of a claimed batch. A crash leaves claims behind; claims older than
`STALE_CLAIM_SECONDS` are taken again.

The same pass records the stored file's SHA-256 on its instance row (`instances.sha256`), for every
claim, whether a copy is made or not: a download that asks for `Repr-Digest` (RFC 9530) is then
answered from the row instead of hashing the file on every request, and STOW-RS still does not pay
for SHA-256 (see `aperture.store.ingest.file_digest`). The hash is written only if the row still
names the file that was read, so a replaced instance never gets its predecessor's value; a file
that cannot be read gets none, and requests hash it themselves, as for instances not yet reached.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
from sqlalchemy import Engine, and_, delete, func, insert, or_, select, update

from aperture.dicom.frames import FrameIndex
from aperture.dicom.htj2k import HTJ2K_LOSSLESS_RPCL, HTJ2KError, available, copy_problem, encode_frame
from aperture.store.blobs import BlobStore
from aperture.store.engine import write_transaction
from aperture.store.schema import frame_copies, instances, studies

log = logging.getLogger("aperture.copies")
STALE_CLAIM_SECONDS = 600
SETTLE_SECONDS = 0.3  # quiet time after an upload before the worker takes the CPU again
MAX_DEFER_SECONDS = 10.0  # under a steady stream of uploads, still copy one instance this often
CLAIM_BATCH = 4


@dataclass(frozen=True)
class _Claim:
    pk: int
    blob: str
    transfer_syntax: str
    study_uid: str
    sop_uid: str


class CopyWorker:
    """Computes HTJ2K copies in a daemon thread until `stop` is called."""

    def __init__(self, engine: Engine, blobs: BlobStore, *, idle_seconds: float = 1.0) -> None:
        self.engine = engine
        self.blobs = blobs
        self.idle_seconds = idle_seconds
        self.uploads_in_flight = 0  # STOW-RS requests running in this process (they come first)
        self._last_upload = 0.0  # time.monotonic() when the last one ended
        self._last_copy = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="htj2k-copies", daemon=True)

    def start(self) -> None:
        if not available():
            log.warning("imagecodecs has no HTJ2K support here: frames are served as stored only")
            return
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def nudge(self) -> None:
        """New instances were stored: look for work once uploads have settled, not at the next idle tick."""
        self._last_upload = time.monotonic()
        self._wake.set()

    def _uploading(self) -> bool:
        """Whether to keep out of the uploads' way (never for longer than MAX_DEFER_SECONDS)."""
        now = time.monotonic()
        if now - self._last_copy > MAX_DEFER_SECONDS:
            return False
        return bool(self.uploads_in_flight) or now - self._last_upload < SETTLE_SECONDS

    def pending(self) -> int:
        """Instances with frames still waiting for (or getting) their copy."""
        stmt = (
            select(func.count())
            .select_from(instances.outerjoin(frame_copies, frame_copies.c.instance_pk == instances.c.pk))
            .where(
                instances.c.num_frames > 0,
                or_(frame_copies.c.instance_pk.is_(None), frame_copies.c.status == "working"),
            )
        )
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._uploading():
                self._stop.wait(0.05)
                continue
            try:
                claims = self._claim()
            except Exception:
                log.exception("claiming HTJ2K work failed")
                claims = []
            if not claims:
                self._last_copy = time.monotonic()  # nothing waits: the deferral clock starts again
                self._wake.wait(self.idle_seconds)
                self._wake.clear()
                continue
            for claim in claims:
                while self._uploading() and not self._stop.is_set():
                    self._stop.wait(0.05)
                if self._stop.is_set():
                    return
                self._copy(claim)
                self._last_copy = time.monotonic()

    def _claim(self) -> list[_Claim]:
        now = int(time.time())
        stale = now - STALE_CLAIM_SECONDS
        candidates = (
            select(
                instances.c.pk, instances.c.blob, instances.c.transfer_syntax, studies.c.study_uid, instances.c.sop_uid
            )
            .select_from(
                instances.join(studies, instances.c.study_pk == studies.c.pk).outerjoin(
                    frame_copies, frame_copies.c.instance_pk == instances.c.pk
                )
            )
            .where(
                instances.c.num_frames > 0,
                or_(
                    frame_copies.c.instance_pk.is_(None),
                    and_(frame_copies.c.status == "working", frame_copies.c.updated < stale),
                ),
            )
            .order_by(instances.c.pk)
            .limit(CLAIM_BATCH)
        )
        with write_transaction(self.engine) as conn:
            rows = [_Claim(*row) for row in conn.execute(candidates)]
            if rows:
                conn.execute(delete(frame_copies).where(frame_copies.c.instance_pk.in_([r.pk for r in rows])))
                conn.execute(
                    insert(frame_copies),
                    [
                        {"instance_pk": r.pk, "status": "working", "transfer_syntax": HTJ2K_LOSSLESS_RPCL,
                         "note": "", "updated": now}
                        for r in rows
                    ],
                )  # fmt: skip
        return rows

    def _copy(self, claim: _Claim) -> None:
        sha256 = self._sha256(claim)
        try:
            data, index = self._encode(claim)
        except (HTJ2KError, _NoCopy) as exc:
            self._finish(claim, "none", note=str(exc), sha256=sha256)
            return
        except Exception as exc:
            log.warning("no HTJ2K copy for %s: %s", claim.sop_uid, exc)
            self._finish(claim, "none", note=f"{type(exc).__name__}: {exc}"[:500], sha256=sha256)
            return
        relative = self.blobs.write_derived(data, claim.study_uid, claim.sop_uid, "htj2k")
        if not self._finish(claim, "ready", blob=relative, frames=index.to_json(), sha256=sha256):
            self.blobs.remove(relative)  # the instance went away meanwhile

    def _sha256(self, claim: _Claim) -> str | None:
        """Hex SHA-256 of the stored file; None when it cannot be read (requests then hash it themselves)."""
        try:
            with open(self.blobs.path(claim.blob), "rb") as handle:
                return hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            log.warning("no SHA-256 recorded for %s: %s", claim.sop_uid, exc)
            return None

    def _encode(self, claim: _Claim) -> tuple[bytes, FrameIndex]:
        path = self.blobs.path(claim.blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            problem = copy_problem(ds, claim.transfer_syntax)
            if problem:
                raise _NoCopy(problem)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            chunks: list[bytes] = []
            runs: list[tuple[tuple[int, int], ...]] = []
            offset = 0
            for number in range(frames):
                pixels = pydicom.pixels.pixel_array(ds, index=number)
                codestream = encode_frame(np.asarray(pixels))
                chunks.append(codestream)
                runs.append(((offset, len(codestream)),))
                offset += len(codestream)
        return b"".join(chunks), FrameIndex(encapsulated=True, transfer_syntax=HTJ2K_LOSSLESS_RPCL, frames=tuple(runs))

    def _finish(self, claim: _Claim, status: str, *, blob: str | None = None, frames: str | None = None,
                note: str = "", sha256: str | None = None) -> bool:  # fmt: skip
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(frame_copies)
                .where(frame_copies.c.instance_pk == claim.pk)
                .values(status=status, blob=blob, frames=frames, note=note, updated=int(time.time()))
            )
            if sha256 is not None:  # only on the row that still names the file hashed (never a replacement's)
                conn.execute(
                    update(instances)
                    .where(instances.c.pk == claim.pk, instances.c.blob == claim.blob)
                    .values(sha256=sha256)
                )
            return bool(result.rowcount)


class _NoCopy(Exception):
    """This instance gets no copy (the message says why); recorded, not retried."""
