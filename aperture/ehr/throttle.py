"""Sign-in throttling: a bounded number of wrong passwords per account and per client address.

Seed passwords are demo passwords, but a sandbox reachable from a network is still guessed at. After
`ACCOUNT_FAILURES` failed sign-ins for one user name within `WINDOW` seconds, that name is locked
for `LOCKOUT` seconds; after `ADDRESS_FAILURES` from one client address, that address is. While
locked, no password is checked at all, the right one included, and the page answers 429 with
`Retry-After`. A successful sign-in clears its user name's count (not its address's).

Memory is bounded whatever names an attacker tries: the seed's logins (a fixed, small set) have a
record each, never evicted, so no flood of other names can push out an account's lock; user names
that do not exist and client addresses live in two tables of at most `capacity` records, which drop
expired records first and then the least recently failed. Names that do not exist are counted like
real ones, so a lockout does not tell an attacker which logins exist.

State is in memory, per process: the sandbox serves with one worker (`aperture ehr serve`), and a
restart clears it. Behind a reverse proxy every user has the proxy's address, so the address limit
is shared by all of them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

ACCOUNT_FAILURES = 5  # failed sign-ins for one user name ...
ADDRESS_FAILURES = 20  # ... or from one client address ...
WINDOW = 15 * 60  # ... within this many seconds ...
LOCKOUT = 15 * 60  # ... lock it for this many seconds
CAPACITY = 10_000  # records kept for unknown user names, and for addresses (each)


@dataclass
class _Record:
    failures: int = 0
    window_start: float = 0.0
    locked_until: float = 0.0


class _Table:
    """Failure records by key, at most `capacity` (None: unbounded, for a fixed set of keys)."""

    def __init__(self, limit: int, capacity: int | None) -> None:
        self.limit = limit
        self.capacity = capacity
        self.records: OrderedDict[str, _Record] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        record = self.records.get(key)
        return max(0.0, record.locked_until - now) if record else 0.0

    def failed(self, key: str, now: float) -> None:
        record = self.records.pop(key, None) or _Record(window_start=now)
        if now - record.window_start > WINDOW:
            record.failures, record.window_start = 0, now
        record.failures += 1
        if record.failures >= self.limit:
            record.locked_until = now + LOCKOUT
            record.failures, record.window_start = 0, now
        self.records[key] = record  # most recently failed last
        if self.capacity is not None and len(self.records) > self.capacity:
            self._evict(now)

    def clear(self, key: str) -> None:
        self.records.pop(key, None)

    def failures(self, key: str, now: float) -> int:
        """Failures counted in the current window (what one more can add to before the lock)."""
        record = self.records.get(key)
        return record.failures if record and now - record.window_start <= WINDOW else 0

    def _evict(self, now: float) -> None:
        stale = [k for k, r in self.records.items() if r.locked_until <= now and now - r.window_start > WINDOW]
        for key in stale:
            del self.records[key]
        while self.capacity is not None and len(self.records) > self.capacity:
            self.records.popitem(last=False)


class SignInThrottle:
    """Per-process sign-in throttle; thread-safe (the sign-in pages run in worker threads)."""

    def __init__(
        self, known: Iterable[str], capacity: int = CAPACITY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.known = frozenset(known)
        self.clock = clock
        self.accounts = _Table(ACCOUNT_FAILURES, None)
        self.unknown = _Table(ACCOUNT_FAILURES, capacity)
        self.addresses = _Table(ADDRESS_FAILURES, capacity)
        self.lock = threading.Lock()
        self.pending: dict[str, int] = {}  # attempts under way, by user name and by address

    def _names(self, login: str) -> _Table:
        return self.accounts if login in self.known else self.unknown

    def begin(self, login: str, address: str) -> int:
        """Seconds to wait before `login` may try from `address`; 0: go ahead, and end with failed/succeeded.

        Checking a password takes tens of milliseconds, so attempts under way count as failures until
        they end: parallel guesses cannot all pass the check before the first failure is counted.
        """
        with self.lock:
            now = self.clock()
            names = self._names(login)
            wait = max(names.retry_after(login, now), self.addresses.retry_after(address, now))
            if wait:
                return math.ceil(wait)
            busy_name = names.failures(login, now) + self.pending.get(login, 0) >= names.limit
            busy_address = self.addresses.failures(address, now) + self.pending.get(address, 0) >= ADDRESS_FAILURES
            if busy_name or busy_address:
                return 1  # as many attempts under way as failures left: wait for them to end
            self.pending[login] = self.pending.get(login, 0) + 1
            self.pending[address] = self.pending.get(address, 0) + 1
            return 0

    def _end(self, login: str, address: str) -> None:
        for key in (login, address):
            left = self.pending.get(key, 0) - 1
            if left > 0:
                self.pending[key] = left
            else:
                self.pending.pop(key, None)

    def retry_after(self, login: str, address: str) -> int:
        """Seconds until `login` may try again from `address` (0: now)."""
        with self.lock:
            now = self.clock()
            wait = max(self._names(login).retry_after(login, now), self.addresses.retry_after(address, now))
        return math.ceil(wait)

    def failed(self, login: str, address: str) -> None:
        with self.lock:
            now = self.clock()
            self._end(login, address)
            self._names(login).failed(login, now)
            self.addresses.failed(address, now)

    def succeeded(self, login: str, address: str = "") -> None:
        with self.lock:
            if address:
                self._end(login, address)
            self._names(login).clear(login)

    def size(self) -> int:
        """Records held (for tests and the docs' claim that it is bounded)."""
        with self.lock:
            return len(self.accounts.records) + len(self.unknown.records) + len(self.addresses.records)
