"""pydicom-data as test vectors: the first file of each SOP Instance UID, with readable ids."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files


def distinct_instances() -> list[Path]:
    """Every regular file of pydicom's test data, keeping the first one per SOP Instance UID.

    Files whose UID cannot be read are kept too (each is its own case): the server must refuse
    them cleanly, which is part of what the fidelity test checks.
    """
    seen: set[str] = set()
    chosen: list[Path] = []
    for name in sorted(get_testdata_files()):
        path = Path(name)
        if not path.is_file():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                uid = str(pydicom.dcmread(path, stop_before_pixels=True, force=True).get("SOPInstanceUID", ""))
        except Exception:
            uid = ""
        key = uid or f"unreadable:{path}"
        if key in seen:
            continue
        seen.add(key)
        chosen.append(path)
    return chosen


PYDICOM_DATA = distinct_instances()
