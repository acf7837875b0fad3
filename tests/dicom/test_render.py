"""Rendering frames to JPEG / PNG / GIF, windowing, viewports and thumbnails over pydicom-data."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi

from aperture.dicom.frames import read_frames
from aperture.dicom.instance import read_instance
from aperture.dicom.render import (
    RENDERED_MEDIA_TYPES,
    RenderError,
    Viewport,
    Window,
    parse_region,
    parse_viewport,
    parse_window,
    render,
    render_native,
    thumbnail,
)
from aperture.dicom.transcode import LITTLE_ENDIAN_NATIVE
from tests.data import PYDICOM_DATA


def _ds(name: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(get_testdata_file(name))


def _png(ds: Dataset, **kwargs: object) -> np.ndarray:
    image = Image.open(io.BytesIO(render(ds, media_type="image/png", **kwargs)))
    assert image.format == "PNG"
    return np.asarray(image)


def _linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 with an 8-bit output range."""
    scaled = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    return np.rint(scaled * 255).astype(np.uint8)


# --- grayscale pipeline ------------------------------------------------------------------------


def test_ct_without_window_uses_min_max_of_rescaled_values() -> None:
    ds = _ds("CT_small.dcm")
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.rint((hu - hu.min()) / (hu.max() - hu.min()) * 255).astype(np.uint8)
    out = _png(ds)
    assert out.shape == (128, 128)
    assert np.array_equal(out, expected)
    assert out[64, 64] == expected[64, 64] and out.min() == 0 and out.max() == 255


def test_ct_window_is_applied_in_hounsfield_units() -> None:
    ds = _ds("CT_small.dcm")
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    out = _png(ds, window=parse_window("40,400,LINEAR"))
    assert np.array_equal(out, _linear(hu, 40, 400))
    for row, col in ((10, 10), (64, 64), (100, 30)):
        assert out[row, col] == _linear(np.array([hu[row, col]]), 40, 400)[0]
    assert not np.array_equal(out, _png(ds))  # the window changes the output
    assert not np.array_equal(out, _png(ds, window=Window(center=300, width=1500)))


def test_linear_exact_and_sigmoid_follow_ps3_3() -> None:
    ds = _ds("CT_small.dcm")
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    exact = _png(ds, window=parse_window("40,400,linear-exact"))
    sigmoid = _png(ds, window=parse_window("40,400,SIGMOID"))
    assert np.array_equal(exact, np.rint(np.clip((hu - 40) / 400 + 0.5, 0, 1) * 255).astype(np.uint8))
    assert np.array_equal(sigmoid, np.rint(255 / (1 + np.exp(-4 * (hu - 40) / 400))).astype(np.uint8))
    assert not np.array_equal(exact, sigmoid)


def test_header_window_is_used_when_none_is_given() -> None:
    ds = _ds("6154")  # MONOCHROME1 CR with Window Center/Width and Rescale
    values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = 255 - _linear(values, float(ds.WindowCenter), float(ds.WindowWidth))
    assert np.array_equal(_png(ds), expected)


@pytest.mark.parametrize("name", ["6154", "RG3_UNCI.dcm"])
def test_monochrome1_is_inverted(name: str) -> None:
    ds = _ds(name)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    inverted = _png(ds)
    ds.PhotometricInterpretation = "MONOCHROME2"
    plain = _png(ds)
    assert np.array_equal(inverted.astype(int), 255 - plain.astype(int))


def test_voi_lut_sequence() -> None:
    ds = _ds("vlut_04.dcm")
    bits = ds.VOILUTSequence[0].LUTDescriptor[2]
    expected = np.rint(apply_voi(ds.pixel_array, ds) / (2**bits - 1) * 255).astype(np.uint8)
    assert np.array_equal(_png(ds), expected)


def test_modality_lut_sequence() -> None:
    ds = _ds("mlut_18.dcm")
    values = apply_modality_lut(ds.pixel_array, ds).astype(float)
    expected = np.rint((values - values.min()) / (values.max() - values.min()) * 255).astype(np.uint8)
    assert np.array_equal(_png(ds), expected)


