"""Introspection answers remembered for a few seconds, so a viewer's burst of requests costs one call to the EHR.

Keys are SHA-256 digests of the token (`token_key`): the raw token is never a key, never stored and
never logged. An active answer lives `cache_seconds` at most and never past the token's `exp`, so a
token revoked at the EHR is refused here at most `cache_seconds` later (the revocation latency,
docs/authorization.md). A refused token is remembered `negative_cache_seconds`, in a cache of its
own so a flood of made-up tokens cannot push good answers out. Both are LRU-bounded.

Single flight: while one introspection of a token is under way, other requests with the same token
await its outcome instead of asking the EHR again. Errors that say nothing about the token (the
EHR down) are not remembered; the next request asks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aperture.auth.tokens import TokenFacts
from aperture.errors import AuthorizationServerUnavailable, InvalidToken

T = TypeVar("T")


def token_key(token: str) -> str:
    """The token's cache key and log name: hex SHA-256 (one-way; the token has high entropy)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class ExpiringLRU(Generic[T]):
    """At most `size` values, each until its own deadline (time.monotonic), least recently used evicted first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def get(self, key: str) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, value = entry
        if time.monotonic() >= deadline:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: T, lifetime: float) -> None:
        if lifetime <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (time.monotonic() + lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class IntrospectionCache:
    """Remembered answers plus single flight, for one event loop (one per server worker)."""

    def __init__(self, *, cache_seconds: float, negative_cache_seconds: float, entries: int) -> None:
        self._cache_seconds = cache_seconds
        self._negative_seconds = negative_cache_seconds
        self._active: ExpiringLRU[TokenFacts] = ExpiringLRU(entries)
        self._refused: ExpiringLRU[str] = ExpiringLRU(
            entries
        )  # the message only: an exception's traceback holds frames
        self._in_flight: dict[str, asyncio.Future[TokenFacts]] = {}

    def cached(self, key: str) -> TokenFacts | None:
        """The remembered accepted answer for `key`, without waiting: the hot path of every request."""
        facts = self._active.get(key)
        return facts if facts is not None and facts.exp > time.time() else None

    async def get_or_fetch(self, key: str, fetch: Callable[[], Awaitable[TokenFacts]]) -> TokenFacts:
        """The remembered answer for `key`, or `fetch()`'s, shared by every caller that asks meanwhile.

        `fetch` returns verified facts or raises InvalidToken (remembered) or another error (not).
        """
        facts = self._active.get(key)
        if facts is not None and facts.exp > time.time():
            return facts
        refused = self._refused.get(key)
        if refused is not None:
            raise InvalidToken(refused)
        pending = self._in_flight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TokenFacts] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            facts = await fetch()
        except InvalidToken as exc:
            self._refused.put(key, exc.message, self._negative_seconds)
            future.set_exception(InvalidToken(exc.message))
            raise
        except asyncio.CancelledError:
            # The request that asked went away; the others waiting on it get an answer to retry, not its cancellation.
            future.set_exception(AuthorizationServerUnavailable("The token check was interrupted; try again."))
            raise
        except Exception as exc:
            future.set_exception(exc)
            raise
        else:
            self._active.put(key, facts, min(self._cache_seconds, facts.exp - time.time()))
            future.set_result(facts)
            return facts
        finally:
            del self._in_flight[key]
            if future.done() and not future.cancelled():
                future.exception()  # mark retrieved: no "exception was never retrieved" when no one waited
