"""Which attributes belong to which query level, and which keys QIDO-RS answers by default.

Cited from PS3.18 §10.6.3.3 (Tables 10.6.3-3, -4, -5: default return attributes for study, series
and instance searches) and PS3.18 Table 10.6.1-5 (required matching keys). Study-level attributes
are the Patient and Study modules (PS3.3 C.7.1.1, C.7.2.1, C.7.2.2); the index keeps every one of
them that the first stored instance carries, so `includefield` can name any of them.
"""

from __future__ import annotations

from enum import StrEnum


class Level(StrEnum):
    STUDY = "STUDY"
    SERIES = "SERIES"
    INSTANCE = "IMAGE"


# PS3.3 C.7.2.1 General Study, C.7.2.2 Patient Study, C.7.1.1 Patient (group 0010 is taken whole).
STUDY_TAGS = frozenset(
    {
        0x00080005, 0x00080020, 0x00080030, 0x00080050, 0x00080051, 0x00080056, 0x00080061, 0x00080062,
        0x00080090, 0x00080096, 0x0008009C, 0x00080201, 0x00081030, 0x00081032, 0x00081048, 0x00081049,
        0x00081060, 0x00081062, 0x00081080, 0x00081084, 0x0020000D, 0x00200010, 0x00321032, 0x00321033,
        0x00321060, 0x00321064, 0x00380010, 0x00380014, 0x00380060, 0x00400031, 0x00400032, 0x00400033,
    }
)  # fmt: skip

# PS3.3 C.7.3.1 General Series, C.7.4.1 Frame of Reference, C.7.5.1 General Equipment (subset).
SERIES_TAGS = frozenset(
    {
        0x00080021, 0x00080031, 0x00080060, 0x00080064, 0x00080070, 0x00080080, 0x00081010, 0x0008103E,
        0x00081040, 0x00081050, 0x00081070, 0x00081090, 0x00081111, 0x00180015, 0x00181030, 0x00185100,
        0x0020000E, 0x00200011, 0x00200052, 0x00200060, 0x00201040, 0x00400244, 0x00400245, 0x00400253,
        0x00400254, 0x00400260, 0x00400275, 0x00280108, 0x00280109,
    }
)  # fmt: skip


def level_of(tag: int) -> Level:
    """The query level an attribute lives at: patient data rides with the study."""
    if tag >> 16 == 0x0010 or tag in STUDY_TAGS:
        return Level.STUDY
    if tag in SERIES_TAGS:
        return Level.SERIES
    return Level.INSTANCE


# Default return keys (PS3.18 Tables 10.6.3-3/-4/-5). Computed ones are filled in by the index.
STUDY_RETURN = (
    0x00080005, 0x00080020, 0x00080030, 0x00080050, 0x00080056, 0x00080061, 0x00080090, 0x00080201,
    0x00081030, 0x00081190, 0x00100010, 0x00100020, 0x00100021, 0x00100024, 0x00100030, 0x00100040,
    0x0020000D, 0x00200010, 0x00201206, 0x00201208,
)  # fmt: skip
SERIES_RETURN = (
    0x00080005, 0x00080056, 0x00080060, 0x00080201, 0x0008103E, 0x00081190, 0x0020000D, 0x0020000E,
    0x00200011, 0x00201209, 0x00400244, 0x00400245, 0x00400275,
)  # fmt: skip
INSTANCE_RETURN = (
    0x00080005, 0x00080016, 0x00080018, 0x00080056, 0x00080201, 0x00081190, 0x0020000D, 0x0020000E,
    0x00200013, 0x00280008, 0x00280010, 0x00280011, 0x00280100,
)  # fmt: skip


# ModalitiesInStudy: computed by the index from the study's series, and what Modality means at study level.
MODALITIES_IN_STUDY = 0x00080061
