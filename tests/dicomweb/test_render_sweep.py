"""Every render and transcode path, on every pixel-bearing file Aperture accepts: never a 5xx.

Stores each pixel-bearing file of pydicom-data and pydicom's own test files (compressed, big
endian, deflated, palette, YBR, planar RGB, 1-bit, multi-frame, the broken ones) and files made
here from them with missing or contradictory Image Pixel, window, VOI LUT, Modality LUT and
rescale attributes, then asks each stored instance for /rendered (JPEG, PNG, window, viewport,
quality), its first and last frame rendered, its thumbnail, frame 1 as stored, by default, in each
syntax `available_targets` offers and each one it encodes on request, and the whole instance in
each syntax it can be converted to (files over 1 MB get fewer of these: see `_sweep`). A refusal
must be a 4xx that says why; an answer must be what its Content-Type says. One server for the
module (the sweep only adds its own instances).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from aperture.dicom.encode import ENCODE_TARGETS
from aperture.dicom.transcode import available_targets
from tests.conftest import ApertureServer, shared_server
from tests.helpers import make_instance, sequence_items, stow

_OCTET = "application/octet-stream"
LARGE = 1 << 20
_NATIVE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
# The first bytes of each compressed frame media type (PS3.18 Table 8.7.3-5).
_MAGIC = {
    "image/jpeg": (b"\xff\xd8",),
    "image/jls": (b"\xff\xd8",),
    "image/jp2": (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  "),
    "image/jphc": (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  "),
}


@dataclass
class Case:
    """One file the sweep stores, and what it learnt from the server."""

    name: str
    data: bytes
    url: str | None = None  # RetrieveURL once stored
    header: Dataset | None = None  # what was sent, without its pixels
    answers: list[tuple[str, int, str]] = field(default_factory=list)  # (request, status, problem or "")


# --- the files -----------------------------------------------------------------------------------


def _read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), force=True)


def _part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def _renamed(ds: Dataset) -> Dataset:
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    if hasattr(ds, "file_meta"):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def pydicom_cases() -> list[Case]:
    """Each pixel-bearing (or unreadable) test file; a repeated SOP Instance UID gets fresh UIDs.

    So do files without a Study or Series Instance UID (the JPEG-LS near-lossless ones), which
    STOW-RS refuses as they are: their pixel data is what is swept here.
    """
    seen: set[str] = set()
    cases = []
    for name in sorted(get_testdata_files(), key=os.path.basename):
        path = Path(name)
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            ds = _read(data)
        except Exception:
            cases.append(Case(path.name, data))  # the server must refuse it cleanly
            continue
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            continue
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid in seen or not ds.get("StudyInstanceUID") or not ds.get("SeriesInstanceUID"):
            try:
                data = _part10(_renamed(ds))
            except Exception:
                continue  # cannot be given new UIDs; its twin is swept
        seen.add(uid)
        cases.append(Case(path.name, data))
    return cases


def _variant(base: str, change: Callable[[Dataset], object]) -> bytes:
    ds = _renamed(pydicom.dcmread(get_testdata_file(base)))
    change(ds)
    return _part10(ds)


def _without(*keywords: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)

    return change


def _with(**values: Any) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for keyword, value in values.items():
            setattr(ds, keyword, value)

    return change


def _voi_lut(ds: Dataset) -> None:
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new(0x00283006, "OW", np.arange(256, dtype="<u2").tobytes())  # LUT Data
    ds.VOILUTSequence = Sequence([item])


def _voi_lut_without_data(ds: Dataset) -> None:
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    ds.VOILUTSequence = Sequence([item])


def _modality_lut(with_data: bool) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.ModalityLUTType = "HU"
        if with_data:
            item.add_new(0x00283006, "OW", (np.arange(4096, dtype="<u2") // 2).tobytes())  # LUT Data
        ds.ModalityLUTSequence = Sequence([item])

    return change


def _ybr_full(ds: Dataset) -> None:
    from pydicom.pixels import convert_color_space

    ds.PixelData = convert_color_space(ds.pixel_array, "RGB", "YBR_FULL").tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"


def _float_pixels(keyword: str, dtype: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        pixels = ds.pixel_array.astype(dtype) / 7.0
        del ds.PixelData
        for attribute in ("PixelRepresentation", "BitsStored", "HighBit"):
            delattr(ds, attribute)
        ds.BitsAllocated = 32 if dtype == "float32" else 64
        setattr(ds, keyword, pixels.tobytes())

    return change


def odd_cases() -> list[Case]:
    """Files with missing or contradictory Image Pixel attributes, made from real ones."""
    made: dict[str, bytes] = {
        # Pixel Representation is Type 1 (PS3.3 C.7.6.3), but files without it exist
        "emri_small no PixelRepresentation": _variant("emri_small.dcm", _without("PixelRepresentation")),
        "emri_small_jpeg_2k_lossless no PixelRepresentation": _variant(
            "emri_small_jpeg_2k_lossless.dcm", _without("PixelRepresentation")
        ),
        "emri_small_RLE no PixelRepresentation": _variant("emri_small_RLE.dcm", _without("PixelRepresentation")),
        "CT_small no PixelRepresentation": _variant("CT_small.dcm", _without("PixelRepresentation")),
        "SC_rgb no PixelRepresentation": _variant("SC_rgb.dcm", _without("PixelRepresentation")),
        "CT_small BitsStored > BitsAllocated": _variant("CT_small.dcm", _with(BitsStored=20, HighBit=19)),
        "CT_small no BitsStored": _variant("CT_small.dcm", _without("BitsStored", "HighBit")),
        "CT_small HighBit 3": _variant("CT_small.dcm", _with(HighBit=3)),
        "CT_small HighBit 40": _variant("CT_small.dcm", _with(HighBit=40)),
        "CT_small Rows too large": _variant("CT_small.dcm", _with(Rows=129)),
        "CT_small Rows too small": _variant("CT_small.dcm", _with(Rows=100)),
        "CT_small Columns doubled": _variant("CT_small.dcm", _with(Columns=256)),
        "CT_small no Rows": _variant("CT_small.dcm", _without("Rows")),
        "CT_small BitsAllocated 12": _variant("CT_small.dcm", _with(BitsAllocated=12)),
        "CT_small BitsAllocated 0": _variant("CT_small.dcm", _with(BitsAllocated=0)),
        "CT_small PixelRepresentation 2": _variant("CT_small.dcm", _with(PixelRepresentation=2)),
        "emri_small no NumberOfFrames": _variant("emri_small.dcm", _without("NumberOfFrames")),
        "emri_small NumberOfFrames 0": _variant("emri_small.dcm", _with(NumberOfFrames=0)),
        "emri_small NumberOfFrames 11": _variant("emri_small.dcm", _with(NumberOfFrames=11)),
        "emri_small NumberOfFrames 100000": _variant("emri_small.dcm", _with(NumberOfFrames=100000)),
        "emri_small_RLE NumberOfFrames 11": _variant("emri_small_RLE.dcm", _with(NumberOfFrames=11)),
        "emri_small_jpeg_2k_lossless NumberOfFrames 5": _variant(
            "emri_small_jpeg_2k_lossless.dcm", _with(NumberOfFrames=5)
        ),
        "SC_rgb no PlanarConfiguration": _variant("SC_rgb.dcm", _without("PlanarConfiguration")),
        "SC_rgb PlanarConfiguration 2": _variant("SC_rgb.dcm", _with(PlanarConfiguration=2)),
        "SC_rgb SamplesPerPixel 4": _variant("SC_rgb.dcm", _with(SamplesPerPixel=4)),
        "SC_rgb SamplesPerPixel 1": _variant("SC_rgb.dcm", _with(SamplesPerPixel=1)),
        "CT_small SamplesPerPixel 3": _variant("CT_small.dcm", _with(SamplesPerPixel=3)),
        "CT_small no PhotometricInterpretation": _variant("CT_small.dcm", _without("PhotometricInterpretation")),
        "CT_small PhotometricInterpretation FOO": _variant("CT_small.dcm", _with(PhotometricInterpretation="FOO")),
        "CT_small PhotometricInterpretation RGB": _variant("CT_small.dcm", _with(PhotometricInterpretation="RGB")),
        "SC_rgb PhotometricInterpretation MONOCHROME2": _variant(
            "SC_rgb.dcm", _with(PhotometricInterpretation="MONOCHROME2")
        ),
        "SC_rgb no PhotometricInterpretation": _variant("SC_rgb.dcm", _without("PhotometricInterpretation")),
        "CT_small windows 40\\400": _variant("CT_small.dcm", _with(WindowCenter=[40, 400], WindowWidth=[400, 2000])),
        "CT_small window counts differ": _variant("CT_small.dcm", _with(WindowCenter=[40, 400], WindowWidth=[400])),
        "CT_small WindowWidth 0": _variant("CT_small.dcm", _with(WindowCenter=40, WindowWidth=0)),
        "CT_small WindowWidth -400": _variant("CT_small.dcm", _with(WindowCenter=40, WindowWidth=-400)),
        "CT_small WindowCenter only": _variant("CT_small.dcm", lambda ds: _without("WindowWidth")(ds)),
        "CT_small VOILUTFunction BOGUS": _variant("CT_small.dcm", _with(VOILUTFunction="BOGUS")),
        "CT_small VOILUTFunction SIGMOID": _variant("CT_small.dcm", _with(VOILUTFunction="SIGMOID")),
        "MR_small VOI LUT": _variant("MR_small.dcm", _voi_lut),
        "MR_small VOI LUT without data": _variant("MR_small.dcm", _voi_lut_without_data),
        "MR_small Modality LUT": _variant("MR_small.dcm", _modality_lut(with_data=True)),
        "MR_small Modality LUT without data": _variant("MR_small.dcm", _modality_lut(with_data=False)),
        "CT_small RescaleSlope 0": _variant("CT_small.dcm", _with(RescaleSlope=0, RescaleIntercept=0)),
        "CT_small RescaleSlope only": _variant("CT_small.dcm", _with(RescaleSlope=2)),
        "MR_small MONOCHROME1": _variant("MR_small.dcm", _with(PhotometricInterpretation="MONOCHROME1")),
        "emri_small MONOCHROME1": _variant("emri_small.dcm", _with(PhotometricInterpretation="MONOCHROME1")),
        "OBXXXX1A PALETTE COLOR without LUT data": _variant(
            "OBXXXX1A.dcm",
            _without(
                "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData"
            ),
        ),
        "OBXXXX1A PALETTE COLOR without LUT": _variant(
            "OBXXXX1A.dcm",
            _without(
                "RedPaletteColorLookupTableData",
                "GreenPaletteColorLookupTableData",
                "BluePaletteColorLookupTableData",
                "RedPaletteColorLookupTableDescriptor",
                "GreenPaletteColorLookupTableDescriptor",
                "BluePaletteColorLookupTableDescriptor",
            ),
        ),
        "MR_small PALETTE COLOR without LUT": _variant(
            "MR_small.dcm", _with(PhotometricInterpretation="PALETTE COLOR")
        ),
        "SC_rgb YBR_FULL": _variant("SC_rgb.dcm", _ybr_full),
        "SC_rgb labelled YBR_FULL_422": _variant("SC_rgb.dcm", _with(PhotometricInterpretation="YBR_FULL_422")),
        "CT_small FloatPixelData": _variant("CT_small.dcm", _float_pixels("FloatPixelData", "float32")),
        "CT_small DoubleFloatPixelData": _variant("CT_small.dcm", _float_pixels("DoubleFloatPixelData", "float64")),
        "CT_small PixelData empty": _variant("CT_small.dcm", _with(PixelData=b"")),
        "CT_small PixelData short": _variant("CT_small.dcm", lambda ds: setattr(ds, "PixelData", ds.PixelData[:100])),
    }
    # Attributes that are right, apart from the one named: a plain 8-bit monochrome instance
    made["8-bit MONOCHROME2 PixelRepresentation 1"] = make_instance(
        extra={"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7, "PixelRepresentation": 1, "PixelData": bytes(256)}
    )
    return [Case(name, data) for name, data in made.items()]


# Files that must be stored, and render, so that the sweep cannot shrink to nothing.
MUST_STORE = {
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "emri_small.dcm",
    "emri_small_RLE.dcm",
    "emri_small_big_endian.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "SC_rgb.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "OBXXXX1A.dcm",
    "color-pl.dcm",
    "image_dfl.dcm",
    "liver.dcm",
    "JPEG2000.dcm",
    "rtdose.dcm",
    "JPEGLSNearLossless_16.dcm",
    "SC_rgb_jls_lossy_line.dcm",
}
MUST_RENDER = MUST_STORE | {
    "emri_small no PixelRepresentation",
    "emri_small_jpeg_2k_lossless no PixelRepresentation",
    "emri_small_RLE no PixelRepresentation",
    "CT_small no PixelRepresentation",
    "SC_rgb no PixelRepresentation",
    "SC_rgb no PlanarConfiguration",
    "CT_small windows 40\\400",
    "CT_small window counts differ",
    "CT_small WindowWidth 0",
    "CT_small WindowWidth -400",
    "CT_small RescaleSlope 0",
    "MR_small VOI LUT",
    "MR_small Modality LUT",
    "MR_small MONOCHROME1",
    "SC_rgb YBR_FULL",
}


@pytest.fixture(scope="module")
def sweep_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApertureServer]:
    srv = shared_server(tmp_path_factory)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(sweep_server: ApertureServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sweep_server.dicomweb, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def swept(http: httpx.Client) -> list[Case]:
    """Every case stored (or refused) and asked for every rendering and transcoding."""
    cases = pydicom_cases() + odd_cases()
    for case in cases:
        _store(http, case)
        if case.url is not None:
            _sweep(http, case)
    return cases


# --- storing and asking ------------------------------------------------------------------------


def _store(http: httpx.Client, case: Case) -> None:
    """STOW-RS the case alone; a refusal is recorded (a 4xx must say why; a refused instance, 400 or 409 per
    PS3.18 Table 10.5.3-1, must carry a FailureReason)."""
    response = stow(http, [case.data])
    if response.status_code >= 500 or response.status_code < 200:
        case.answers.append(("STOW", response.status_code, response.text[:200] or "no body"))
        return
    is_store_response = response.headers.get("content-type", "").startswith("application/dicom+json")
    if response.status_code >= 400 and not (response.status_code in (400, 409) and is_store_response):
        case.answers.append(("STOW", response.status_code, _problem_of_refusal(response)))
        return
    referenced = sequence_items(response.json(), "00081199")
    if not referenced:
        failed = sequence_items(response.json(), "00081198")
        reason = failed[0].get("00081197", {}).get("Value", [0])[0] if failed else 0
        case.answers.append(("STOW", response.status_code, "" if reason else "refused without a FailureReason"))
        return
    case.url = str(referenced[0]["00081190"]["Value"][0]).split("/dicom-web", 1)[1]
    case.header = _read(case.data)


def _frames(header: Dataset) -> int:
    try:
        return max(1, int(header.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _sweep(http: httpx.Client, case: Case) -> None:
    assert case.url is not None and case.header is not None
    header = case.header
    url = case.url
    stored_ts = str(header.file_meta.get("TransferSyntaxUID", "")) if hasattr(header, "file_meta") else ""
    size = _size(header)
    last = _frames(header)

    def ask(label: str, path: str, accept: str | None, check: Callable[[httpx.Response], str], **params: str) -> None:
        headers = {"Accept": accept} if accept else {}
        try:
            response = http.get(url + path, params=params, headers=headers)
        except httpx.TransportError as exc:  # a worker that died (a codec aborting the process)
            case.answers.append((label, 599, f"no answer: {exc}"))
            return
        if response.status_code >= 500:
            problem = response.text[:200]
        elif response.status_code >= 400:
            problem = _problem_of_refusal(response)
        elif response.status_code == 200:
            try:
                problem = check(response)
            except Exception as exc:  # a body that does not parse as what it says it is
                problem = f"body does not match {response.headers.get('content-type')}: {exc!r}"[:300]
        else:
            problem = f"unexpected status {response.status_code}"
        case.answers.append((label, response.status_code, problem))

    image = _image_check
    # A file over 1 MB (9 of pydicom-data's, up to 7 MB) is drawn once as JPEG, in a viewport, as its
    # last frame and as a thumbnail, and its frame 1 is asked for as stored and uncompressed; encoding
    # on request and whole-instance conversion are left to the small files with the same pixel layout
    # (converting color3d_jpeg_baseline.dcm alone takes 13 s and makes 110 MB).
    large = len(case.data) > LARGE
    ask("rendered jpeg", "/rendered", "image/jpeg", image("JPEG", size))
    if not large:
        ask("rendered png", "/rendered", "image/png", image("PNG", size))
        ask("rendered window", "/rendered", "image/png", image("PNG", size), window="40,400")
        ask("rendered window sigmoid", "/rendered", "image/jpeg", image("JPEG", size), window="100,50,sigmoid")
        ask("rendered quality", "/rendered", "image/jpeg", image("JPEG", size), quality="50")
        ask("frames/1/rendered", "/frames/1/rendered", "image/png", image("PNG", size))
    ask("rendered viewport", "/rendered", "image/jpeg", image("JPEG", None, box=64), viewport="64,64")
    if last > 1:
        ask(f"frames/{last}/rendered", f"/frames/{last}/rendered", "image/jpeg", image("JPEG", size))
    ask("thumbnail", "/thumbnail", "image/jpeg", image("JPEG", None, box=128, at_most=size))
    frame_check = _frame_check(header)
    ask("frames/1 *", "/frames/1", f'multipart/related; type="{_OCTET}"; transfer-syntax=*', frame_check)
    ask("frames/1 default", "/frames/1", None, frame_check)
    targets = available_targets(stored_ts) if stored_ts else []
    encoded = [] if large else [t for t in ENCODE_TARGETS if t not in targets]
    for target in [*targets, *encoded]:
        accept = f'multipart/related; type="{_OCTET}"; transfer-syntax={target}'
        ask(f"frames/1 {target}", "/frames/1", accept, frame_check)
    for target in [] if large else targets[1:]:
        accept = f'multipart/related; type="application/dicom"; transfer-syntax={target}'
        ask(f"instance {target}", "", accept, _instance_check(target))


def _size(header: Dataset) -> tuple[int, int] | None:
    try:
        return int(header.Columns), int(header.Rows)
    except (AttributeError, TypeError, ValueError):
        return None


def _problem_of_refusal(response: httpx.Response) -> str:
    """What is wrong with a 4xx answer: it must say, in a sentence, why."""
    try:
        message = response.json().get("message")
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.text[:80]!r}"
    if not isinstance(message, str) or len(message.split()) < 3 or "Traceback" in message:
        return f"{response.status_code} without a message a person can act on: {message!r}"
    return ""


def _image_check(
    fmt: str, size: tuple[int, int] | None, *, box: int | None = None, at_most: tuple[int, int] | None = None
) -> Callable[[httpx.Response], str]:
    def check(response: httpx.Response) -> str:
        media = response.headers.get("content-type", "")
        if media != f"image/{fmt.lower()}":
            return f"Content-Type {media!r}, asked for image/{fmt.lower()}"
        with Image.open(io.BytesIO(response.content)) as picture:
            picture.load()
            if picture.format != fmt:
                return f"labelled image/{fmt.lower()} but is {picture.format}"
            got = picture.size
        if size is not None and got != size:
            return f"drawn {got[0]}x{got[1]}, the image is {size[0]}x{size[1]}"
        if box is not None:
            if max(got) > box:
                return f"drawn {got[0]}x{got[1]}, more than {box}x{box}"
            if at_most is None and max(got) != box:
                return f"drawn {got[0]}x{got[1]}, does not fill {box}x{box}"
            if at_most is not None and max(at_most) <= box and got != at_most:
                return f"thumbnail {got[0]}x{got[1]} of a {at_most[0]}x{at_most[1]} image"
        return ""

    return check


def _native_length(header: Dataset) -> int | None:
    try:
        rows, columns, bits = int(header.Rows), int(header.Columns), int(header.BitsAllocated)
        samples = int(header.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if bits not in (8, 16, 32, 64):
        return None  # bit-packed: frames need not end on a byte
    length = rows * columns * samples * bits // 8
    stored_ts = str(header.file_meta.get("TransferSyntaxUID", "")) if hasattr(header, "file_meta") else ""
    if header.get("PhotometricInterpretation") == "YBR_FULL_422" and samples == 3 and stored_ts in _NATIVE:
        length = length // 3 * 2  # stored subsampled; decoded from a compressed syntax it is full RGB
    return length


def _split(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part (a plain split: the email parser takes seconds on 100 MB)."""
    content_type = response.headers["content-type"]
    if not content_type.startswith("multipart/related"):
        return [(content_type, response.content)]
    boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
    parts = []
    for chunk in response.content.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.partition(b"\r\n\r\n")
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in head.decode("latin-1").split("\r\n") if line)
        )
        parts.append((headers.get("content-type", "").replace('"', ""), body[:-2] if body.endswith(b"\r\n") else body))
    return parts


