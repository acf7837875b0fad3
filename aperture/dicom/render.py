"""Render one frame of a DICOM image to JPEG / PNG / GIF for WADO-RS /rendered and /thumbnail.

Implements the parts of PS3.18 §8.3.5 a browser-facing server needs: the grayscale pipeline of
PS3.4 N.2 (Modality LUT or Rescale, then VOI LUT or window, MONOCHROME1 inverted), true color
(YBR decoded to RGB by pydicom) and palette color, the `window`, `viewport` and `quality` query
parameters, the WADO-URI `region` (PS3.18 §9.5.1.2.5), and thumbnails. Enhanced multi-frame
objects get their per-frame rescale and window from the functional group sequences; Float and
Double Float Pixel Data go through the same grayscale pipeline. Missing Image Pixel attributes are
read as `transcode.pixel_defaults` says.

Failures say whose they are: RenderError for a request that cannot be honoured as asked,
UnsupportedPixelData for valid data this installation cannot draw, PixelDataError for pixel data
that contradicts its own header (decoders' and numpy's exceptions are turned into it, so stored
data never makes the caller fail unexpectedly).

Deliberately not done here: burned-in annotations, presentation states, ICC profile colour
management, overlays, Supplemental Palette colour, non-square pixel aspect ratios, HSV / ARGB /
CMYK / YBR_PARTIAL colour, rendering of video, SR or encapsulated documents, and reading HTTP
requests (the caller passes parsed values; `parse_window` and `parse_viewport` turn query-parameter
text into them).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi

from aperture.dicom.transcode import (
    DECODABLE_SYNTAXES,
    DECODE_FAILURES,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    NATIVE_SYNTAXES,
    pixel_defaults,
)

__all__ = [
    "RENDERED_MEDIA_TYPES",
    "PixelDataError",
    "RenderError",
    "Region",
    "UnsupportedPixelData",
    "Viewport",
    "Window",
    "parse_region",
    "parse_viewport",
    "parse_window",
    "render",
    "render_native",
    "thumbnail",
]

RENDERED_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif")
DEFAULT_JPEG_QUALITY = 90
# The largest image a viewport may ask for: each side, and width times height. Drawing costs memory
# in proportion to the output (an upscale to 15000x15000 took 330 MB); 8192 covers an 8K screen and
# 4096x4096 pixels (16.8 million) a full-resolution mammogram. Without a viewport an image is drawn at
# its stored size, which the upload already bounded.
MAX_VIEWPORT_SIDE = 8192
MAX_VIEWPORT_PIXELS = 4096 * 4096
_PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}
_WINDOW_FUNCTIONS = {
    "LINEAR": "LINEAR",
    "LINEAR_EXACT": "LINEAR_EXACT",
    "LINEAR-EXACT": "LINEAR_EXACT",  # PS3.18 query-parameter spelling
    "SIGMOID": "SIGMOID",
}
# Attributes the grayscale pipeline reads; copied into a per-frame view of the dataset.
_PIPELINE_KEYWORDS = (
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "PhotometricInterpretation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
)


PixelSource = str | os.PathLike[str]
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_OPTION_KEYWORDS = {
    "pixel_representation": "PixelRepresentation",
    "bits_stored": "BitsStored",
    "planar_configuration": "PlanarConfiguration",
    "photometric_interpretation": "PhotometricInterpretation",
}


class RenderError(ValueError):
    """The rendering request cannot be honoured as asked (maps to HTTP 4xx)."""


class UnsupportedPixelData(RenderError):
    """Valid pixel data this installation cannot draw: no decoder for its syntax, a colour model not handled."""


class PixelDataError(RenderError):
    """The stored pixel data cannot be drawn as its Image Pixel attributes describe (they contradict it)."""


# Colour models whose pixels reach the pipeline as RGB: pydicom converts YBR_FULL and YBR_FULL_422,
# JPEG 2000 decoders undo YBR_ICT and YBR_RCT. (HSV, ARGB, CMYK and YBR_PARTIAL_* would need a
# conversion of their own: drawing them as RGB would show wrong colours.)
_DRAWN_AS_RGB = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
# PS3.3 C.7.6.3.1.2 defined terms: a value outside them is a broken header, not a missing feature.
_KNOWN_PHOTOMETRICS = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "PALETTE COLOR",
        "RGB",
        "HSV",
        "ARGB",
        "CMYK",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_PARTIAL_422",
        "YBR_PARTIAL_420",
        "YBR_ICT",
        "YBR_RCT",
    }
)


@dataclass(frozen=True)
class Window:
    """A VOI window: center/width in modality units, and a PS3.3 C.11.2.1.3 VOI LUT Function."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class Viewport:
    """Output box vw x vh, optionally showing only the source region (sx, sy, sw, sh)."""

    vw: int
    vh: int
    sx: float | None = None
    sy: float | None = None
    sw: float | None = None
    sh: float | None = None


