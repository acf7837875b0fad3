"""The rendered-image cache: bounded, least-recently-used first, never stale after an overwrite."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from pydicom.uid import generate_uid

from aperture.dicomweb.lru import ByteCache
from tests.conftest import start_server
from tests.helpers import make_instance, stow


def test_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    cache = ByteCache(max_bytes=800)
    cache.put(("a",), b"x" * 100)
    cache.put(("b",), b"x" * 100)
    assert cache.get(("a",)) is not None  # "a" is now the most recent
    for n in range(7):
        cache.put((n,), b"y" * 100)
    assert cache.get(("a",)) is not None, "a recently used entry stays"
    assert cache.get(("b",)) is None, "the least recently used entry goes first"
    cache.put(("big",), b"z" * 500)  # more than an eighth of the budget: not cached
    assert cache.get(("big",)) is None


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
