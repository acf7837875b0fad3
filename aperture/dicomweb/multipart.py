"""multipart/related (RFC 2387 / RFC 2046) streaming reader and writer.

The reader never holds a whole part in memory: body bytes go to a sink as they arrive, so a 2 GB
STOW-RS upload costs a bounded buffer. It is liberal in what it accepts (preamble, epilogue,
LF-only line ends before headers, quoted or bare boundary) and strict about structure: a body that
ends before its closing delimiter is malformed and the caller stores nothing from it.
The writer emits per-part Content-Type and Content-Location headers; boundaries are chosen by the
caller (derived from the ETag, so a repeated answer is byte-identical).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aperture.errors import MalformedMultipart, PayloadTooLarge

MAX_HEADER_BYTES = 16 * 1024
MAX_BOUNDARY_LINE = 1024  # bytes between a boundary and its line end (transport padding, RFC 2046 §5.1.1)
# Parts in one body. Each costs a temporary file and its parsed record until the batch is stored,
# so a body of millions of empty parts must not be read on; a whole CT or MR study is a few thousand.
MAX_PARTS = 10_000


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
    """Parse the body, streaming each part's content to a sink from `open_sink` (see PartReader)."""
    reader = PartReader(boundary, open_sink, close_sink, max_bytes=max_bytes)
    async for chunk in chunks:
        reader.feed(chunk)
    return reader.finish()


class PartReader:
    """The parser itself, fed chunk by chunk: the same for an ASGI body and a blocking HTTP client.

    Each chunk is scanned where it lies and part content is written straight from it: only the
    few bytes at a chunk's end that could begin a delimiter, or an unfinished header block, are
    carried over to the next chunk. (Copying every chunk into one growing buffer cost more than
    receiving it.)
    """

    def __init__(
        self,
        boundary: str,
        open_sink: Callable[[Part], PartSink],
        close_sink: Callable[[Part, PartSink], None],
        *,
        max_bytes: int,
    ) -> None:
        if not boundary or len(boundary) > 200:
            raise MalformedMultipart("The multipart boundary is missing or longer than 200 characters (RFC 2046).")
        self.boundary = boundary
        self.open_sink, self.close_sink, self.max_bytes = open_sink, close_sink, max_bytes
        self.delimiter = b"\r\n--" + boundary.encode("latin-1")
        self.carry = b"\r\n"  # lets the first delimiter match like every other one
        self.parts: list[Part] = []
        self.total = 0
        self.state = "preamble"
        self.part: Part | None = None
        self.sink: PartSink | None = None
        self.ended = False

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the body."""
        self.total += len(chunk)
        if self.total > self.max_bytes:
            if self.part is not None and self.sink is not None:
                self.close_sink(self.part, self.sink)
            raise PayloadTooLarge(f"The upload exceeds the limit of {self.max_bytes} bytes (store.max_upload_bytes).")
        if self.ended:
            return  # epilogue
        # the state in locals while this chunk is scanned (attribute lookups cost per part, not per chunk)
        delimiter, carry, parts, state = self.delimiter, self.carry, self.parts, self.state
        part, sink, close_sink = self.part, self.sink, self.close_sink
        keep = len(delimiter) - 1  # bytes at a chunk's end that may be the start of a delimiter
        ended = False
        data, pos = chunk, 0
        if carry and state == "body" and len(chunk) >= keep:
            # Only a delimiter that began in the carried bytes needs them joined to this chunk.
            assert part is not None and sink is not None
            at = (carry + chunk[:keep]).find(delimiter)
            if at < 0:
                sink.write(carry)
                part.size += len(carry)
            else:
                sink.write(carry[:at])
                part.size += at
                pos = at + len(delimiter) - len(carry)
                close_sink(part, sink)
                parts.append(part)
                part, sink = None, None
                state = "after-delimiter"
        elif carry:
            data = carry + chunk
        while True:
            if state == "body":
                assert part is not None and sink is not None
                at = data.find(delimiter, pos)
                if at < 0:
                    safe = len(data) - keep
                    if safe > pos:
                        sink.write(memoryview(data)[pos:safe])
                        part.size += safe - pos
                        pos = safe
                    break
                if at > pos:
                    sink.write(memoryview(data)[pos:at])
                    part.size += at - pos
                pos = at + len(delimiter)
                close_sink(part, sink)
                parts.append(part)
                part, sink = None, None
                state = "after-delimiter"
            elif state == "preamble":
                at = data.find(delimiter, pos)
                if at < 0:
                    pos = max(pos, len(data) - keep)
                    break
                pos = at + len(delimiter)
                state = "after-delimiter"
            elif state == "after-delimiter":
                if len(data) - pos < 2:
                    break
                if data.startswith(b"--", pos):
                    ended = True
                    break
                eol = data.find(b"\n", pos, pos + MAX_BOUNDARY_LINE + 2)  # the line end is CRLF (or LF)
                if eol < 0:
                    if len(data) - pos > MAX_BOUNDARY_LINE + 1:
                        raise MalformedMultipart(
                            f"More than {MAX_BOUNDARY_LINE} bytes follow a multipart boundary before the line end."
                        )
                    break
                if len(parts) >= MAX_PARTS:
                    raise PayloadTooLarge(f"The body has more than {MAX_PARTS} parts; send them in several requests.")
                pos = eol + 1
                state = "headers"
            else:  # headers
                if data.startswith(b"\r\n", pos):
                    end, skip = pos, 2  # an empty line at once: the part has no headers
                else:
                    end, skip = data.find(b"\r\n\r\n", pos, pos + MAX_HEADER_BYTES + 4), 4
                if end < 0:
                    if len(data) - pos > MAX_HEADER_BYTES:
                        raise MalformedMultipart(
                            f"Part {len(parts) + 1} has headers longer than {MAX_HEADER_BYTES} bytes."
                        )
                    break
                part = Part(_parse_headers(bytes(data[pos:end]), len(parts) + 1))
                pos = end + skip
                sink = self.open_sink(part)
                self.part, self.sink = part, sink  # a sink opened here is closed on any later failure
                state = "body"
        self.carry = data[pos:] if not ended else b""
        self.state, self.part, self.sink, self.ended = state, part, sink, ended

    def finish(self) -> list[Part]:
        """The parts, once the body has ended; MalformedMultipart if it ended before its closing delimiter."""
        if not self.ended:
            if self.part is not None and self.sink is not None:
                self.close_sink(self.part, self.sink)
            where = f"inside part {len(self.parts) + 1}" if self.state == "body" else "before the closing boundary"
            raise MalformedMultipart(
                f"The multipart body ended {where}: the closing '--{self.boundary}--' delimiter never came. "
                "Nothing from an unfinished part is stored."
            )
        return self.parts


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


def part_header(
    boundary: str, media_type: str, *, first: bool, location: str | None = None, digest: str | None = None
) -> bytes:
    """The delimiter and headers of one part. `location`: the URL of the resource the part holds.

    PS3.18 §8.6.1.2, Table 8.6.1-1: Content-Location "shall be present if the response payload
    contains a representation of a resource" (RFC 7231 §3.1.4.2); the part syntax of §8.6.1.2.1
    puts it after Content-Type. `digest`: a `Repr-Digest` value (RFC 9530) for the part's content,
    when the client asked for digests.
    """
    lead = "" if first else "\r\n"
    where = f"Content-Location: {location}\r\n" if location else ""
    if digest:
        where += f"Repr-Digest: {digest}\r\n"
    return f"{lead}--{boundary}\r\nContent-Type: {media_type}\r\n{where}\r\n".encode()


def closing(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("latin-1")