@dataclass(frozen=True)
class Region:
    """A part of the image in coordinates normalized to its size: (0, 0) top left, (1, 1) bottom right."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


def parse_region(text: str) -> Region:
    """Parse the WADO-URI `region` "xmin,ymin,xmax,ymax" (PS3.18 §9.5.1.2.5: 0 <= min < max <= 1)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 4:
        raise RenderError(f"region must be four numbers 'xmin,ymin,xmax,ymax' from 0 to 1, got {text[:80]!r}")
    xmin, ymin, xmax, ymax = (
        _finite(part, f"region {label}") for label, part in zip(("xmin", "ymin", "xmax", "ymax"), parts, strict=True)
    )
    if not (0.0 <= xmin < xmax <= 1.0 and 0.0 <= ymin < ymax <= 1.0):
        raise RenderError(f"region must have 0 <= xmin < xmax <= 1 and 0 <= ymin < ymax <= 1, got {text[:80]!r}")
    return Region(xmin, ymin, xmax, ymax)


def parse_window(text: str) -> Window:
    """Parse the `window` query parameter "center,width[,function]" (PS3.18 §8.3.5.1)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3):
        raise RenderError(f"window must be 'center,width,function', got {text[:80]!r}")
    center = _finite(parts[0], "window center")
    width = _finite(parts[1], "window width")
    function = parts[2] if len(parts) == 3 and parts[2] else "LINEAR"
    return _checked(Window(center=center, width=width, function=function))


def _checked(window: Window) -> Window:
    """The window with its function spelled as the DICOM defined term, or RenderError."""
    function = _WINDOW_FUNCTIONS.get(str(window.function).upper())
    if function is None:
        raise RenderError(f"window function must be linear, linear-exact or sigmoid, got {str(window.function)[:40]!r}")
    width = window.width
    if not math.isfinite(width) or not math.isfinite(window.center):
        raise RenderError("window center and width must be finite numbers")
    if width <= 0 or (function == "LINEAR" and width < 1):
        raise RenderError(f"window width must be {'>= 1' if function == 'LINEAR' else '> 0'}, got {width:g}")
    return Window(center=float(window.center), width=float(width), function=function)


def parse_viewport(text: str) -> Viewport:
    """Parse the `viewport` query parameter "vw,vh" or "vw,vh,sx,sy,sw,sh" (empty = default)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 6):
        raise RenderError(f"viewport must be 'vw,vh' or 'vw,vh,sx,sy,sw,sh', got {text[:80]!r}")
    sizes = []
    for label, part in zip(("vw", "vh"), parts[:2], strict=True):
        # ASCII digits only: str.isdigit() also accepts '¹', which int() refuses
        if not part.isascii() or not part.isdigit() or part.strip("0") == "":
            raise RenderError(f"viewport {label} must be a positive integer, got {part[:20]!r}")
        if len(part.lstrip("0")) > 9 or int(part.lstrip("0")) > MAX_VIEWPORT_SIDE:
            raise RenderError(f"viewport {label} must be at most {MAX_VIEWPORT_SIDE} pixels, got {part[:20]}")
        sizes.append(int(part.lstrip("0")))
    if sizes[0] * sizes[1] > MAX_VIEWPORT_PIXELS:
        raise RenderError(
            f"viewport {sizes[0]}x{sizes[1]} is more than the {MAX_VIEWPORT_PIXELS} pixels (4096x4096) Aperture draws"
        )
    sx = sy = sw = sh = None
    if len(parts) == 6:
        sx, sy, sw, sh = (
            _finite(part, f"viewport {label}") if part else None
            for label, part in zip(("sx", "sy", "sw", "sh"), parts[2:], strict=True)
        )
    if (sx is not None and sx < 0) or (sy is not None and sy < 0):
        raise RenderError("viewport sx and sy must not be negative")
    if sw == 0 or sh == 0:
        raise RenderError("viewport sw and sh must not be zero")
    return Viewport(vw=sizes[0], vh=sizes[1], sx=sx, sy=sy, sw=sw, sh=sh)


