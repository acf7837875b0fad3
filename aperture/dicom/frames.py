"""Locate image frames inside a stored Part-10 file once, then read them by seek + read.

At ingest the server calls `build_frame_index` on the stored file and keeps the result (as JSON,
`FrameIndex.to_json`) in its SQL index. A WADO-RS /frames request then calls `read_frames`, which
opens the file, seeks to each byte run and reads it: no DICOM parsing and no pixel data in memory
beyond the frames asked for.

Frame bytes are returned exactly as stored:

* native (uncompressed) syntaxes: the frame's slice of the Pixel Data value. For Explicit VR Big
  Endian that is big-endian bytes; converting them to little endian is the caller's job
  (`aperture.dicom.transcode.transcode_frame`).
* encapsulated syntaxes: the concatenated fragment values of the frame, item headers excluded,
  i.e. one JPEG / JPEG-LS / JPEG 2000 / RLE codestream per frame.

Deliberately not done here: decoding, transcoding or validating codestreams; Float / Double
Float Pixel Data; Deflated files (their bytes are compressed as a whole, so there is no offset to
seek to); bit-packed frames (Bits Allocated 1) that do not start on a byte boundary; and Big
Endian files whose 8-bit pixels are stored as OW (byte-swapped 16-bit words, so a frame boundary
can fall inside a word). For all of these `build_frame_index` returns None and the caller falls
back to decoding the whole file.
"""

from __future__ import annotations

import json
import operator
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import pydicom
from pydicom.filereader import read_file_meta_info
from pydicom.tag import Tag

__all__ = [
    "FrameAttributes",
    "FrameError",
    "FrameIndex",
    "build_frame_index",
    "index_at",
    "locate_frames",
    "native_frame_length",
    "read_frames",
]

DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_NATIVE = frozenset({_IMPLICIT_LE, _EXPLICIT_LE, _BIG_ENDIAN})

_PIXEL_DATA = 0x7FE00010
_EXTENDED_OFFSET_TABLE = Tag(0x7FE0, 0x0001)
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LONG_LENGTH_VRS = {b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"UN", b"SQ", b"UC", b"UR", b"UT"}

# Transfer syntaxes whose frames are JPEG-family codestreams, so that a fragment beginning with
# SOI (JPEG, JPEG-LS) or SOC+SIZ (JPEG 2000, HTJ2K) marks the start of a new frame.
_JPEG_FAMILY = frozenset({f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 57, 70, 80, 81, 90, 91, 92, 93, 201, 202, 203)})
_FRAME_START_MARKERS = (b"\xff\xd8", b"\xff\x4f\xff\x51")


class FrameError(ValueError):
    """A requested frame does not exist in the instance (maps to HTTP 4xx)."""


