"""HTJ2K Lossless RPCL copies of frames (1.2.840.10008.1.2.4.202), the fast path to a first image.

OHIF 3.13 decodes HTJ2K natively and can draw a reduced resolution from a prefix of an RPCL
codestream; its encoder and decoder (OpenJPH, through imagecodecs) are an order of magnitude faster
than JPEG 2000. This module turns decoded frames into conformant .202 codestreams: reversible
(lossless), RPCL progression, a TLM marker segment and one tile-part per resolution, with enough
decomposition levels that the smallest resolution is at most 64 pixels (PS3.5 §10.18 / A.4.11).

It only encodes what it can reproduce exactly: integer pixels of at most 16 bits, one sample
(MONOCHROME1/2) or three (RGB). Anything else (palette, YBR stored natively, float, 32-bit) gets no
copy and is served as stored. Storage and scheduling of copies are not this module's business.
"""

from __future__ import annotations

import math

import imagecodecs
import numpy as np
from pydicom.dataset import Dataset

HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K_MEDIA_TYPE = "image/jphc"
_LOSSY = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
                    "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203"})  # fmt: skip


class HTJ2KError(ValueError):
    """A frame cannot be given an exact HTJ2K copy; the message says why."""


def copy_problem(ds: Dataset, transfer_syntax: str) -> str | None:
    """Why this instance gets no HTJ2K copy, or None when it can have one."""
    if transfer_syntax in _LOSSY:
        return "its pixel data is lossy-compressed; a copy would only repeat the loss"
    if transfer_syntax == HTJ2K_LOSSLESS_RPCL:
        return "it is stored as HTJ2K RPCL already"
    if "PixelData" not in ds:
        return "it has no Pixel Data"
    try:
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        photometric = str(ds.PhotometricInterpretation).strip()
    except (AttributeError, TypeError, ValueError):
        return "its Image Pixel attributes are incomplete"
    if bits not in (8, 16):
        return f"Bits Allocated {bits} is not 8 or 16"
    if (samples, photometric) not in ((1, "MONOCHROME1"), (1, "MONOCHROME2"), (3, "RGB")):
        return f"{photometric} with {samples} sample(s) per pixel is not copied"
    return None


def decomposition_levels(rows: int, columns: int) -> int:
    """Levels so the smallest resolution is at most 64 pixels, but never more than the image allows."""
    wanted = max(1, math.ceil(math.log2(max(rows, columns) / 64))) if max(rows, columns) > 64 else 1
    possible = max(0, int(math.floor(math.log2(max(1, min(rows, columns))))))
    return max(0, min(max(wanted, 5), possible))


def encode_frame(pixels: np.ndarray) -> bytes:
    """One decoded frame (rows × columns, or rows × columns × 3) as a .202 codestream."""
    if pixels.dtype.kind not in "iu" or pixels.dtype.itemsize > 2:
        raise HTJ2KError(f"pixels of type {pixels.dtype} cannot be encoded losslessly here")
    rows, columns = pixels.shape[:2]
    return bytes(
        imagecodecs.htj2k_encode(
            np.ascontiguousarray(pixels),
            reversible=True,
            resolutions=decomposition_levels(rows, columns),  # imagecodecs counts decomposition levels
            tlm=True,
            tilepart=True,
        )
    )


def decode_frame(codestream: bytes) -> np.ndarray:
    return np.asarray(imagecodecs.htj2k_decode(codestream))


def available() -> bool:
    """Whether this imagecodecs build has HTJ2K (OpenJPH) support."""
    return bool(getattr(getattr(imagecodecs, "HTJ2K", None), "available", False))