def render(
    ds: Dataset,
    *,
    frame: int = 1,
    media_type: str = "image/jpeg",
    quality: int | None = None,
    window: Window | None = None,
    viewport: Viewport | None = None,
    pixels_from: PixelSource | None = None,
    region: Region | None = None,
) -> bytes:
    """Render 1-based `frame` of `ds` as an 8-bit image in `media_type`.

    `pixels_from`: the file `ds` was read from, when it was read with its Pixel Data deferred;
    the frame is then decoded from the file alone, without the rest of the Pixel Data in memory.
    `region` is cropped first, then `viewport` applies to what is left (PS3.18 §9.5.2).
    """
    fmt = _pil_format(media_type)
    _check_quality(quality)
    image = _drawn(ds, frame, None if window is None else _checked(window), pixels_from)
    return _finish(image, fmt, quality, viewport, region)


def render_native(
    header: Mapping[str, Any],
    pixels: bytes,
    *,
    media_type: str = "image/jpeg",
    quality: int | None = None,
    window: Window | None = None,
    viewport: Viewport | None = None,
    region: Region | None = None,
) -> bytes | None:
    """Render one little-endian native grayscale frame from its bytes and its instance's DICOM JSON.

    The common CT / MR / CR / DX case, without pydicom reading the file: the caller already has the
    instance's metadata and can read the frame by offset. Returns None when the header needs what
    only `render` does (LUT sequences, functional groups, colour, odd bit depths); otherwise the
    image is the one `render` makes of the same frame.
    """
    fmt = _pil_format(media_type)
    _check_quality(quality)
    arr = _native_gray_frame(header, pixels)
    if arr is None:
        return None
    photometric = str(_json_value(header, "00280004")).strip()
    header_window = _window_from(
        _json_values(header, "00281050"), _json_values(header, "00281051"), _json_value(header, "00281056")
    )
    linear = _Linear(*_json_rescale(header), window=header_window)
    low, high = int(arr.min()), int(arr.max())
    table = _linear_table(linear, photometric, None if window is None else _checked(window), low, high)
    image = Image.fromarray(table.take(np.subtract(arr, low, dtype=np.int32)))
    return _finish(image, fmt, quality, viewport, region)


def _check_quality(quality: int | None) -> None:
    if quality is not None and (not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100):
        raise RenderError(f"quality must be an integer from 1 to 100, got {quality!r}")


def _finish(
    image: Image.Image, fmt: str, quality: int | None, viewport: Viewport | None, region: Region | None = None
) -> bytes:
    if region is not None:
        image = _crop_region(image, region)
    if viewport is not None:
        image = _apply_viewport(image, viewport)
    return _encode(image, fmt, quality)


def thumbnail(
    ds: Dataset,
    *,
    frame: int = 1,
    media_type: str = "image/jpeg",
    size: int = 128,
    pixels_from: PixelSource | None = None,
) -> bytes:
    """A rendering that fits in size x size, keeping the aspect ratio, never enlarged (`pixels_from`: see render)."""
    fmt = _pil_format(media_type)
    if size < 1:
        raise RenderError(f"thumbnail size must be positive, got {size}")
    image = _drawn(ds, frame, None, pixels_from)
    scale = min(1.0, size / max(image.width, image.height))
    if scale < 1.0:
        image = image.resize(_scaled(image.width, image.height, scale), Image.Resampling.LANCZOS)
    return _encode(image, fmt, None)


# --- pipeline ----------------------------------------------------------------------------------


def _drawn(ds: Dataset, frame: int, window: Window | None, pixels_from: PixelSource | None) -> Image.Image:
    """The frame as an 8-bit image; pixel data its header does not describe is a PixelDataError, never a crash."""
    try:
        return _to_pil(ds, frame, window, pixels_from)
    except RenderError:
        raise
    except DECODE_FAILURES as exc:
        reason = f"the element {exc} it needs is missing" if isinstance(exc, KeyError) else str(exc)
        raise PixelDataError(f"The stored pixel data cannot be drawn as its header describes: {reason}") from exc