def test_enhanced_multiframe_uses_functional_group_window() -> None:
    ds = _ds("eCT_Supplemental.dcm")
    assert "WindowCenter" not in ds and "RescaleIntercept" not in ds
    out = _png(ds, frame=2)
    assert np.array_equal(out, _png(ds, frame=2, window=Window(49, 102)))
    # Pixel Value Transformation: intercept -1024, slope 1
    assert np.array_equal(out, _linear(ds.pixel_array[1].astype(float) - 1024, 49, 102))


# --- colour --------------------------------------------------------------------------------------


def test_jpeg_baseline_ybr_renders_as_rgb() -> None:
    ds = _ds("SC_rgb_dcmtk_+eb+cy+np.dcm")  # YBR_FULL_422 JPEG baseline
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    out = _png(ds)
    assert out.shape == (100, 100, 3)
    assert np.array_equal(out, ds.pixel_array)  # pydicom converts YBR to RGB
    reference = _ds("SC_rgb.dcm").pixel_array.astype(int)  # the uncompressed original
    assert np.abs(out.astype(int) - reference).mean() < 8


def test_palette_color() -> None:
    ds = _ds("OBXXXX1A.dcm")
    rgb = apply_color_lut(ds.pixel_array, ds).astype(float)  # 16-bit LUT entries
    expected = np.rint(rgb * 255 / 65535).astype(np.uint8)
    out = _png(ds)
    assert out.shape == (600, 800, 3)
    assert np.array_equal(out, expected)


def test_sixteen_bit_rgb_is_scaled_to_eight_bits() -> None:
    ds = _ds("SC_rgb_16bit.dcm")
    expected = np.rint(ds.pixel_array.astype(float) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(_png(ds), expected)


# --- frames --------------------------------------------------------------------------------------


def test_multiframe_frames_differ() -> None:
    ds = _ds("emri_small.dcm")
    first, second = _png(ds, frame=1), _png(ds, frame=2)
    assert first.shape == second.shape == (64, 64)
    assert not np.array_equal(first, second)


def test_compressed_multiframe_frame_matches_native_twin() -> None:
    native = _ds("emri_small.dcm")
    jpeg2000 = _ds("emri_small_jpeg_2k_lossless.dcm")
    assert np.array_equal(_png(native, frame=7), _png(jpeg2000, frame=7))


@pytest.mark.parametrize("frame", [0, 11, -3])
def test_frame_out_of_range(frame: int) -> None:
    with pytest.raises(RenderError, match=rf"Frame {frame} does not exist.* 10 frame"):
        render(_ds("emri_small.dcm"), frame=frame)


# --- viewport and output formats -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("viewport", "size"),
    [("64,32", (32, 32)), ("300,200", (200, 200)), ("128,128,0,0,64,32", (128, 64)), ("50,100,0,0,128,64", (50, 25))],
)
def test_viewport_fits_preserving_aspect(viewport: str, size: tuple[int, int]) -> None:
    rendered = render(_ds("CT_small.dcm"), media_type="image/png", viewport=parse_viewport(viewport))
    image = Image.open(io.BytesIO(rendered))
    assert image.size == size


def test_viewport_region_crops_and_negative_width_flips() -> None:
    ds = _ds("CT_small.dcm")
    full = _png(ds)
    assert np.array_equal(_png(ds, viewport=parse_viewport("32,32,10,20,32,32")), full[20:52, 10:42])
    assert np.array_equal(_png(ds, viewport=parse_viewport("128,128,128,0,-128,128")), full[:, ::-1])
    assert np.array_equal(_png(ds, viewport=parse_viewport("128,128,,,,")), full)
    with pytest.raises(RenderError, match="outside"):
        render(ds, viewport=parse_viewport("10,10,500,500,10,10"))


