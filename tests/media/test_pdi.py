"""write_pdi: a download folder made into IHE PDI media that dciodvfy, dcmtk and pydicom accept, bytes untouched."""

from __future__ import annotations

import hashlib
import io
import shutil
import warnings
from pathlib import Path

import pydicom

from aperture.dicom.synthetic import ct_study
from aperture.media.dicomdir import read_header
from aperture.media.names import EXCLUDED_FOLDER, instance_path
from aperture.media.pdi import write_pdi
from tests.data import PYDICOM_DATA
from tests.media.checks import assert_pdi_valid, dcmmkdir_profile_errors


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(folder: Path, files: list[bytes]) -> dict[str, str]:
    """Lay the files out as `aperture download` does; SOP Instance UID -> sha256 of the bytes."""
    digests = {}
    for raw in files:
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
        target = folder / instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
        digests[str(ds.SOPInstanceUID)] = _sha(raw)
    return digests


def test_a_ct_study_becomes_media_every_tool_accepts_with_the_bytes_unchanged(tmp_path: Path) -> None:
    digests = _download(tmp_path, ct_study(40, 64, 64))
    summary = write_pdi(tmp_path, institution="Aperture test")
    assert summary.complete and summary.instances == 40 and summary.studies == 1
    references = assert_pdi_valid(tmp_path)
    assert {uid: _sha(path.read_bytes()) for uid, path in references.items()} == digests
    assert summary.profile == "STD-GEN-CD"
    assert dcmmkdir_profile_errors(tmp_path, "-Pgp") == []
    assert summary.previews == 1 and list((tmp_path / "IHE_PDI").rglob("*.JPG"))
    page = (tmp_path / "INDEX.HTM").read_text(encoding="utf-8")
    assert '<img src="IHE_PDI/' in page and "40 images" in page
    assert "Aperture test" in (tmp_path / "README.TXT").read_text(encoding="utf-8")


def test_rerunning_gives_the_same_media_and_keeps_the_files(tmp_path: Path) -> None:
    digests = _download(tmp_path, ct_study(5, 16, 16))
    write_pdi(tmp_path)
    write_pdi(tmp_path)
    references = assert_pdi_valid(tmp_path)
    assert {uid: _sha(path.read_bytes()) for uid, path in references.items()} == digests


def test_the_odd_files_of_pydicom_data_go_on_media_or_are_reported_never_dropped(tmp_path: Path) -> None:
    files = []
    for path in PYDICOM_DATA:
        try:
            header = read_header(str(path))
            if "SOPInstanceUID" in header and "StudyInstanceUID" in header and "SeriesInstanceUID" in header:
                files.append(path.read_bytes())
        except Exception:
            continue
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        digests = _download(tmp_path, files)
        summary = write_pdi(tmp_path)
        references = assert_pdi_valid(tmp_path)
    assert summary.instances == len(references) and summary.instances + len(summary.refused) == len(digests)
    assert summary.refused, "pydicom-data holds instances with UIDs a DICOMDIR cannot repeat"
    readme = (tmp_path / "README.TXT").read_text(encoding="utf-8")
    for refusal in summary.refused:
        assert refusal.path in readme
        kept = tmp_path / EXCLUDED_FOLDER / Path(refusal.path).relative_to("DICOM")
        assert kept.is_file(), f"{refusal.path} was dropped"
    kept_digests = {_sha(p.read_bytes()) for p in (tmp_path / EXCLUDED_FOLDER).rglob("*") if p.is_file()}
    on_media = {uid: _sha(path.read_bytes()) for uid, path in references.items()}
    assert set(on_media.values()) | kept_digests == set(digests.values())  # every byte as it came
    assert all(digests[uid] == digest for uid, digest in on_media.items())
    assert summary.invented and "in the DICOMDIR record only" in readme
    assert len({s for s in summary.syntaxes}) > 3  # compressed, big-endian, deflated: kept as they were


def test_a_file_that_is_not_dicom_is_reported_and_kept(tmp_path: Path) -> None:
    _download(tmp_path, ct_study(2, 16, 16))
    stray = tmp_path / "DICOM" / "NOTDICOM"
    shutil.copyfile(Path(__file__), stray)
    summary = write_pdi(tmp_path)
    assert [r.path for r in summary.refused] == ["DICOM/NOTDICOM"]
    assert (tmp_path / EXCLUDED_FOLDER / "NOTDICOM").is_file() and not stray.exists()
    assert_pdi_valid(tmp_path)