def _to_pil(ds: Dataset, frame: int, window: Window | None, pixels_from: PixelSource | None = None) -> Image.Image:
    defaults = _fill_defaults(ds)
    arr = _frame_array(ds, frame, pixels_from, defaults)
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        view = _frame_view(ds, frame)
        if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2 and "ModalityLUTSequence" not in view:
            # Integer pixels: run the pipeline once per distinct stored value (at most 65,536) and
            # look the frame up in that table, instead of float arithmetic on every pixel.
            low, high = int(arr.min()), int(arr.max())
            linear = _linear_pipeline(view)
            if linear is not None:
                table = _linear_table(linear, photometric, window, low, high)
            else:
                table = _to_bytes(_grayscale(np.arange(low, high + 1, dtype=np.int64), view, window), photometric)
            return Image.fromarray(table.take(np.subtract(arr, low, dtype=np.int32)))
        return Image.fromarray(_to_bytes(_grayscale(arr, view, window), photometric))  # 2-D uint8: mode L
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)[..., :3]  # uint8 or uint16, as the LUT entries are
        if rgb.dtype != np.uint8:
            rgb = (rgb.astype(np.float64) * (255.0 / 65535.0)).round()
        return Image.fromarray(np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8)))
    if photometric in _DRAWN_AS_RGB:
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise PixelDataError(
                f"Photometric Interpretation {photometric} needs 3 samples per pixel; "
                f"the pixel data decodes to {arr.shape[-1] if arr.ndim == 3 else 1}"
            )
        bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
        rgb = arr[..., :3]
        if rgb.dtype != np.uint8 or bits > 8:
            rgb = np.clip(rgb.astype(np.float64) * (255.0 / (2**bits - 1)), 0, 255).round()
        return Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8)))  # (h, w, 3) uint8: RGB
    if photometric in _KNOWN_PHOTOMETRICS:
        raise UnsupportedPixelData(f"Aperture does not draw Photometric Interpretation {photometric!r}")
    raise PixelDataError(
        f"Photometric Interpretation {photometric[:40]!r} is not one PS3.3 C.7.6.3.1.2 defines, so it cannot be drawn"
    )


def _fill_defaults(ds: Dataset) -> dict[str, Any]:
    """`pixel_defaults` of `ds`, also set on `ds` for the pipeline; pydicom gets them as options too,
    because it rereads a file it decodes from disk."""
    defaults = pixel_defaults(ds)
    for option, value in defaults.items():
        setattr(ds, _OPTION_KEYWORDS[option], value)
    return defaults


def _to_bytes(gray: np.ndarray, photometric: str) -> np.ndarray:
    """[0, 1] grey levels to 8-bit display values; MONOCHROME1 shows low values white."""
    if photometric == "MONOCHROME1":
        gray = 1.0 - gray
    return np.rint(gray * 255.0).astype(np.uint8)


