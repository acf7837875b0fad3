"""multipart/related (RFC 2387 / RFC 2046) streaming reader and writer.

The reader never holds a whole part in memory: body bytes go to a sink as they arrive, so a 2 GB
STOW-RS upload costs a bounded buffer. It is liberal in what it accepts (preamble, epilogue,
LF-only line ends before headers, quoted or bare boundary) and strict about structure: a body that
ends before its closing delimiter is malformed and the caller stores nothing from it.
The writer emits per-part Content-Type headers; boundaries are chosen by the caller (derived from
the ETag, so a repeated answer is byte-identical).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aperture.errors import MalformedMultipart, PayloadTooLarge

MAX_HEADER_BYTES = 16 * 1024


class PartSink(Protocol):
    def write(self, data: bytes | memoryview) -> object: ...


@dataclass
class Part:
    headers: dict[str, str] = field(default_factory=dict)
    size: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


async def read_parts(
    chunks: AsyncIterator[bytes],
    boundary: str,
    open_sink: Callable[[Part], PartSink],
    close_sink: Callable[[Part, PartSink], None],
    *,
    max_bytes: int,
) -> list[Part]:
    """Parse the body, streaming each part's content to a sink from `open_sink`."""
    if not boundary or len(boundary) > 200:
        raise MalformedMultipart("The multipart boundary is missing or longer than 200 characters (RFC 2046).")
    dash = b"--" + boundary.encode("latin-1")
    delimiter = b"\r\n" + dash
    buffer = bytearray(b"\r\n")  # lets the first delimiter match like every other one
    parts: list[Part] = []
    total = 0
    state = "preamble"
    part: Part | None = None
    sink: PartSink | None = None
    ended = False
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            if part is not None and sink is not None:
                close_sink(part, sink)
            raise PayloadTooLarge(f"The upload exceeds the limit of {max_bytes} bytes (store.max_upload_bytes).")
        if ended:
            continue  # epilogue
        buffer += chunk
        while True:
            if state == "preamble":
                at = buffer.find(delimiter)
                if at < 0:
                    keep = len(delimiter) - 1
                    if len(buffer) > keep:
                        del buffer[: len(buffer) - keep]
                    break
                del buffer[: at + len(delimiter)]
                state = "after-delimiter"
            elif state == "after-delimiter":
                if len(buffer) < 2:
                    break
                if buffer[:2] == b"--":
                    ended = True
                    break
                eol = buffer.find(b"\n")
                if eol < 0:
                    if len(buffer) > 1024:
                        raise MalformedMultipart("Text after a multipart boundary is not followed by a line end.")
                    break
                del buffer[: eol + 1]
                state = "headers"
            elif state == "headers":
                end = buffer.find(b"\r\n\r\n")
                skip = 4
                if end < 0 and buffer.startswith(b"\r\n"):
                    end, skip = 0, 2  # no headers at all
                if end < 0:
                    if len(buffer) > MAX_HEADER_BYTES:
                        raise MalformedMultipart(
                            f"Part {len(parts) + 1} has headers longer than {MAX_HEADER_BYTES} bytes."
                        )
                    break
                part = Part(_parse_headers(bytes(buffer[:end]), len(parts) + 1))
                del buffer[: end + skip]
                sink = open_sink(part)
                state = "body"
            else:  # body
                assert part is not None and sink is not None
                at = buffer.find(delimiter)
                if at < 0:
                    keep = len(delimiter) - 1
                    if len(buffer) > keep:
                        cut = len(buffer) - keep
                        sink.write(memoryview(buffer)[:cut])
                        part.size += cut
                        del buffer[:cut]
                    break
                sink.write(memoryview(buffer)[:at])
                part.size += at
                del buffer[: at + len(delimiter)]
                close_sink(part, sink)
                parts.append(part)
                part, sink = None, None
                state = "after-delimiter"
    if not ended:
        if part is not None and sink is not None:
            close_sink(part, sink)
        where = f"inside part {len(parts) + 1}" if state == "body" else "before the closing boundary"
        raise MalformedMultipart(
            f"The multipart body ended {where}: the closing '--{boundary}--' delimiter never came. "
            "Nothing from an unfinished part is stored."
        )
    return parts


def _parse_headers(raw: bytes, number: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.decode("latin-1").replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MalformedMultipart(f"Part {number} has a header line without a colon: {line[:80]!r}.")
        headers[name.strip().lower()] = value.strip()
    return headers


def content_type(boundary: str, part_type: str, transfer_syntax: str | None = None) -> str:
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    if transfer_syntax:
        value += f"; transfer-syntax={transfer_syntax}"
    return value


def part_header(boundary: str, media_type: str, *, first: bool, extra: str = "") -> bytes:
    lead = b"" if first else b"\r\n"
    return lead + f"--{boundary}\r\nContent-Type: {media_type}\r\n{extra}\r\n".encode("latin-1")


def closing(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("latin-1")