def _frame_check(header: Dataset) -> Callable[[httpx.Response], str]:
    native = _native_length(header)

    def check(response: httpx.Response) -> str:
        parts = _split(response)
        if len(parts) != 1:
            return f"{len(parts)} parts for one frame"
        content_type, body = parts[0]
        media = content_type.split(";", 1)[0].strip()
        syntax = content_type.partition("transfer-syntax=")[2].split(";")[0].strip()
        if not body:
            return "empty frame"
        if media == _OCTET:
            if syntax in _NATIVE and native is not None and len(body) not in (native, native + 1):
                return f"{len(body)} bytes, a native frame of these attributes is {native}"
            if syntax == "1.2.840.10008.1.2.5" or syntax in ENCODE_TARGETS:
                return ""  # a codestream named by its syntax
            return ""
        if media == "image/dicom-rle":
            segments = int(np.frombuffer(body[:4], "<u4")[0])
            return "" if 1 <= segments <= 15 and len(body) >= 64 else f"not an RLE frame ({segments} segments)"
        if media in _MAGIC:
            return "" if body.startswith(_MAGIC[media]) else f"not a {media} codestream: {body[:8].hex()}"
        return f"unexpected frame media type {content_type!r}"

    return check


def _instance_check(target: str) -> Callable[[httpx.Response], str]:
    def check(response: httpx.Response) -> str:
        parts = _split(response)
        if len(parts) != 1:
            return f"{len(parts)} parts for one instance"
        ds = pydicom.dcmread(io.BytesIO(parts[0][1]))
        if str(ds.file_meta.TransferSyntaxUID) != target:
            return f"asked for {target}, the file says {ds.file_meta.TransferSyntaxUID}"
        ds.get("PixelData")  # parses to the end
        return ""

    return check


