"""The rendered-image cache: bounded, least-recently-used first, never stale after an overwrite."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from pydicom.uid import generate_uid

from aperture.dicomweb.lru import ByteCache, RecentValues
from tests.conftest import start_server
from tests.helpers import make_instance, stow


def test_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    cost = 100 + ByteCache.ENTRY_OVERHEAD  # what an entry of 100 bytes counts for
    cache = ByteCache(max_bytes=8 * cost)
    cache.put(("a",), b"x" * 100)
    cache.put(("b",), b"x" * 100)
    assert cache.get(("a",)) is not None  # "a" is now the most recent
    for n in range(7):
        cache.put((n,), b"y" * 100)
    assert cache.get(("a",)) is not None, "a recently used entry stays"
    assert cache.get(("b",)) is None, "the least recently used entry goes first"
    cache.put(("big",), b"z" * (cost + 1))  # more than an eighth of the budget: not cached
    assert cache.get(("big",)) is None


def test_tiny_entries_count_what_they_cost_besides_their_bytes() -> None:
    """A 16x16 PNG is ~100 bytes: counted by body alone, a 64 MB cache held 640,000 of them (~300 MB)."""
    cache = ByteCache(max_bytes=64 * 1024)
    for n in range(10_000):
        cache.put((n,), b"p")
    kept = sum(cache.get((n,)) is not None for n in range(10_000))
    assert 0 < kept <= 64 * 1024 // (1 + ByteCache.ENTRY_OVERHEAD)


def test_overwritten_instance_is_rendered_anew(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", config='[store]\nduplicate_policy = "overwrite"\n')
    try:
        with httpx.Client(base_url=srv.dicomweb, timeout=30) as http:
            study, series, sop = generate_uid(), generate_uid(), generate_uid()
            dark = make_instance(study=study, series=series, sop=sop, rows=32, columns=32)
            assert stow(http, [dark]).status_code == 200
            url = f"/studies/{study}/series/{series}/instances/{sop}/rendered"
            first = http.get(url, headers={"Accept": "image/png"}).content
            assert http.get(url, headers={"Accept": "image/png"}).content == first
            flipped = np.flipud(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) % 4096)
            bright = make_instance(study=study, series=series, sop=sop, rows=32, columns=32,
                                   extra={"PixelData": flipped.tobytes()})  # fmt: skip
            assert stow(http, [bright]).status_code == 200
            assert http.get(url, headers={"Accept": "image/png"}).content != first
    finally:
        srv.stop()


def test_recent_values_keep_the_last_ones_used() -> None:
    recent: RecentValues[str, int] = RecentValues(count=2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" is now the most recent
    recent.put("c", 3)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (1, None, 3)


def test_a_header_change_is_drawn_at_once_after_an_overwrite(tmp_path: Path) -> None:
    """Parsed headers are kept for redrawing: an overwrite (MONOCHROME2 to 1) must still show."""
    srv = start_server(tmp_path / "data", config='[store]\nduplicate_policy = "overwrite"\n')
    try:
        with httpx.Client(base_url=srv.dicomweb, timeout=30) as http:
            study, series, sop = generate_uid(), generate_uid(), generate_uid()
            ramp = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 4).tobytes()
            kept = {"study": study, "series": series, "sop": sop, "rows": 32, "columns": 32}
            assert stow(http, [make_instance(**kept, extra={"PixelData": ramp})]).status_code == 200
            url = f"/studies/{study}/series/{series}/instances/{sop}/rendered"
            before = _pixels(http.get(url, params={"window": "2000,4000,linear"}, headers={"Accept": "image/png"}))
            inverted = make_instance(**kept, extra={"PixelData": ramp, "PhotometricInterpretation": "MONOCHROME1"})
            assert stow(http, [inverted]).status_code == 200
            after = _pixels(http.get(url, params={"window": "2000,4000,linear"}, headers={"Accept": "image/png"}))
            assert np.array_equal(after, 255 - before)
    finally:
        srv.stop()


def _pixels(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)), dtype=np.int16)
