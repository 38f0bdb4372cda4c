"""Limits on failed password attempts, per client address and per user, checked before hashing.

Each client address has a bucket of failed attempts that refills slowly; an address with an empty
bucket is answered 429 without a password check, so a flood from one client neither guesses fast
nor queues hashing work in front of other users' logins. Each username has a larger bucket: once a
user's is empty (guesses spread over many addresses), only addresses that have logged in as that
user before may still try, so the real user is not locked out by someone else's guessing.
An attempt takes its token when it starts (so a burst of parallel guesses is limited too) and a
successful one gives it back: successful logins cost nothing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# Failed attempts an address may make at once, and how fast it may make more.
SOURCE_BURST = 10
SOURCE_REFILL_PER_S = 1 / 6  # 10 a minute
# Failed attempts against one username from anywhere, and their refill.
USER_BURST = 30
USER_REFILL_PER_S = 1 / 2
# Addresses, usernames and known (user, address) pairs remembered; the oldest go first.
MAX_ENTRIES = 10_000


class LoginThrottled(Exception):
    """Too many failed attempts; try again after `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"Expected available in {retry_after_s} seconds.")
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class _Buckets:
    """Token buckets by key, bounded in number."""

    def __init__(self, burst: int, refill_per_s: float, clock: Callable[[], float]) -> None:
        self.burst = burst
        self.refill_per_s = refill_per_s
        self._clock = clock
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def wait_s(self, key: Hashable) -> float:
        """Seconds until `key` may fail again; 0 when it may now."""
        bucket = self._current(key)
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) / self.refill_per_s

    def take(self, key: Hashable) -> None:
        """Use one attempt of `key`."""
        bucket = self._current(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), self._clock())
            while len(self._buckets) > MAX_ENTRIES:
                self._buckets.popitem(last=False)
        bucket.tokens = max(bucket.tokens - 1, 0.0)

    def give_back(self, key: Hashable) -> None:
        """Return an attempt that turned out to be a success."""
        bucket = self._current(key)
        if bucket is not None:
            bucket.tokens = min(float(self.burst), bucket.tokens + 1)

    def _current(self, key: Hashable) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        now = self._clock()
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.refill_per_s)
        bucket.updated = now
        self._buckets.move_to_end(key)
        return bucket


class LoginLimiter:
    """Decides whether a password attempt may be checked at all."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._sources = _Buckets(SOURCE_BURST, SOURCE_REFILL_PER_S, clock)
        self._users = _Buckets(USER_BURST, USER_REFILL_PER_S, clock)
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()

    def begin(self, source: str | None, username: str) -> bool:
        """Start an attempt: raise LoginThrottled when it must not be checked now.

        Returns whether the user's own bucket was used (to pass to `succeeded`).
        """
        wait = self._sources.wait_s(source) if source is not None else 0.0
        per_user = (username, source or "") not in self._known
        if not wait and per_user:
            wait = self._users.wait_s(username)
        if wait:
            raise LoginThrottled(max(1, math.ceil(wait)))
        if source is not None:
            self._sources.take(source)
        if per_user:
            self._users.take(username)
        return per_user

    def succeeded(self, source: str | None, username: str, *, per_user: bool) -> None:
        """The attempt was right: give its tokens back, and remember this address for the user."""
        if source is not None:
            self._sources.give_back(source)
        if per_user:
            self._users.give_back(username)
        key = (username, source or "")
        self._known[key] = None
        self._known.move_to_end(key)
        while len(self._known) > MAX_ENTRIES:
            self._known.popitem(last=False)