# --- the tests ---------------------------------------------------------------------------------


def _problems(cases: list[Case], *, server_errors: bool) -> list[str]:
    return [
        f"{case.name}: {label} -> {status} {problem}"
        for case in cases
        for label, status, problem in case.answers
        if (status >= 500) == server_errors and problem
    ]


def test_no_render_or_transcode_path_answers_5xx(swept: list[Case]) -> None:
    errors = _problems(swept, server_errors=True)
    assert not errors, f"{len(errors)} answers were 5xx:\n" + "\n".join(errors)


def test_refusals_say_why_and_answers_are_what_they_say(swept: list[Case]) -> None:
    problems = _problems(swept, server_errors=False)
    assert not problems, f"{len(problems)} answers were wrong:\n" + "\n".join(problems)


def test_the_sweep_covers_what_it_claims(swept: list[Case]) -> None:
    """Known good files are stored and drawn: a server that refused everything would not pass."""
    stored = {case.name for case in swept if case.url is not None}
    assert MUST_STORE <= stored, sorted(MUST_STORE - stored)
    assert len(stored) >= 190, f"only {len(stored)} of {len(swept)} files were stored"
    rendered = {
        case.name
        for case in swept
        if any(label == "rendered jpeg" and status == 200 for label, status, _ in case.answers)
    }
    assert MUST_RENDER <= rendered, sorted(MUST_RENDER - rendered)
    requests = sum(len(case.answers) for case in swept)
    answered = sum(status == 200 for case in swept for _, status, _ in case.answers)
    print(f"\nrender sweep: {len(stored)} of {len(swept)} stored, {len(rendered)} drawn, {answered} of {requests} 200")
    assert answered >= 2500, f"only {answered} of {requests} answers were 200"


