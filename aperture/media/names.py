"""File IDs on interchange media: where an instance lives under `DICOM/`.

PS3.10 §8.2 and PS3.12 limit a File ID on media to at most 8 components of at most 8 characters
from A-Z, 0-9 and `_`. The names here are derived from the UIDs alone (study, series, instance),
so the same instance always lands at the same path: a download that is interrupted and rerun finds
the files it already has, and two downloads of one study agree. The hash makes a collision inside
one folder astronomically unlikely (1 in 2^40 per pair); `FileIdCollision` is raised rather than
overwriting if it ever happens.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import PurePosixPath

from aperture.errors import ApertureError

DICOM_FOLDER = "DICOM"
EXCLUDED_FOLDER = "EXCLUDED"  # beside DICOM/: files the media may not hold, kept unchanged (aperture.media.pdi)
_COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")


class FileIdCollision(ApertureError):
    """Two UIDs hashed to one 8-character name in the same folder."""

    default_message = "Two instances would share one file name on the media; nothing was overwritten."


def component(uid: str) -> str:
    """An 8-character File ID component for `uid`: base32 of its SHA-256, letters and digits only."""
    digest = hashlib.sha256(uid.encode("ascii")).digest()
    return base64.b32encode(digest[:5]).decode("ascii")  # 40 bits: exactly 8 characters, no padding


def instance_path(study_uid: str, series_uid: str, sop_instance_uid: str) -> PurePosixPath:
    """The media path of an instance: `DICOM/<study>/<series>/<instance>`, each part from its UID."""
    return PurePosixPath(DICOM_FOLDER, component(study_uid), component(series_uid), component(sop_instance_uid))


def excluded_path(media_path: PurePosixPath) -> PurePosixPath:
    """Where a refused file goes: `EXCLUDED/<study>/<series>/<instance>` instead of `DICOM/...`."""
    return PurePosixPath(EXCLUDED_FOLDER, *media_path.parts[1:])


def file_id(path: PurePosixPath) -> list[str]:
    """The Referenced File ID (0004,1500) components of a media path; refuses a name media may not hold."""
    parts = list(path.parts)
    if not 1 <= len(parts) <= 8 or not all(_COMPONENT.match(p) for p in parts):
        raise ValueError(f"{str(path)!r} is not a media File ID (1-8 components of A-Z, 0-9, _; 8 characters each)")
    return parts
