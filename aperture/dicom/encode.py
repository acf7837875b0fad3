"""Lossless compression of single frames on request: HTJ2K, JPEG 2000, JPEG-LS and RLE.

A client that names a compressed transfer syntax for `/frames` gets its frames encoded on demand
(the HTTP layer keeps recent answers in a bounded cache). Only lossless targets are offered, and
only from pixels that can be reproduced exactly: a lossy original is never re-encoded, because that
would compound the loss while claiming a lossless syntax.

Encoders: imagecodecs (OpenJPH for HTJ2K, OpenJPEG for JPEG 2000, CharLS for JPEG-LS) and pydicom's
RLE Lossless encoder (through pylibjpeg-rle when installed, else its own; never gdcm's, whose
assertion on a small frame, e.g. 3x3 RGB, aborts the whole server process). JPEG-LS is offered
for unsigned pixels only: imagecodecs' CharLS binding takes no signed data.
"""

from __future__ import annotations

import imagecodecs
import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.encoders import RLELosslessEncoder

from aperture.dicom.htj2k import HTJ2K_LOSSLESS_RPCL, copy_problem
from aperture.dicom.htj2k import encode_frame as htj2k_encode

HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
ENCODE_TARGETS = (HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSLESS, JPEG2000_LOSSLESS, JPEG_LS_LOSSLESS, RLE_LOSSLESS)
_RLE_PLUGIN = "pylibjpeg" if "pylibjpeg" in RLELosslessEncoder.available_plugins else "pydicom"


class EncodeError(ValueError):
    """A frame cannot be encoded in the requested syntax; the message says why."""


def encodable_targets(ds: Dataset, stored_transfer_syntax: str) -> tuple[str, ...]:
    """The compressed lossless syntaxes frames of this instance can be sent in, on request."""
    if copy_problem(ds, stored_transfer_syntax) is not None and stored_transfer_syntax != HTJ2K_LOSSLESS_RPCL:
        return ()
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    return tuple(t for t in ENCODE_TARGETS if not (signed and t == JPEG_LS_LOSSLESS))


def encode_frame(pixels: np.ndarray, target: str, ds: Dataset) -> bytes:
    """One decoded frame as a codestream (or RLE segment set) of `target`."""
    if target in (HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSLESS):
        return htj2k_encode(pixels)
    if target == JPEG2000_LOSSLESS:
        return bytes(
            imagecodecs.jpeg2k_encode(np.ascontiguousarray(pixels), level=0, codecformat="J2K", reversible=True)
        )
    if target == JPEG_LS_LOSSLESS:
        if pixels.dtype.kind != "u":
            raise EncodeError("JPEG-LS is offered for unsigned pixels only")
        return bytes(imagecodecs.jpegls_encode(np.ascontiguousarray(pixels), level=0))
    if target == RLE_LOSSLESS:
        samples = 3 if pixels.ndim == 3 else 1
        return bytes(
            RLELosslessEncoder.encode(
                np.ascontiguousarray(pixels),
                rows=pixels.shape[0],
                columns=pixels.shape[1],
                samples_per_pixel=samples,
                bits_allocated=pixels.dtype.itemsize * 8,
                bits_stored=pixels.dtype.itemsize * 8,
                pixel_representation=1 if pixels.dtype.kind == "i" else 0,
                photometric_interpretation="RGB" if samples == 3 else str(ds.PhotometricInterpretation),
                number_of_frames=1,
                planar_configuration=0,
                encoding_plugin=_RLE_PLUGIN,
            )
        )
    raise EncodeError(f"Frames cannot be encoded in {target}; available: {', '.join(ENCODE_TARGETS)}")
