"""Jupyter tokens that Jupyter's identity provider accepted a moment ago, remembered by hash
for a few seconds so that an API client's next requests skip the work Jupyter repeats per
token request: the token check, a fresh anonymous user, and a signed login cookie that API
clients never send back (together about a third of a millisecond here, measured by
bench/proxy_overhead.py).

A token, when sent, wins over any cookie in Jupyter, so a request carrying a cookie too is
treated the same. Requests with an ``Origin`` header (browsers) never use it: Jupyter checks
their origin unless the token is verified afresh. JupyterHub's provider
keeps its own cache of token owners for much longer (5 minutes); the few seconds here are
well inside that.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

_SCHEMES = ("token", "bearer")


class VerifiedTokens:
    def __init__(self, ttl: float = 10.0, max_entries: int = 256,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl, self.max_entries, self.clock = ttl, max_entries, clock
        self._users: OrderedDict[str, tuple[Any, float]] = OrderedDict()

    @staticmethod
    def key(headers) -> str | None:
        """The cache key for a request's headers, or None when it may not use the cache."""
        auth = headers.get("Authorization")
        if not auth or "Origin" in headers:
            return None
        scheme, _, value = auth.partition(" ")
        if scheme.lower() not in _SCHEMES or not value.strip():
            return None
        return hashlib.sha256(value.strip().encode()).hexdigest()

    def get(self, key: str | None):
        """The user the token was verified as, if that was less than ``ttl`` seconds ago."""
        if key is None:
            return None
        found = self._users.get(key)
        if found is None:
            return None
        if self.clock() - found[1] >= self.ttl:
            del self._users[key]
            return None
        return found[0]

    def put(self, key: str | None, user) -> None:
        if key is None or user is None:
            return
        self._users[key] = (user, self.clock())
        self._users.move_to_end(key)
        while len(self._users) > self.max_entries:
            self._users.popitem(last=False)

    def clear(self) -> None:
        self._users.clear()