def test_region_crops_a_normalized_part_before_the_viewport() -> None:
    """PS3.18 §9.5.2: Source Image Region first, then the viewport scales what it selected."""
    ds = _ds("CT_small.dcm")
    full = _png(ds)
    assert np.array_equal(_png(ds, region=parse_region("0.25,0.5,0.75,1")), full[64:128, 32:96])
    assert _png(ds, region=parse_region("0,0,0.5,0.25"), viewport=Viewport(vw=128, vh=128)).shape == (64, 128)
    assert _png(ds, region=parse_region("0.999,0.999,1,1")).shape == (1, 1)  # never empty
    path = Path(get_testdata_file("CT_small.dcm"))
    record = read_instance(path)
    assert record.frame_index is not None
    pixels = read_frames(path, record.frame_index, [1])[0]
    region = parse_region("0.1,0.2,0.6,0.9")
    assert render_native(record.metadata, pixels, media_type="image/png", region=region) == render(
        ds, media_type="image/png", region=region
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [("0,0,1", "four"), ("0,0,1,x", "number"), ("0.5,0,0.5,1", "xmin < xmax"), ("0,0,1,1.1", "<= 1"),
     ("-0.1,0,1,1", "0 <="), ("0,0,nan,1", "finite")],
)  # fmt: skip
def test_parse_region_rejects_what_ps3_18_does_not_allow(text: str, problem: str) -> None:
    with pytest.raises(RenderError, match=problem):
        parse_region(text)


def test_output_formats_decode_with_pil() -> None:
    ds = _ds("SC_rgb_rle_2frame.dcm")
    for media_type, fmt in zip(RENDERED_MEDIA_TYPES, ("JPEG", "PNG", "GIF"), strict=True):
        image = Image.open(io.BytesIO(render(ds, frame=2, media_type=media_type)))
        assert (image.format, image.size) == (fmt, (100, 100))
    gray = Image.open(io.BytesIO(render(_ds("CT_small.dcm"), media_type="image/jpeg")))
    assert gray.mode == "L"


def test_jpeg_quality() -> None:
    ds = _ds("CT_small.dcm")
    assert len(render(ds, quality=10)) < len(render(ds)) < len(render(ds, quality=100))
    for bad in (0, 101):
        with pytest.raises(RenderError, match="quality"):
            render(ds, quality=bad)


def test_unsupported_media_type_names_the_supported_ones() -> None:
    with pytest.raises(RenderError, match="image/png"):
        render(_ds("CT_small.dcm"), media_type="image/webp")


def test_thumbnail_keeps_aspect_and_never_enlarges() -> None:
    tall = Image.open(io.BytesIO(thumbnail(_ds("JPEG2000.dcm"))))  # 256 columns x 1024 rows
    assert tall.size == (32, 128)
    small = Image.open(io.BytesIO(thumbnail(_ds("MR_small.dcm"), media_type="image/png")))
    assert small.size == (64, 64)
    assert Image.open(io.BytesIO(thumbnail(_ds("emri_small.dcm"), frame=3, size=32))).size == (32, 32)


def test_instance_without_pixel_data() -> None:
    with pytest.raises(RenderError, match="Pixel Data"):
        render(_ds("rtplan.dcm"))


# --- query parameter parsing ---------------------------------------------------------------------


def test_parse_window() -> None:
    assert parse_window("40,400,LINEAR") == Window(40.0, 400.0, "LINEAR")
    assert parse_window(" -600 , 1500 , linear-exact ") == Window(-600.0, 1500.0, "LINEAR_EXACT")
    assert parse_window("40,0.5,sigmoid") == Window(40.0, 0.5, "SIGMOID")
    assert parse_window("40,400") == Window(40.0, 400.0, "LINEAR")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("abc,400,LINEAR", "window center"),
        ("40,wide,LINEAR", "window width"),
        ("40", "center,width,function"),
        ("40,400,LINEAR,1", "center,width,function"),
        ("40,0,LINEAR", "window width must be >= 1"),
        ("40,-3,SIGMOID", "window width must be > 0"),
        ("40,400,CUBIC", "linear, linear-exact or sigmoid"),
        ("nan,400,LINEAR", "finite"),
    ],
)
def test_parse_window_rejects_bad_input(text: str, problem: str) -> None:
    with pytest.raises(RenderError, match=problem):
        parse_window(text)


