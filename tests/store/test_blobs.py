"""The blob store's temporary files: spares made ahead of need, and what a crash leaves behind."""

from __future__ import annotations

import time
from pathlib import Path

from aperture.store import blobs as blobs_module
from aperture.store.blobs import BlobStore


def _spares(store: BlobStore) -> list[Path]:
    return sorted((store.tmp / "spare").iterdir())


def _wait_for(condition, seconds: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_new_temp_files_are_empty_distinct_and_writable(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    try:
        taken = [store.new_temp() for _ in range(blobs_module.SPARE_TEMPS * 2 + 3)]  # more than are ever ready
        assert len({path for path, _ in taken}) == len(taken)
        for n, (path, handle) in enumerate(taken):
            assert path.stat().st_size == 0
            with handle:
                handle.write(b"x" * n)
            assert path.read_bytes() == b"x" * n
    finally:
        store.close()


def test_spares_are_refilled_in_the_background_and_removed_on_close(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    path, handle = store.new_temp()
    handle.close()
    assert _wait_for(lambda: len(_spares(store)) == blobs_module.SPARE_TEMPS + 1)  # the taken one is there too
    assert all(p.stat().st_size == 0 for p in _spares(store))
    store.close()
    assert _spares(store) == [path]  # the caller's file is the caller's to place or remove


def test_clean_temp_counts_only_cut_short_uploads_and_keeps_the_spare_folder(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    written, handle = store.new_temp()
    with handle:
        handle.write(b"half an upload")
    _, handle = store.new_temp()  # taken, never written: nothing was lost
    handle.close()
    (store.tmp / "old.part").write_bytes(b"from an older version")
    store.close()
    restarted = BlobStore(tmp_path)
    try:
        assert restarted.clean_temp() == 2
        assert list(restarted.tmp.iterdir()) == [restarted.tmp / "spare"]
        assert _spares(restarted) == []
        path, handle = restarted.new_temp()  # and new uploads still find their folder
        handle.close()
        assert path.parent == restarted.tmp / "spare"
    finally:
        restarted.close()
