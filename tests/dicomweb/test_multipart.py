"""The streaming multipart/related reader: the same parts whatever way the body is cut into chunks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from aperture.dicomweb.multipart import Part, read_parts
from aperture.errors import MalformedMultipart, PayloadTooLarge

BOUNDARY = "a1b2c3d4-boundary"
DELIMITER = b"\r\n--" + BOUNDARY.encode()

# Content that looks like the delimiter without being one: every proper prefix of it, a CRLF run,
# and the delimiter with its last byte changed. A reader that loses track at a chunk edge mangles it.
TRICKY = [
    b"",
    b"plain bytes",
    DELIMITER[:-1],
    DELIMITER[:-1] + b"X" + DELIMITER[:5],
    b"\r\n" * 40 + b"--" + BOUNDARY[:-1].encode() + b"Z",
    bytes(range(256)) * 20,
    b"--" + BOUNDARY.encode(),  # at the very start of a part it is content: no CRLF before it
]


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes | memoryview) -> object:
        assert not self.closed
        self.data += data
        return len(data)


def _body(contents: list[bytes], *, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    out = [preamble]
    for number, content in enumerate(contents):
        lead = b"\r\n" if number or preamble else b""
        out.append(lead + b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + content)
    out.append(DELIMITER + b"--\r\n" + epilogue)
    return b"".join(out)


async def _chunks(body: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    last = 0
    for cut in [*cuts, len(body)]:
        yield body[last:cut]
        last = cut


def _read(body: bytes, cuts: list[int], *, max_bytes: int = 1 << 30) -> list[tuple[Part, bytes]]:
    got: list[tuple[Part, _Sink]] = []

    def open_sink(part: Part) -> _Sink:
        return _Sink()

    def close_sink(part: Part, sink: _Sink) -> None:
        sink.closed = True
        got.append((part, sink))

    asyncio.run(read_parts(_chunks(body, cuts), BOUNDARY, open_sink, close_sink, max_bytes=max_bytes))
    return [(part, bytes(sink.data)) for part, sink in got]


def _cuts(length: int, size: int) -> list[int]:
    return list(range(size, length, size))


@pytest.mark.parametrize("size", [1, 2, 3, 5, len(DELIMITER) - 2, len(DELIMITER) - 1, len(DELIMITER), 64, 4096])
def test_fixed_chunk_sizes_give_the_parts_exactly(size: int) -> None:
    body = _body(TRICKY, preamble=b"ignored preamble", epilogue=b"ignored epilogue")
    parts = _read(body, _cuts(len(body), size))
    assert [content for _, content in parts] == TRICKY
    assert all(part.size == len(content) for part, content in parts)
    assert all(part.content_type == "application/dicom" for part, _ in parts)


def test_random_chunkings_give_the_parts_exactly() -> None:
    rng = random.Random(20261123)
    contents = [rng.choice(TRICKY) + rng.randbytes(rng.randrange(0, 3000)) + rng.choice(TRICKY) for _ in range(12)]
    body = _body(contents)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randrange(1, 60)))
        assert [content for _, content in _read(body, cuts)] == contents


def test_a_delimiter_split_at_every_position_is_found() -> None:
    body = _body([b"first" * 10, b"second"])
    second = body.index(DELIMITER, 10)
    for cut in range(second - 2, second + len(DELIMITER) + 3):
        assert [c for _, c in _read(body, [cut])] == [b"first" * 10, b"second"]


def test_a_part_without_headers_is_read() -> None:
    body = b"--" + BOUNDARY.encode() + b"\r\n\r\ncontent\r\n\r\nmore" + DELIMITER + b"--"
    ((part, content),) = _read(body, [7, 20])
    assert part.headers == {}
    assert content == b"content\r\n\r\nmore"


def test_a_body_without_its_closing_delimiter_is_malformed_and_the_open_part_is_closed() -> None:
    body = _body([b"whole", b"cut short"])[: -len(b"--\r\n") - len(DELIMITER) - 3]
    with pytest.raises(MalformedMultipart, match="ended inside part 2"):
        _read(body, _cuts(len(body), 7))


def test_headers_that_never_end_are_malformed() -> None:
    body = b"--" + BOUNDARY.encode() + b"\r\nX-Long: " + b"x" * 20000
    with pytest.raises(MalformedMultipart, match="headers longer than"):
        _read(body, _cuts(len(body), 1000))


def test_the_size_limit_stops_the_upload() -> None:
    body = _body([b"x" * 5000])
    with pytest.raises(PayloadTooLarge):
        _read(body, _cuts(len(body), 100), max_bytes=4000)


def test_more_than_1024_bytes_between_a_boundary_and_its_line_end_are_refused() -> None:
    """docs/dicomweb.md says so; a line end found later, in the same chunk, used to be accepted."""
    body = b"--" + BOUNDARY.encode() + b" " * 1025 + b"\r\nContent-Type: application/dicom\r\n\r\nx" + DELIMITER + b"--"
    for cuts in ([], _cuts(len(body), 100)):
        with pytest.raises(MalformedMultipart, match="1024"):
            _read(body, cuts)
    padded = body.replace(b" " * 1025, b" " * 1024)  # transport padding up to the bound is fine
    assert [content for _, content in _read(padded, [])] == [b"x"]


def test_more_parts_than_the_bound_are_413() -> None:
    from aperture.dicomweb.multipart import MAX_PARTS

    assert [content for _, content in _read(_body([b"p"] * MAX_PARTS), [])] == [b"p"] * MAX_PARTS
    with pytest.raises(PayloadTooLarge, match=str(MAX_PARTS)):
        _read(_body([b"p"] * (MAX_PARTS + 1)), [])