def test_parse_viewport() -> None:
    assert parse_viewport("512,256") == Viewport(512, 256)
    assert parse_viewport("100,100,10,20,30.5,-40") == Viewport(100, 100, 10.0, 20.0, 30.5, -40.0)
    assert parse_viewport("100,100,,,50,50") == Viewport(100, 100, None, None, 50.0, 50.0)
    for bad, problem in (("0,10", "vw"), ("10", "vw,vh"), ("a,b", "vw"), ("10,10,1,2,3", "vw,vh"),
                         ("10,10,-1,0,5,5", "sx and sy"), ("10,10,0,0,0,5", "sw and sh")):  # fmt: skip
        with pytest.raises(RenderError, match=problem):
            parse_viewport(bad)


def test_window_objects_are_validated_too() -> None:
    ds = _ds("CT_small.dcm")
    assert np.array_equal(_png(ds, window=Window(40, 400, "linear")), _png(ds, window=Window(40, 400)))
    for bad in (Window(40, 0), Window(40, -1, "SIGMOID"), Window(40, 400, "GAMMA"), Window(float("inf"), 10)):
        with pytest.raises(RenderError, match="window"):
            render(ds, window=bad)


# --- drawing straight from stored bytes and DICOM JSON -------------------------------------------


def test_render_native_draws_what_render_draws_for_every_file_it_takes() -> None:
    """The server's fast path (frame bytes + the index's JSON) gives the same pixels as pydicom's.

    Over every pydicom-data file stored uncompressed little-endian, first and last frame, with the
    header's window and with a requested one; files it declines (None) go through `render`.
    """
    drawn = declined = 0
    for path in PYDICOM_DATA:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                record = read_instance(path)
                ds = pydicom.dcmread(path)
        except Exception:  # refused at STOW (InvalidInstance) or unreadable: never rendered
            continue
        if record.transfer_syntax not in LITTLE_ENDIAN_NATIVE or record.frame_index is None or not record.num_frames:
            continue
        header = json.loads(json.dumps(record.metadata))  # as the index hands it back
        for frame in sorted({1, record.num_frames}):
            pixels = read_frames(path, record.frame_index, [frame])[0]
            for window in (None, Window(center=40.0, width=400.0)):
                fast = render_native(header, pixels, media_type="image/png", window=window)
                if fast is None:
                    declined += 1
                    continue
                drawn += 1
                slow = render(ds, frame=frame, media_type="image/png", window=window)
                same = np.array_equal(
                    np.asarray(Image.open(io.BytesIO(fast))), np.asarray(Image.open(io.BytesIO(slow)))
                )
                assert same, f"{path.name} frame {frame} window {window}: the fast path drew other pixels"
    assert drawn >= 40, f"only {drawn} renderings took the fast path ({declined} declined)"
    assert declined > 0  # colour and LUT-sequence files exist in pydicom-data and must be declined


def test_render_native_honours_quality_and_viewport_like_render() -> None:
    path = Path(get_testdata_file("CT_small.dcm"))
    record = read_instance(path)
    assert record.frame_index is not None
    pixels = read_frames(path, record.frame_index, [1])[0]
    viewport = Viewport(vw=64, vh=64, sx=10, sy=20, sw=80, sh=60)
    fast = render_native(record.metadata, pixels, media_type="image/jpeg", quality=55, viewport=viewport)
    slow = render(_ds("CT_small.dcm"), media_type="image/jpeg", quality=55, viewport=viewport)
    assert fast == slow
    with pytest.raises(RenderError, match="quality"):
        render_native(record.metadata, pixels, quality=0)


