"""Part-10 files on disk, written so that a crash leaves the whole file or nothing.

Uploads land in `tmp/` under the data folder, are fsync'ed, then renamed into `blobs/`, whose
directory is fsync'ed too; only then may the index point at them. Names are derived from a hash of
the SOP Instance UID plus a random suffix (so an overwrite never replaces bytes an index row still
points at): nothing a client sends ever becomes part of a path. Leftovers in `tmp/` after a crash
are removed at startup; a blob whose index row was never committed is unreachable and harmless.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def clean_temp(self) -> int:
        """Remove partial uploads left by a crash; returns how many."""
        count = 0
        for entry in self.tmp.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            count += 1
        return count

    def new_temp(self) -> tuple[Path, BinaryIO]:
        path = self.tmp / f"{secrets.token_hex(12)}.part"
        return path, open(path, "xb")

    def place(self, temp: Path, sop_uid: str, *, sync: bool = True) -> str:
        """Make `temp` durable and move it to its final name; returns the path relative to the root."""
        digest = hashlib.sha256(sop_uid.encode("ascii", "replace")).hexdigest()
        relative = f"blobs/{digest[:2]}/{digest[2:4]}/{digest}-{secrets.token_hex(4)}.dcm"
        final = self.root / relative
        if sync:
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(temp, final)
        return relative

    def sync_dirs(self, relatives: list[str]) -> None:
        """fsync the directories that received renames, once each, so the names are durable."""
        for directory in {(self.root / r).parent for r in relatives}:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def path(self, relative: str) -> Path:
        """Absolute path of a stored blob; refuses anything that would leave the blob folder."""
        candidate = (self.root / relative).resolve()
        if os.path.commonpath([candidate, self.blobs]) != str(self.blobs):
            raise ValueError(f"Blob path {relative!r} is outside the store.")
        return candidate

    def remove(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)