@dataclass(frozen=True)
class FrameIndex:
    """Where each frame's bytes live in one stored file.

    `frames[n - 1]` lists the (file_offset, length) byte runs of frame n: one run for native
    pixel data, one run per fragment (item header excluded) for encapsulated pixel data.
    """

    encapsulated: bool
    transfer_syntax: str
    frames: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def number_of_frames(self) -> int:
        return len(self.frames)

    def to_json(self) -> str:
        """Compact JSON for storing next to the instance in the SQL index."""
        payload = {
            "encapsulated": self.encapsulated,
            "transfer_syntax": self.transfer_syntax,
            "frames": [[[offset, length] for offset, length in runs] for runs in self.frames],
        }
        return json.dumps(payload, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> FrameIndex:
        """Inverse of `to_json`; raises ValueError if the stored text is not a frame index."""
        try:
            data = json.loads(text)
            encapsulated = data["encapsulated"]
            transfer_syntax = data["transfer_syntax"]
            frames = tuple(tuple((int(offset), int(length)) for offset, length in runs) for runs in data["frames"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"Stored frame index is not valid JSON of the expected shape: {exc}") from exc
        if not isinstance(encapsulated, bool) or not isinstance(transfer_syntax, str):
            raise ValueError("Stored frame index has a wrong type for 'encapsulated' or 'transfer_syntax'")
        if any(offset < 0 or length < 0 for runs in frames for offset, length in runs):
            raise ValueError("Stored frame index has a negative offset or length")
        return cls(encapsulated=encapsulated, transfer_syntax=transfer_syntax, frames=frames)


def build_frame_index(path: str | os.PathLike[str]) -> FrameIndex | None:
    """Compute where every frame of the file's (7FE0,0010) Pixel Data lives, without loading it.

    Returns None when there is no Pixel Data, or when frames cannot be located by offset
    (Deflated transfer syntax, Float/Double Float Pixel Data, bit-packed frames not on a byte
    boundary, pixel data shorter than its attributes promise, or fragments that cannot be
    assigned to frames unambiguously). Files that are not DICOM raise pydicom's InvalidDicomError.
    """
    meta = read_file_meta_info(path)
    transfer_syntax = str(meta.get("TransferSyntaxUID", "") or "")
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LE:
        return None

    file_size = os.path.getsize(path)
    with open(path, "rb") as fp:
        # Parses everything up to (not including) the pixel data element and leaves `fp`
        # positioned at its tag; large values before it are skipped, not read.
        ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=4096)
        if not transfer_syntax:
            implicit, little = ds.original_encoding[:2]
            transfer_syntax = _IMPLICIT_LE if implicit else (_EXPLICIT_LE if little else _BIG_ENDIAN)
        return index_at(fp, ds, transfer_syntax, file_size)


def index_at(fp: BinaryIO, ds: pydicom.Dataset, transfer_syntax: str, file_size: int) -> FrameIndex | None:
    """The frame index of a file whose header `ds` was parsed from `fp`, now at the Pixel Data tag.

    Ingest calls this with the file and header it already has open, so no file is parsed twice.
    """
    return locate_frames(fp, _DatasetAttributes(ds), transfer_syntax, file_size)


class FrameAttributes(Protocol):
    """What locating frames needs from the header, asked for only when it is needed."""

    def bits_allocated(self) -> int: ...

    def number_of_frames(self) -> int | None:
        """Number of Frames (1 when absent), or None when it is unusable."""

    def frame_length(self, n_frames: int) -> int | None:
        """Bytes per native frame, or None if frames are not byte-addressable."""

    def extended_offsets(self, fp: BinaryIO) -> list[int] | None: ...


def locate_frames(fp: BinaryIO, attributes: FrameAttributes, transfer_syntax: str, file_size: int) -> FrameIndex | None:
    """The frame index of the Pixel Data element at the current position of `fp`."""
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LE:
        return None
    little_endian = transfer_syntax != _BIG_ENDIAN
    implicit_vr = transfer_syntax == _IMPLICIT_LE
    header = _read_element_header(fp, little_endian=little_endian, implicit_vr=implicit_vr)
    if header is None:
        return None
    tag, vr, value_length = header
    if tag != _PIXEL_DATA:
        return None  # Float/Double Float Pixel Data, or something unexpected
    if not little_endian and vr == b"OW" and attributes.bits_allocated() <= 8:
        return None  # byte pixels stored as swapped 16-bit words: frames may straddle words
    value_offset = fp.tell()

    n_frames = attributes.number_of_frames()
    if n_frames is None:
        return None
    if (value_length == _UNDEFINED_LENGTH) != (transfer_syntax not in _NATIVE):
        return None  # encoding contradicts the transfer syntax: do not guess
    if value_length == _UNDEFINED_LENGTH:
        runs = _encapsulated_runs(fp, attributes, transfer_syntax, n_frames, value_offset, file_size)
        if runs is None:
            return None
        return FrameIndex(encapsulated=True, transfer_syntax=transfer_syntax, frames=runs)

    frame_length = attributes.frame_length(n_frames)
    if frame_length is None or frame_length * n_frames > value_length:
        return None
    if value_offset + value_length > file_size:
        return None
    frames = tuple(((value_offset + i * frame_length, frame_length),) for i in range(n_frames))
    return FrameIndex(encapsulated=False, transfer_syntax=transfer_syntax, frames=frames)


class _DatasetAttributes:
    """FrameAttributes of a parsed pydicom data set."""

    def __init__(self, ds: pydicom.Dataset) -> None:
        self.ds = ds

    def bits_allocated(self) -> int:
        return int(self.ds.get("BitsAllocated", 0) or 0)

    def number_of_frames(self) -> int | None:
        return _number_of_frames(self.ds)

    def frame_length(self, n_frames: int) -> int | None:
        return _native_frame_length(self.ds, n_frames)

    def extended_offsets(self, fp: BinaryIO) -> list[int] | None:
        return _extended_offsets(fp, self.ds)


def read_frames(path: str | os.PathLike[str], index: FrameIndex, numbers: Sequence[int]) -> list[bytes]:
    """Read the stored bytes of the given 1-based frame numbers, in the order asked for.

    Raises FrameError naming the first frame number that the instance does not have.
    """
    total = len(index.frames)
    wanted = []
    for number in numbers:
        try:
            valid = not isinstance(number, bool) and 1 <= operator.index(number) <= total
        except TypeError:
            valid = False
        if not valid:
            raise FrameError(
                f"Frame {number} does not exist: frame numbers start at 1 and this instance has "
                f"{total} frame{'s' if total != 1 else ''}"
            )
        wanted.append(operator.index(number))
    out: list[bytes] = []
    with open(path, "rb") as fp:
        for number in wanted:
            parts = []
            for offset, length in index.frames[number - 1]:
                fp.seek(offset)
                data = fp.read(length)
                if len(data) != length:
                    raise OSError(
                        f"Stored file {os.fspath(path)!r} is shorter than its frame index says "
                        f"(frame {number}); the file was truncated or replaced after ingest"
                    )
                parts.append(data)
            out.append(parts[0] if len(parts) == 1 else b"".join(parts))
    return out


# --- helpers -----------------------------------------------------------------------------------


def _read_element_header(fp: BinaryIO, *, little_endian: bool, implicit_vr: bool) -> tuple[int, bytes, int] | None:
    """Read a top-level element header at the current position: (tag, VR or b"", value length)."""
    endian = "<" if little_endian else ">"
    raw = fp.read(8)
    if len(raw) < 8:
        return None
    group, element = struct.unpack(f"{endian}HH", raw[:4])
    vr = raw[4:6]
    if implicit_vr or not (vr.isalpha() and vr.isupper()):
        # Implicit VR, or an explicit VR file that switched to implicit encoding (seen in the wild)
        vr = b""
        (length,) = struct.unpack(f"{endian}L", raw[4:])
    else:
        if vr in _LONG_LENGTH_VRS:
            more = fp.read(4)
            if len(more) < 4:
                return None
            (length,) = struct.unpack(f"{endian}L", more)
        else:
            (length,) = struct.unpack(f"{endian}H", raw[6:])
    return (group << 16) | element, vr, length


def _number_of_frames(ds: pydicom.Dataset) -> int | None:
    value = ds.get("NumberOfFrames")
    if value in (None, ""):
        return 1
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None


def _native_frame_length(ds: pydicom.Dataset, n_frames: int) -> int | None:
    """Bytes per native frame, or None if frames are not byte-addressable."""
    try:
        rows = int(ds.Rows)
        columns = int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    ybr_422 = ds.get("PhotometricInterpretation") == "YBR_FULL_422"
    return native_frame_length(rows, columns, bits, samples, ybr_422, n_frames)


def native_frame_length(rows: int, columns: int, bits: int, samples: int, ybr_422: bool, n_frames: int) -> int | None:
    """Bytes per native frame of these Image Pixel attributes, or None if frames are not byte-addressable."""
    if rows <= 0 or columns <= 0 or bits <= 0:
        return None
    frame_bits = rows * columns * samples * bits
    if ybr_422 and samples == 3:
        frame_bits = frame_bits // 3 * 2  # stored with horizontal chroma subsampling
    if frame_bits % 8:
        # Only the first frame starts on a byte boundary; fine when it is the only one.
        return (frame_bits + 7) // 8 if n_frames == 1 else None
    return frame_bits // 8


def _encapsulated_runs(
    fp: BinaryIO,
    attributes: FrameAttributes,
    transfer_syntax: str,
    n_frames: int,
    value_offset: int,
    file_size: int,
) -> tuple[tuple[tuple[int, int], ...], ...] | None:
    """Walk the item headers of encapsulated Pixel Data and group fragments into frames."""
    fp.seek(value_offset)
    header = fp.read(8)
    if len(header) < 8:
        return None
    tag, length = _item_header(header)
    if tag != _ITEM or length == _UNDEFINED_LENGTH or length % 4:
        return None
    bot_raw = fp.read(length)
    if len(bot_raw) != length:
        return None
    basic_offsets = list(struct.unpack(f"<{length // 4}L", bot_raw))
    first_item = value_offset + 8 + length

    # Each fragment: (offset from first fragment item tag, value file offset, length, first bytes)
    fragments: list[tuple[int, int, int, bytes]] = []
    position = first_item
    while True:
        fp.seek(position)
        header = fp.read(8)
        if len(header) < 8:
            break  # missing sequence delimiter at end of file: tolerated
        tag, length = _item_header(header)
        if tag == _SEQUENCE_DELIMITER:
            break
        if tag != _ITEM or length == _UNDEFINED_LENGTH or position + 8 + length > file_size:
            return None
        fragments.append((position - first_item, position + 8, length, fp.read(4)))
        position += 8 + length
    if not fragments:
        return None

    def runs(group: Sequence[tuple[int, int, int, bytes]]) -> tuple[tuple[int, int], ...]:
        return tuple((offset, length) for _, offset, length, _ in group)

    if n_frames == 1:
        return (runs(fragments),)
    if len(fragments) == n_frames:
        return tuple(runs([fragment]) for fragment in fragments)

    starts = _starts_from_offsets(basic_offsets, fragments, n_frames)
    if starts is None:
        extended = attributes.extended_offsets(fp)
        starts = _starts_from_offsets(extended, fragments, n_frames) if extended else None
    if starts is None and transfer_syntax in _JPEG_FAMILY:
        starts = [i for i, fragment in enumerate(fragments) if fragment[3].startswith(_FRAME_START_MARKERS)]
        if len(starts) != n_frames or starts[0] != 0:
            starts = None
    if starts is None:
        return None
    bounds = [*starts, len(fragments)]
    return tuple(runs(fragments[bounds[i] : bounds[i + 1]]) for i in range(n_frames))


def _item_header(raw: bytes) -> tuple[int, int]:
    group, element, length = struct.unpack("<HHL", raw)
    return (group << 16) | element, length


def _starts_from_offsets(
    offsets: Sequence[int], fragments: Sequence[tuple[int, int, int, bytes]], n_frames: int
) -> list[int] | None:
    """Fragment index where each frame starts, if `offsets` is a consistent offset table."""
    if len(offsets) != n_frames or offsets[0] != 0:
        return None
    by_offset = {fragment[0]: i for i, fragment in enumerate(fragments)}
    starts = [by_offset.get(offset) for offset in offsets]
    if any(start is None for start in starts):
        return None
    checked = [start for start in starts if start is not None]
    if any(b <= a for a, b in zip(checked, checked[1:], strict=False)):
        return None
    return checked


def _extended_offsets(fp: BinaryIO, ds: pydicom.Dataset) -> list[int] | None:
    """The (7FE0,0001) Extended Offset Table values, read from the file if they were deferred."""
    if _EXTENDED_OFFSET_TABLE not in ds:
        return None
    raw_element = ds.get_item(_EXTENDED_OFFSET_TABLE, keep_deferred=True)
    value = getattr(raw_element, "value", None)
    if value is None:
        length = getattr(raw_element, "length", 0)
        value_tell = getattr(raw_element, "value_tell", None)
        if value_tell is None or not length:
            return None
        fp.seek(value_tell)
        value = fp.read(length)
    if not isinstance(value, bytes | bytearray) or len(value) % 8:
        return None
    return list(struct.unpack(f"<{len(value) // 8}Q", value))
