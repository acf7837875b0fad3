"""Full fidelity over files no one here wrote: stored bytes come back byte-identical, or STOW refuses.

For every distinct instance in pydicom-data: STOW-RS it alone, then either it is referenced and
WADO-RS with transfer-syntax=* returns exactly the uploaded bytes, or it is in FailedSOPSequence
with a FailureReason. Never a 5xx, never a silent change.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.data import PYDICOM_DATA
from tests.helpers import sequence_items, stow

ACCEPT_AS_STORED = "application/dicom; transfer-syntax=*"


@pytest.mark.parametrize("path", PYDICOM_DATA, ids=lambda p: p.name)
def test_stored_bytes_come_back_identical_or_are_refused(client: httpx.Client, path: Path) -> None:
    original = path.read_bytes()
    response = stow(client, [original])
    assert response.status_code < 500, response.text
    answer = response.json()
    referenced = sequence_items(answer, "00081199")
    failed = sequence_items(answer, "00081198")
    assert len(referenced) + len(failed) == 1, answer
    if failed:  # PS3.18 Table 10.5.3-1: 400 when not understood (C000), else 409
        assert response.status_code == (400 if failed[0]["00081197"]["Value"] == [0xC000] else 409)
        assert failed[0]["00081197"]["Value"][0] > 0, "a refusal must carry a FailureReason"
        return
    assert response.status_code == 200
    url = referenced[0]["00081190"]["Value"][0]
    served = client.get(url, headers={"Accept": ACCEPT_AS_STORED})
    assert served.status_code == 200, served.text
    assert served.content == original, f"{path.name}: served bytes differ from the uploaded file"


def test_most_of_pydicom_data_is_stored(client: httpx.Client) -> None:
    """Guards against a server that passes the test above by refusing everything."""
    identical = refused = 0
    for path in PYDICOM_DATA:
        original = path.read_bytes()
        answer = stow(client, [original]).json()
        referenced = sequence_items(answer, "00081199")
        if not referenced:
            refused += 1
            continue
        served = client.get(referenced[0]["00081190"]["Value"][0], headers={"Accept": ACCEPT_AS_STORED})
        identical += served.content == original
    print(f"\npydicom-data: {identical} of {len(PYDICOM_DATA)} distinct files stored byte-exact, {refused} refused")
    assert identical + refused == len(PYDICOM_DATA)
    assert identical >= 130
