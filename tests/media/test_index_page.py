"""INDEX.HTM opens from the media folder in Debian's chromium with scripts off: no server, every preview drawn."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from aperture.dicom.synthetic import ct_study
from aperture.media.names import instance_path
from aperture.media.pdi import write_pdi
from tests.browser.launch import chromium

pytestmark = pytest.mark.interop


def test_the_index_page_shows_every_series_preview_from_the_folder(tmp_path: Path) -> None:
    for seed in (1701, 1702):
        for raw in ct_study(5, 64, 64, seed=seed, patient_name="Alvarez^Maya"):
            ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
            target = tmp_path / instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(raw)
    assert write_pdi(tmp_path).previews == 2
    with chromium() as browser:
        context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto((tmp_path / "INDEX.HTM").as_uri())
        page.wait_for_load_state("load")
        assert "Alvarez Maya" in page.inner_text("body")
        drawn = page.eval_on_selector_all("img", "images => images.map(i => i.complete && i.naturalWidth > 0)")
        assert drawn == [True, True]
        assert all(url.startswith("file://") for url in requests), requests
        context.close()
