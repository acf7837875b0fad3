"""Media File IDs: deterministic, PS3.10-legal, and distinct for distinct UIDs."""

from __future__ import annotations

import io
from pathlib import PurePosixPath

import pydicom
import pytest

from aperture.dicom.synthetic import ct_study
from aperture.media.names import component, file_id, instance_path


def test_a_path_is_four_legal_components_derived_from_the_uids_alone() -> None:
    path = instance_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert path == instance_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    parts = file_id(path)
    assert parts[0] == "DICOM" and len(parts) == 4
    assert all(len(p) <= 8 for p in parts)
    assert all(set(p) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") for p in parts)


def test_every_instance_of_a_study_gets_its_own_name() -> None:
    datasets = [pydicom.dcmread(io.BytesIO(raw)) for raw in ct_study(300, 16, 16)]
    names = {component(ds.SOPInstanceUID) for ds in datasets}
    assert len(names) == 300


@pytest.mark.parametrize("bad", ["DICOM/lower", "DICOM/NINECHARS", "DICOM/A-B", "A/B/C/D/E/F/G/H/I", ""])
def test_a_name_media_may_not_hold_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a media File ID"):
        file_id(PurePosixPath(bad))