def _frame_array(
    ds: Dataset, frame: int, pixels_from: PixelSource | None = None, options: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Decode only the requested frame (pydicom decodes one frame when given an index).

    A syntax this installation has no decoder for is UnsupportedPixelData; a decoder that fails on
    data it should read is PixelDataError, with the decoder's reason.
    """
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise RenderError("The instance has no (7FE0,0010) Pixel Data to render")
    total = _number_of_frames(ds)
    if isinstance(frame, bool) or not isinstance(frame, int) or not 1 <= frame <= total:
        raise RenderError(f"Frame {frame} does not exist: this instance has {total} frame(s)")
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    decodable = ts in NATIVE_SYNTAXES or ts == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN or ts in DECODABLE_SYNTAXES
    if "PixelData" in ds and ts and not decodable:
        raise UnsupportedPixelData(
            f"Aperture cannot decode pixel data in transfer syntax {_syntax_name(ts)}: no decoder for it is installed"
        )
    try:
        source = ds if pixels_from is None else pixels_from
        return pydicom.pixels.pixel_array(source, index=frame - 1, **(options or {}))
    except DECODE_FAILURES as exc:
        raise PixelDataError(f"The pixel data in {_syntax_name(ts or 'unknown')} cannot be decoded: {exc}") from exc


def _syntax_name(ts: str) -> str:
    name = pydicom.uid.UID(ts).name
    return f"{name} ({ts})" if name and name != ts else ts


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _frame_view(ds: Dataset, frame: int) -> Dataset:
    """The pipeline attributes for one frame, with functional-group values taking precedence."""
    view = Dataset()
    if hasattr(ds, "file_meta"):
        view.file_meta = ds.file_meta  # pydicom needs the endianness to read OW LUT Data
    view.set_original_encoding(*ds.original_encoding[:2])
    for keyword in _PIPELINE_KEYWORDS:
        if keyword in ds:
            view.add(ds[keyword])
    groups = []
    if ds.get("SharedFunctionalGroupsSequence"):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and len(per_frame) >= frame:
        groups.append(per_frame[frame - 1])
    for group in groups:  # shared first, so per-frame values override them
        for sequence, keywords in (
            ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept", "RescaleType")),
            ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction")),
        ):
            if group.get(sequence):
                item = group[sequence][0]
                for keyword in keywords:
                    if keyword in item:
                        setattr(view, keyword, item[keyword].value)
    return view


def _grayscale(arr: np.ndarray, view: Dataset, window: Window | None) -> np.ndarray:
    """Modality LUT, then VOI, as floats in [0, 1] (0 = black before MONOCHROME1 inversion)."""
    linear = _linear_pipeline(view)
    if linear is not None:
        return _linear_gray(arr, linear, window)
    values = apply_modality_lut(arr, view).astype(np.float64)
    if window is not None:
        return _apply_window(values, window)
    if view.get("VOILUTSequence"):
        item = view.VOILUTSequence[0]
        if item.get("LUTDescriptor") and item.get("LUTData") is not None:
            bits = int(item.LUTDescriptor[2])
            mapped = apply_voi(np.floor(values).astype(np.int64), view).astype(np.float64)
            scaled: np.ndarray = np.clip(mapped / (2**bits - 1), 0.0, 1.0)
            return scaled
    return _linear_gray(values, _Linear(window=_header_window(view)), None)


@dataclass(frozen=True)
class _Linear:
    """A grayscale pipeline that is plain arithmetic: rescale (when given), then a window.

    Hashable, so that the 8-bit table of a pipeline is computed once and shared by the requests
    for the frames that use it.
    """

    slope: float | None = None  # None: no rescale (pydicom applies one only when both are present)
    intercept: float = 0.0
    window: Window | None = None  # the header's; a requested window overrides it


def _linear_pipeline(view: Dataset) -> _Linear | None:
    """The pipeline of `view` when it has no Modality LUT or VOI LUT sequence, else None."""
    if "ModalityLUTSequence" in view or view.get("VOILUTSequence"):
        return None
    slope = intercept = None
    if "RescaleSlope" in view and "RescaleIntercept" in view:
        slope, intercept = view.RescaleSlope, view.RescaleIntercept
    return _Linear(*_rescale(slope, intercept), window=_header_window(view))


def _rescale(slope: Any, intercept: Any) -> tuple[float | None, float]:
    if slope is None or intercept is None or slope == "" or intercept == "":
        return None, 0.0
    return float(slope), float(intercept)


def _linear_gray(values: np.ndarray, linear: _Linear, window: Window | None) -> np.ndarray:
    values = values.astype(np.float64)
    if linear.slope is not None:
        values = values * linear.slope + linear.intercept
    chosen = window or linear.window
    if chosen is not None:
        return _apply_window(values, chosen)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


@lru_cache(maxsize=128)
def _linear_table(linear: _Linear, photometric: str, window: Window | None, low: int, high: int) -> np.ndarray:
    """The 8-bit display value of each stored value from `low` to `high` (a frame's extremes)."""
    table = _to_bytes(_linear_gray(np.arange(low, high + 1, dtype=np.int64), linear, window), photometric)
    table.flags.writeable = False  # shared between requests
    return table


def _header_window(view: Dataset) -> Window | None:
    return _window_from(view.get("WindowCenter"), view.get("WindowWidth"), view.get("VOILUTFunction"))


def _window_from(center: Any, width: Any, function: Any) -> Window | None:
    """The first of the header's windows, or None when it has none that can be used."""
    if center is None or width is None or center == "" or width == "":
        return None
    center = center[0] if isinstance(center, MultiValue | list | tuple) else center  # first of several
    width = width[0] if isinstance(width, MultiValue | list | tuple) else width
    function = _WINDOW_FUNCTIONS.get(str(function or "LINEAR").upper(), "LINEAR")
    try:
        center, width = float(center), float(width)
    except (TypeError, ValueError):
        return None
    if width <= 0 or (function == "LINEAR" and width < 1):
        return None
    return Window(center=center, width=width, function=function)


def _apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """PS3.3 C.11.2.1.2 / C.11.2.1.3, with an output range of [0, 1]."""
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (values - c) / w, -700, 700)))
    if window.function == "LINEAR_EXACT":
        return np.clip((values - c) / w + 0.5, 0.0, 1.0)
    if w == 1:
        return (values > c - 0.5).astype(np.float64)
    return np.clip((values - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)


# --- straight from DICOM JSON ------------------------------------------------------------------

# Attributes that send a frame down the full pipeline: LUT sequences and functional groups.
_NEEDS_FULL_PIPELINE = ("00283000", "00283010", "52009229", "52009230")


def _json_values(header: Mapping[str, Any], tag: str) -> list[Any] | None:
    element = header.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    return values if isinstance(values, list) and values else None


def _json_value(header: Mapping[str, Any], tag: str) -> Any:
    values = _json_values(header, tag)
    return None if values is None else values[0]


def _json_rescale(header: Mapping[str, Any]) -> tuple[float | None, float]:
    try:
        return _rescale(_json_value(header, "00281053"), _json_value(header, "00281052"))
    except (TypeError, ValueError):
        return None, 0.0


def _native_gray_frame(header: Mapping[str, Any], pixels: bytes) -> np.ndarray | None:
    """The frame's stored values, masked or sign-extended to Bits Stored as pydicom does."""
    if any(tag in header for tag in _NEEDS_FULL_PIPELINE):
        return None
    photometric = str(_json_value(header, "00280004") or "").strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or _json_value(header, "00280002") not in (None, 1):
        return None
    rows, columns = _json_value(header, "00280010"), _json_value(header, "00280011")
    allocated, stored = _json_value(header, "00280100"), _json_value(header, "00280101")
    signed = _json_value(header, "00280103")
    if signed is None:  # absent: unsigned, as `pixel_defaults` reads it
        signed = 0
    if stored is None:
        stored = allocated
    if not all(isinstance(v, int) for v in (rows, columns, allocated, stored, signed)):
        return None
    if allocated not in (8, 16) or not 1 <= stored <= allocated or signed not in (0, 1) or rows < 1 or columns < 1:
        return None
    if len(pixels) != rows * columns * allocated // 8:
        return None
    arr = np.frombuffer(pixels, dtype=f"<u{allocated // 8}").reshape(rows, columns)
    shift = allocated - stored
    if not signed:
        return arr & ((1 << stored) - 1) if shift else arr
    arr = arr.view(f"<i{allocated // 8}")
    return (arr << shift) >> shift if shift else arr


# --- geometry and encoding ---------------------------------------------------------------------


def _apply_viewport(image: Image.Image, viewport: Viewport) -> Image.Image:
    """Crop to the source region (negative sw/sh flip it) and scale it to fit in vw x vh."""
    sx = viewport.sx or 0.0
    sy = viewport.sy or 0.0
    sw = viewport.sw if viewport.sw is not None else image.width - sx
    sh = viewport.sh if viewport.sh is not None else image.height - sy
    left, right = sorted((sx, sx + sw))
    top, bottom = sorted((sy, sy + sh))
    box = (
        max(0, math.floor(left)),
        max(0, math.floor(top)),
        min(image.width, math.ceil(right)),
        min(image.height, math.ceil(bottom)),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        raise RenderError(
            f"viewport source region ({sx:g},{sy:g},{sw:g},{sh:g}) lies outside the {image.width}x{image.height} image"
        )
    region = image.crop(box)
    if sw < 0:
        region = region.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if sh < 0:
        region = region.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    scale = min(viewport.vw / region.width, viewport.vh / region.height)
    size = _scaled(region.width, region.height, scale)
    if size != region.size:
        region = region.resize(size, Image.Resampling.LANCZOS)
    return region


def _crop_region(image: Image.Image, region: Region) -> Image.Image:
    """The pixels the normalized region covers, at least one of them."""
    left, top = math.floor(region.xmin * image.width), math.floor(region.ymin * image.height)
    right = max(left + 1, math.ceil(region.xmax * image.width))
    bottom = max(top + 1, math.ceil(region.ymax * image.height))
    return image.crop((left, top, min(right, image.width), min(bottom, image.height)))


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def _pil_format(media_type: str) -> str:
    key = media_type.split(";", 1)[0].strip().lower()
    if key not in _PIL_FORMATS:
        raise RenderError(f"Cannot render to {media_type!r}; supported: {', '.join(RENDERED_MEDIA_TYPES)}")
    return _PIL_FORMATS[key]


def _encode(image: Image.Image, fmt: str, quality: int | None) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, format="JPEG", quality=int(quality or DEFAULT_JPEG_QUALITY))
    elif fmt == "GIF" and image.mode == "RGB":
        image.quantize(colors=256).save(out, format="GIF")
    else:
        image.save(out, format=fmt)
    return out.getvalue()


def _finite(text: str, label: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RenderError(f"{label} must be a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise RenderError(f"{label} must be a finite number, got {text[:40]!r}")
    return value
