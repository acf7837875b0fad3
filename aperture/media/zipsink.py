"""A write-only file for `zipfile` that a streaming response drains: zips built while they are sent.

`zipfile.ZipFile` writes to any object with `write`; on a non-seekable one it puts each entry's
CRC and sizes in a data descriptor after the data, so nothing is ever rewritten. Whatever it wrote
since the last `take()` is the next chunk of the response: memory stays at one entry's chunk.
"""

from __future__ import annotations


class ZipSink:
    """Collects what zipfile writes until the generator takes it."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.pieces.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.pieces)
        self.pieces.clear()
        return data