@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm"])
def test_a_multiframe_instance_without_pixel_representation_renders_as_unsigned(http: httpx.Client, name: str) -> None:
    """PS3.3 C.7.6.3 makes Pixel Representation Type 1; its absence is read as 0000H (unsigned), as Orthanc does."""
    with_it = _renamed(pydicom.dcmread(get_testdata_file(name)))
    assert with_it.PixelRepresentation == 0
    without = _renamed(pydicom.dcmread(get_testdata_file(name)))
    del without.PixelRepresentation
    urls = []
    for ds in (with_it, without):
        answer = stow(http, [_part10(ds)])
        assert answer.status_code == 200, answer.text
        urls.append(str(sequence_items(answer.json(), "00081199")[0]["00081190"]["Value"][0]).split("/dicom-web")[1])
    for frame in range(1, int(with_it.NumberOfFrames) + 1):
        drawn = []
        for url in urls:
            response = http.get(f"{url}/frames/{frame}/rendered", headers={"Accept": "image/png"})
            assert response.status_code == 200, f"frame {frame}: {response.status_code} {response.text}"
            drawn.append(np.asarray(Image.open(io.BytesIO(response.content))))
        assert np.array_equal(drawn[0], drawn[1]), f"frame {frame} is drawn differently without Pixel Representation"
    response = http.get(f"{urls[1]}/rendered", headers={"Accept": "image/jpeg"})
    assert response.status_code == 200, response.text
