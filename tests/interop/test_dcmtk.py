"""dcmtk as an independent reader: what Aperture writes (transcoded files, zip members) is valid DICOM."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.helpers import store_sample

pytestmark = pytest.mark.interop
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _dcmtk(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} (Debian package dcmtk) is missing: `make install` installs it")
    return path


def _store(client: httpx.Client, name: str) -> str:
    return store_sample(client, name)[1]


@pytest.mark.parametrize(
    "name", ["JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_bigendian.dcm"]
)
def test_transcoded_instances_are_valid_part10_for_dcmtk(client: httpx.Client, tmp_path: Path, name: str) -> None:
    url = _store(client, name)
    response = client.get(url, headers={"Accept": f"application/dicom; transfer-syntax={EXPLICIT_LE}"})
    assert response.status_code == 200
    path = tmp_path / "out.dcm"
    path.write_bytes(response.content)
    assert subprocess.run([_dcmtk("dcmftest"), str(path)], capture_output=True, text=True).stdout.startswith("yes:")
    dump = subprocess.run([_dcmtk("dcmdump"), "-M", str(path)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert "LittleEndianExplicit" in dump.stdout


def test_zip_members_are_valid_part10_for_dcmtk(client: httpx.Client, tmp_path: Path) -> None:
    url = _store(client, "CT_small.dcm")
    study = url.split("/series/")[0]
    archive = zipfile.ZipFile(io.BytesIO(client.get(study, params={"accept": "application/zip"}).content))
    for name in archive.namelist():
        path = tmp_path / Path(name).name
        path.write_bytes(archive.read(name))
        result = subprocess.run([_dcmtk("dcmftest"), str(path)], capture_output=True, text=True)
        assert result.stdout.startswith("yes:"), result.stdout