@pytest.mark.parametrize(
    "name",
    ["emri_small_jpeg_2k_lossless.dcm", "SC_rgb_rle_2frame.dcm", "OBXXXX1A.dcm", "MR_small_RLE.dcm", "CT_small.dcm"],
)
def test_a_frame_decoded_from_the_file_alone_is_drawn_the_same(name: str) -> None:
    """Large files keep their Pixel Data on disk (`defer_size`) and decode one frame from the path."""
    path = get_testdata_file(name)
    whole = pydicom.dcmread(path)
    deferred = pydicom.dcmread(path, defer_size=4096)
    frames = int(whole.get("NumberOfFrames", 1) or 1)
    for frame in sorted({1, frames}):
        expected = render(whole, frame=frame, media_type="image/png")
        assert render(deferred, frame=frame, media_type="image/png", pixels_from=path) == expected
        assert thumbnail(deferred, frame=frame, pixels_from=path) == thumbnail(whole, frame=frame)


# --- stored data the header does not describe --------------------------------------------------


def _saved(ds: Dataset) -> Path:
    import tempfile

    handle = tempfile.NamedTemporaryFile(suffix=".dcm", delete=False)
    ds.save_as(handle.name)
    return Path(handle.name)


@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_RLE.dcm", "SC_rgb.dcm"])
def test_missing_pixel_representation_is_read_as_unsigned(name: str) -> None:
    """PS3.3 C.7.6.3: Pixel Representation is Type 1; without it pydicom refused every frame (a 500)."""
    expected = _png(_ds(name))
    without = _ds(name)
    del without.PixelRepresentation
    assert np.array_equal(_png(without), expected)
    path = _saved(without)
    try:  # decoded from the file alone, as a large instance is: pydicom rereads the header there
        deferred = pydicom.dcmread(path, defer_size=4096)
        assert np.array_equal(_png(deferred, pixels_from=path), expected)
    finally:
        path.unlink()


def test_missing_planar_configuration_and_photometric_have_their_usual_reading() -> None:
    expected = _png(_ds("SC_rgb.dcm"))
    ds = _ds("SC_rgb.dcm")
    del ds.PlanarConfiguration, ds.PhotometricInterpretation
    assert np.array_equal(_png(ds), expected)


@pytest.mark.parametrize(
    ("name", "changes", "reason"),
    [
        ("CT_small.dcm", {"Rows": 129}, "pixel data"),
        ("CT_small.dcm", {"BitsStored": 20}, "Bits Stored"),
        ("CT_small.dcm", {"PhotometricInterpretation": "FOO"}, ""),
        ("CT_small.dcm", {"PhotometricInterpretation": "RGB"}, ""),
        ("emri_small.dcm", {"NumberOfFrames": 11}, "pixel data"),
        ("OBXXXX1A.dcm", {"RedPaletteColorLookupTableData": None}, ""),
    ],
)
def test_pixel_data_its_header_contradicts_is_a_pixel_data_error(name: str, changes: dict, reason: str) -> None:  # type: ignore[type-arg]
    from aperture.dicom.render import PixelDataError

    ds = _ds(name)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    with pytest.raises(PixelDataError, match=reason):
        render(ds)


def test_a_colour_model_not_drawn_is_unsupported_not_broken() -> None:
    from aperture.dicom.render import UnsupportedPixelData

    ds = _ds("SC_rgb.dcm")
    ds.PhotometricInterpretation = "HSV"
    with pytest.raises(UnsupportedPixelData, match="HSV"):
        render(ds)


def test_float_pixel_data_is_drawn_through_the_grayscale_pipeline() -> None:
    ds = _ds("CT_small.dcm")
    values = ds.pixel_array.astype(np.float32) / 7
    del ds.PixelData, ds.PixelRepresentation, ds.BitsStored, ds.HighBit
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.tobytes()
    expected = np.rint((values - values.min()) / (values.max() - values.min()) * 255).astype(np.uint8)
    assert np.abs(_png(ds).astype(int) - expected).max() <= 1
