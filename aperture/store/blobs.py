"""Part-10 files on disk, written so that a crash leaves the whole file or nothing.

Uploads land in `tmp/` under the data folder, are fsync'ed, then renamed into `blobs/`, whose
directory is fsync'ed too; only then may the index point at them. Names are derived from a hash of
the SOP Instance UID plus a random suffix (so an overwrite never replaces bytes an index row still
points at): nothing a client sends ever becomes part of a path. Leftovers in `tmp/` after a crash
are removed at startup; a blob whose index row was never committed is unreachable and harmless.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import secrets
import shutil
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

_BLOB_NAME = re.compile(r"^blobs/[0-9a-f]{2}/[0-9a-f]{32}/[0-9a-f]{32}-[0-9a-f]{8}\.(dcm|htj2k)$")


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return function


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start write-back of the file's dirty pages; do not wait for it


def _start_writeback(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # already placed or discarded: nothing to hurry
    try:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # type: ignore[misc]
    finally:
        os.close(fd)


def _syncfs(path: Path) -> bool:
    """syncfs(2) on the filesystem holding `path`; False when unavailable (caller falls back)."""
    if _SYNCFS is None:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs failed on {path}: {os.strerror(error)}")
    finally:
        os.close(fd)
    return True


def _flush(path: Path, sync: Callable[[int], None]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        sync(fd)
    finally:
        os.close(fd)


# Empty upload files kept ready in tmp/spare/. Creating a file costs ext4 0.1-0.4 ms when many
# inodes were freed in the last minutes (its allocator skips those): 15 ms of a 50-instance STOW
# batch, measured here. A background thread makes them ahead of need, off the request's path.
SPARE_TEMPS = 8


class _SpareTemps:
    """A few empty, open files in `folder`, refilled by a background thread as they are taken."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(exist_ok=True)
        self.ready: deque[tuple[Path, BinaryIO]] = deque()
        self.wanted = threading.Event()
        self.stopped = False
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def make(self) -> tuple[Path, BinaryIO]:
        path = self.folder / f"{secrets.token_hex(12)}.part"
        return path, open(path, "xb")

    def take(self) -> tuple[Path, BinaryIO]:
        try:
            spare = self.ready.popleft()
        except IndexError:
            spare = self.make()
        if self.thread is None:
            with self.lock:
                if self.thread is None and not self.stopped:
                    self.thread = threading.Thread(target=self._refill, name="aperture-spare-temps", daemon=True)
                    self.thread.start()
        self.wanted.set()
        return spare

    def _refill(self) -> None:
        while not self.stopped:
            self.wanted.wait()
            self.wanted.clear()
            try:
                while not self.stopped and len(self.ready) < SPARE_TEMPS:
                    self.ready.append(self.make())
            except OSError:
                pass  # a full or read-only disk: uploads create their own files, and report the error
        self._discard()

    def stop(self) -> None:
        self.stopped = True
        self.wanted.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self._discard()

    def _discard(self) -> None:
        while self.ready:
            try:
                path, handle = self.ready.popleft()
            except IndexError:
                return
            handle.close()
            path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _digest(uid: str) -> str:
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._known_dirs: set[Path] = set()
        self._new_dirs: set[Path] = set()
        # sync_file_range can block while the disk queue is full: never on a request's thread
        self._writeback = ThreadPoolExecutor(1, "aperture-writeback") if _SYNC_FILE_RANGE is not None else None
        self._spares = _SpareTemps(self.tmp / "spare")

    def close(self) -> None:
        """Stop the background threads and remove the spare upload files."""
        self._spares.stop()
        if self._writeback is not None:
            self._writeback.shutdown(wait=True)

    def clean_temp(self) -> int:
        """Remove partial uploads left by a crash, and spare files; returns how many partial uploads.

        Only while no upload can be running: at startup, before any request is served.
        """
        count = 0
        for entry in self.tmp.iterdir():
            if entry == self._spares.folder:
                for spare in entry.iterdir():
                    count += _size(spare) > 0  # a spare that was written to: an upload cut short
                    spare.unlink(missing_ok=True)
            elif entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                count += 1
            else:
                entry.unlink(missing_ok=True)
                count += 1
        return count

    def new_temp(self) -> tuple[Path, BinaryIO]:
        """An empty file under `tmp/`, open for writing, for one upload or derived file.

        The caller renames it into place (`place`) or unlinks it; the spare files ready for later
        uploads (`tmp/spare/`) are always empty.
        """
        return self._spares.take()

    def start_writeback(self, temp: Path) -> None:
        """Let the disk start on a finished upload now, so that `make_durable` waits for less.

        A hint (Linux sync_file_range, from a background thread); durability still comes from
        `make_durable`.
        """
        if self._writeback is not None:
            self._writeback.submit(_start_writeback, temp)

    def make_durable(self, temps: list[Path]) -> None:
        """Flush the bytes of uploaded files to disk before they are given their final names.

        On Linux one syncfs(2) flushes a whole batch in a single journal commit, where fdatasync
        per file would commit once per instance; elsewhere each file is fdatasync'ed.
        """
        if not temps:
            return
        if _syncfs(self.root):
            return
        for temp in temps:
            _flush(temp, os.fdatasync)

    def write_derived(self, data: bytes, study_uid: str, sop_uid: str, suffix: str) -> str:
        """Store bytes derived from an instance (e.g. its HTJ2K frames) next to it, whole or not at all.

        Derived files can always be computed again, so they are flushed on their own, not batched.
        """
        temp, handle = self.new_temp()
        try:
            with handle:
                handle.write(data)
                handle.flush()
                os.fdatasync(handle.fileno())
            relative = self.place(temp, study_uid, sop_uid, suffix=suffix)
            _flush((self.root / relative).parent, os.fsync)  # its name too; no filesystem-wide sync here
            return relative
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def place(self, temp: Path, study_uid: str, sop_uid: str, *, suffix: str = "dcm") -> str:
        """Move a durable `temp` to its final name; returns the path relative to the root.

        Instances of a study share a folder: a study's retrieve reads one directory, and a STOW
        batch needs one directory sync per study rather than one per instance.
        """
        study = _digest(study_uid)
        relative = f"blobs/{study[:2]}/{study[2:34]}/{_digest(sop_uid)[:32]}-{secrets.token_hex(4)}.{suffix}"
        final = self.root / relative
        if final.parent not in self._known_dirs:
            if not final.parent.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                self._new_dirs.update({final.parent.parent, self.blobs})  # their entries changed too
            self._known_dirs.add(final.parent)
        os.rename(temp, final)
        return relative

    def sync_dirs(self, relatives: list[str]) -> None:
        """Make the renames (and new folders) durable: one syncfs, or an fsync per directory."""
        directories = {(self.root / r).parent for r in relatives} | self._new_dirs
        self._new_dirs = set()
        if not directories or _syncfs(self.root):
            return
        for directory in directories:
            _flush(directory, os.fsync)

    def path(self, relative: str) -> Path:
        """Absolute path of a stored blob; refuses any name this store would not have made."""
        if not _BLOB_NAME.match(relative):
            raise ValueError(f"Blob path {relative!r} is not a name this store makes.")
        return self.root / relative

    def remove(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)
