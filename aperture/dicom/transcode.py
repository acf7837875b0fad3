"""Transfer syntax conversion: what can be served in which syntax, and the conversion itself.

WADO-RS lets a client ask for a transfer syntax (Accept: ...; transfer-syntax=UID). This module
answers "can a file stored as S be served as T?" (`available_targets`, `can_transcode`), does the
conversion of whole Part-10 files (`transcode_file`) and of single frames
(`transcode_frame`, for /frames requested as uncompressed application/octet-stream), and holds
the PS3.18 Table 8.7.3-4/8.7.3-5 mapping from transfer syntax to bulk data media type
(`FRAME_MEDIA_TYPES`, `frame_media_type`).

Decoding is pydicom's (with pylibjpeg / gdcm plugins): whatever pydicom decodes, we can serve
uncompressed. Deliberately not done here: any encoding (no lossy re-compression that could
silently degrade a diagnostic image; RLE / JPEG-LS / JPEG 2000 encoders reject many real pixel
layouts, and gdcm's RLE encoder can abort the process), encoding to Deflated or Big Endian
(PS3.18 forbids Big Endian in web services), video syntaxes, and HTTP content negotiation.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import as_pixel_options, pack_bits
from pydicom.uid import UID

__all__ = [
    "DECODABLE_SYNTAXES",
    "DECODE_FAILURES",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "FrameDecodeError",
    "FRAME_MEDIA_TYPES",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "LITTLE_ENDIAN_NATIVE",
    "MEDIA_TYPE_ALIASES",
    "NATIVE_SYNTAXES",
    "TranscodeError",
    "available_targets",
    "can_transcode",
    "frame_media_type",
    "pixel_defaults",
    "transcode_file",
    "transcode_frame",
]

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

#: Uncompressed syntaxes. Big Endian is accepted as a *source* only.
NATIVE_SYNTAXES: frozenset[str] = frozenset(
    {IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN}
)
#: Uncompressed little-endian syntaxes, whose frame bytes are the pixel values as stored.
LITTLE_ENDIAN_NATIVE = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)

_JPEG = "1.2.840.10008.1.2.4."
_COMPRESSED_CANDIDATES = (
    *(_JPEG + n for n in ("50", "51", "57", "70", "80", "81", "90", "91", "201", "202", "203")),
    RLE_LOSSLESS,
)


def _decoder_available(ts: str) -> bool:
    try:
        return bool(get_decoder(ts).is_available)
    except NotImplementedError:
        return False


#: Compressed syntaxes whose pixel data this installation can decode (pydicom plugins present).
DECODABLE_SYNTAXES: frozenset[str] = frozenset(ts for ts in _COMPRESSED_CANDIDATES if _decoder_available(ts))

#: PS3.18 Table 8.7.3-5 (compressed bulk data) plus Table 8.7.3-4 (uncompressed bulk data).
FRAME_MEDIA_TYPES: dict[str, str] = {
    IMPLICIT_VR_LITTLE_ENDIAN: "application/octet-stream",
    EXPLICIT_VR_LITTLE_ENDIAN: "application/octet-stream",
    EXPLICIT_VR_BIG_ENDIAN: "application/octet-stream",  # served after conversion to little endian
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: "application/octet-stream",
    "1.2.840.10008.1.2.1.98": "application/octet-stream",  # Encapsulated Uncompressed Explicit VR LE
    _JPEG + "50": "image/jpeg",
    _JPEG + "51": "image/jpeg",
    _JPEG + "57": "image/jpeg",
    _JPEG + "70": "image/jpeg",
    _JPEG + "80": "image/jls",
    _JPEG + "81": "image/jls",
    _JPEG + "90": "image/jp2",
    _JPEG + "91": "image/jp2",
    _JPEG + "92": "image/jpx",
    _JPEG + "93": "image/jpx",
    _JPEG + "201": "image/jphc",
    _JPEG + "202": "image/jphc",
    _JPEG + "203": "image/jphc",
    RLE_LOSSLESS: "image/dicom-rle",
    _JPEG + "100": "video/mpeg2",
    _JPEG + "100.1": "video/mpeg2",
    _JPEG + "101": "video/mpeg2",
    _JPEG + "101.1": "video/mpeg2",
    **{_JPEG + f"{n}{suffix}": "video/mp4" for n in range(102, 107) for suffix in ("", ".1")},
    _JPEG + "107": "video/H265",
    _JPEG + "108": "video/H265",
}

#: Pre-standard spellings some clients still send in Accept headers, mapped to the current ones.
MEDIA_TYPE_ALIASES: dict[str, str] = {"image/x-dicom-rle": "image/dicom-rle", "image/x-jls": "image/jls"}


#: Lossy syntaxes: decoding them would present lossy pixels as if uncompressed, so defaults keep them.
LOSSY_SYNTAXES: frozenset[str] = frozenset(
    {
        _JPEG + n
        for n in (
            "50",
            "51",
            "81",
            "91",
            "93",
            "203",
            "100",
            "101",
            "102",
            "103",
            "104",
            "105",
            "106",
            "107",
            "108",
            "112",
        )
    }  # fmt: skip
)


class TranscodeError(ValueError):
    """A requested transfer syntax cannot be produced for this instance (maps to HTTP 4xx)."""


class FrameDecodeError(TranscodeError):
    """A decoder that is installed failed on a stored frame: the data, not the request, is at fault."""


#: What pydicom, its decoders and numpy raise on pixel data its Image Pixel attributes do not
#: describe (a length that does not fit, a value out of range, a codestream a decoder rejects).
DECODE_FAILURES: tuple[type[Exception], ...] = (
    NotImplementedError,
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    OverflowError,
    RuntimeError,
)


def pixel_defaults(ds: Dataset) -> dict[str, Any]:
    """Decoder options for the Image Pixel attributes `ds` lacks that have one accepted reading.

    PS3.3 C.7.6.3 makes Pixel Representation, Bits Stored and Photometric Interpretation Type 1
    and Planar Configuration Type 1C (present when Samples per Pixel > 1), yet stored files lack
    them. Absent, they are read as Orthanc reads them: unsigned (0000H), Bits Stored = Bits
    Allocated, colour-by-pixel (0), and MONOCHROME2 for one sample or RGB for three. Pass the
    result to pydicom's decoders (`pixel_array(..., **options)`, `as_pixel_options(ds, **options)`);
    `ds` is not changed. Float Pixel Data has no Pixel Representation or Bits Stored, and gets none.
    """
    samples = ds.get("SamplesPerPixel", 1)
    options: dict[str, Any] = {}
    if "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:  # header-only data sets too
        if ds.get("PixelRepresentation") is None:
            options["pixel_representation"] = 0
        if ds.get("BitsStored") is None and ds.get("BitsAllocated") is not None:
            options["bits_stored"] = ds.BitsAllocated
    if samples != 1 and ds.get("PlanarConfiguration") is None:
        options["planar_configuration"] = 0
    if not str(ds.get("PhotometricInterpretation") or "").strip():
        options["photometric_interpretation"] = "MONOCHROME2" if samples == 1 else "RGB"
    return options


def frame_media_type(ts: str) -> str:
    """Bulk data media type for frames stored in transfer syntax `ts` (PS3.18 §8.7.3.3)."""
    try:
        return FRAME_MEDIA_TYPES[ts]
    except KeyError:
        raise TranscodeError(f"No DICOMweb bulk data media type is defined for transfer syntax {ts}") from None


def available_targets(source_ts: str) -> list[str]:
    """Transfer syntaxes an instance stored as `source_ts` can be served in; the source first."""
    targets = [source_ts]
    if (
        source_ts in NATIVE_SYNTAXES
        or source_ts == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        or source_ts in DECODABLE_SYNTAXES
    ):
        targets.extend(ts for ts in LITTLE_ENDIAN_NATIVE if ts not in targets)
    return targets


def can_transcode(source_ts: str, target_ts: str) -> bool:
    """True when `target_ts` is in `available_targets(source_ts)`."""
    return target_ts in available_targets(source_ts)


def transcode_file(path: str | os.PathLike[str], target_ts: str) -> bytes:
    """Return the stored file as a complete Part-10 file in `target_ts`.

    Same syntax: the stored bytes, untouched. Otherwise every attribute is kept (including the
    SOP Instance UID: this is the same instance in another encoding) except what the new encoding
    forces: Pixel Data, Photometric Interpretation (YBR_* decoded to RGB, as pydicom does),
    Planar Configuration, the Extended Offset Table, the file meta Transfer Syntax UID, and
    retired group length elements (dropped). The whole file is decoded in memory.
    """
    source_ts = _stored_transfer_syntax(path)
    if target_ts == source_ts:
        return Path(path).read_bytes()
    _check_target(source_ts, target_ts)

    ds = pydicom.dcmread(path)
    try:
        if "PixelData" in ds:
            _to_native_little_endian(ds, source_ts)
        elif source_ts == EXPLICIT_VR_BIG_ENDIAN:
            _swap_binary_values(ds, skip_pixel_data=False)
        for _ in ds.iterall():
            pass  # turns every raw element into a typed one, so odd files (VR switches) write cleanly
        ds.file_meta.TransferSyntaxUID = UID(target_ts)
        out = io.BytesIO()
        # dcmwrite (unlike save_as) allows the big -> little endian change; values were swapped above
        dcmwrite(out, ds, enforce_file_format=True)
    except Exception as exc:  # decoder / encoder failures: say which conversion failed and why
        reason = str(exc) or type(exc).__name__
        raise TranscodeError(f"Could not convert from {_name(source_ts)} to {_name(target_ts)}: {reason}") from exc
    return out.getvalue()


def transcode_frame(frame: bytes, *, source_ts: str, target_ts: str, dataset: Dataset) -> bytes:
    """Convert one frame's stored bytes to uncompressed little-endian bytes.

    `dataset` supplies the Image Pixel attributes (Rows, Columns, Bits Allocated, Samples per
    Pixel, Photometric Interpretation, Pixel Representation, Planar Configuration). Compressed
    YBR frames come back as RGB, consistent with `transcode_file`; samples are laid out as the
    dataset's Planar Configuration says; bit-packed (Bits Allocated 1) frames stay packed. Same
    syntax in and out returns the bytes unchanged.
    """
    if target_ts == source_ts:
        return frame
    if target_ts not in LITTLE_ENDIAN_NATIVE:
        raise TranscodeError(
            f"Single frames can only be converted to {_name(EXPLICIT_VR_LITTLE_ENDIAN)}, not {_name(target_ts)}"
        )
    if source_ts in LITTLE_ENDIAN_NATIVE:
        return frame
    bits = int(dataset.get("BitsAllocated", 0) or 0)
    if bits < 1:
        raise TranscodeError("Cannot convert a frame: the dataset has no (0028,0100) Bits Allocated")
    if source_ts == EXPLICIT_VR_BIG_ENDIAN:
        return _big_to_little_frame(frame, bits)
    if source_ts not in DECODABLE_SYNTAXES:
        raise TranscodeError(
            f"Frames stored as {_name(source_ts)} cannot be decoded here; "
            f"available: {', '.join(available_targets(source_ts))}"
        )
    options = as_pixel_options(dataset, **pixel_defaults(dataset))
    options["number_of_frames"] = 1
    options.pop("extended_offsets", None)
    try:
        arr, _ = get_decoder(source_ts).as_array(encapsulate([frame]), **options)
    except Exception as exc:
        raise FrameDecodeError(f"Could not decode a {_name(source_ts)} frame: {exc}") from exc
    if bits == 1:
        return pack_bits(arr)
    if arr.ndim == 3 and dataset.get("PlanarConfiguration") == 1:
        arr = arr.transpose(2, 0, 1)  # decoders give pixel-interleaved samples; honour the header
    return np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False)).tobytes()


# --- helpers -----------------------------------------------------------------------------------


def _name(ts: str) -> str:
    name = UID(ts).name
    return f"{name} ({ts})" if name and name != ts else ts


def _stored_transfer_syntax(path: str | os.PathLike[str]) -> str:
    meta = pydicom.filereader.read_file_meta_info(path)
    ts = meta.get("TransferSyntaxUID")
    if not ts:
        raise TranscodeError("The stored file has no (0002,0010) Transfer Syntax UID in its file meta")
    return str(ts)


def _check_target(source_ts: str, target_ts: str) -> None:
    targets = available_targets(source_ts)
    if target_ts not in targets:
        raise TranscodeError(
            f"Cannot convert from {_name(source_ts)} to {_name(target_ts)}; "
            f"available transfer syntaxes for this instance: {', '.join(targets)}"
        )


def _to_native_little_endian(ds: Dataset, source_ts: str) -> None:
    """Make `ds` hold uncompressed little-endian pixel data, whatever it was stored as."""
    if UID(source_ts).is_compressed and source_ts != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        # The same call as Dataset.pixel_array, so the result equals what pydicom shows for the
        # file; it also reports the Photometric Interpretation of the decoded pixels (RGB for YBR).
        arr, pixel = get_decoder(source_ts).as_array(ds, **as_pixel_options(ds, **pixel_defaults(ds)))
        ds.PhotometricInterpretation = str(pixel["photometric_interpretation"])
        if "NumberOfFrames" in ds or int(pixel.get("number_of_frames", 1)) > 1:
            ds.NumberOfFrames = int(pixel.get("number_of_frames", 1))
        _set_native_pixels(ds, arr)
        for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
            if keyword in ds:
                delattr(ds, keyword)
    elif source_ts == EXPLICIT_VR_BIG_ENDIAN:
        _swap_binary_values(ds, skip_pixel_data=True)
        # pydicom's decoder knows every big-endian pixel layout (OW with 8 bits, bit-packed, ...)
        arr = pydicom.pixels.pixel_array(ds, raw=True, **pixel_defaults(ds))
        if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
            ds.PhotometricInterpretation = "YBR_FULL"  # the decoder removed the subsampling
        _set_native_pixels(ds, arr)


def _set_native_pixels(ds: Dataset, arr: np.ndarray) -> None:
    bits = int(ds.BitsAllocated)
    if bits == 1:
        data = pack_bits(arr)
    else:
        data = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False)).tobytes()
    if len(data) % 2:
        data += b"\x00"
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        ds.PlanarConfiguration = 0  # decoded arrays are always pixel-interleaved
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if bits <= 8 else "OW"
    ds["PixelData"].is_undefined_length = False


_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap_binary_values(ds: Dataset, *, skip_pixel_data: bool) -> None:
    """Byte-swap OW/OF/OL/OD/OV values read from a big-endian file (pydicom keeps them raw).

    Numeric VRs (US, SS, FL, ...) are already decoded to numbers and re-encode correctly; UN
    values have no known structure and are left as they are.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_binary_values(item, skip_pixel_data=False)
            continue
        if skip_pixel_data and elem.tag == 0x7FE00010:
            continue
        width = _SWAP_WIDTH.get(elem.VR)
        if width and isinstance(elem.value, bytes) and len(elem.value) % width == 0:
            elem.value = np.frombuffer(elem.value, dtype=f">u{width}").astype(f"<u{width}").tobytes()


def _big_to_little_frame(frame: bytes, bits: int) -> bytes:
    """Reorder one big-endian native frame's bytes into little-endian order.

    Byte-sized pixels need nothing. (8-bit pixels stored as OW words never get here:
    `aperture.dicom.frames` does not index such files, so they are served by `transcode_file`.)
    """
    if bits in (1, 8):
        return frame
    width = {16: 2, 32: 4, 64: 8}.get(bits)
    if width is None:
        raise TranscodeError(f"Cannot convert big-endian frames with Bits Allocated {bits}")
    usable = len(frame) - len(frame) % width
    swapped = np.frombuffer(frame[:usable], dtype=f">u{width}").astype(f"<u{width}").tobytes()
    return swapped + frame[usable:]
