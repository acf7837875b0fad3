"""Least-recently-used caches shared by threads: of bytes bounded by size, of values by count."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ByteCache:
    """Recently computed answers (rendered images, frames encoded on request), bounded by size.

    Viewers ask for the same thumbnails, rendered frames and frames again and again. Callers key
    entries by the blob's name, which changes whenever an instance is overwritten, and every
    request is authorized and looked up before a cache is consulted, so an entry can never be
    served for data that changed or that the caller may not see.
    """

    # What an entry costs besides its body (key tuple, dict slot): counted, so that a cache full of
    # tiny images (a 16x16 PNG is 100 bytes) stays within max_bytes too.
    ENTRY_OVERHEAD = 512

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> bytes | None:
        with self._lock:
            body = self._entries.get(key)
            if body is not None:
                self._entries.move_to_end(key)
            return body

    def put(self, key: tuple[object, ...], body: bytes) -> None:
        if len(body) > self.max_bytes // 8:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = body
            self._size += len(body) + self.ENTRY_OVERHEAD
            while self._size > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._size -= len(dropped) + self.ENTRY_OVERHEAD


class RecentValues(Generic[K, V]):
    """The last `count` values put, by key (e.g. parsed headers by blob name, which names one content).

    The same rule as ByteCache: a caller consults it only after the request is authorized and
    looked up, and keys it by what changes whenever the data does.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.count:
                self._entries.popitem(last=False)
