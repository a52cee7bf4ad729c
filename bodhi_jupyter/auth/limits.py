"""Requests per minute per API token and per user, counted in memory over a sliding window.

Each limited key keeps the times of its accepted requests within the last minute, so at
most ``limit`` entries; refused requests are not counted, so a client that keeps retrying
gets through as soon as its window has room. The limits are read on every check, so a value
changed on the live object (run-time settings) applies to the very next request.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from traitlets import Integer
from traitlets.config import LoggingConfigurable

from ..errors import BodhiAPIError
from .principal import Principal

WINDOW = 60.0


class RateLimiter(LoggingConfigurable):
    """Refuses requests over the per-token or per-user limit with 429 and Retry-After."""

    per_token = Integer(
        0, min=0,
        help="Requests per minute one bodhi API token may make (0: no limit).",
    ).tag(config=True, runtime=True)

    per_user = Integer(
        0, min=0,
        help="Requests per minute one user may make, all their tokens and Jupyter logins "
        "together (0: no limit).",
    ).tag(config=True, runtime=True)

    def __init__(self, clock: Callable[[], float] = time.monotonic, **kwargs):
        super().__init__(**kwargs)
        self.clock = clock
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._swept = clock()

    def check(self, principal: Principal) -> None:
        """Count one request by ``principal``, or raise 429 without counting it."""
        keys = []
        if principal.is_token and principal.token_id and self.per_token > 0:
            keys.append((("token", principal.token_id), self.per_token))
        if self.per_user > 0:
            keys.append((("user", principal.name), self.per_user))
        refused = self.take(keys)
        if refused is not None:
            seconds, (kind, _), limit = refused
            raise BodhiAPIError(
                429, f"Rate limit exceeded: at most {limit} requests per minute per {kind}; "
                f"retry in {seconds} s", code="rate_limit_exceeded",
                headers={"Retry-After": str(seconds)})

    def take(self, keys: list[tuple[tuple[str, str], int]]) -> tuple[int, tuple, int] | None:
        """Count one hit on every ``(key, limit)``, or on none of them when one is full:
        then (whole seconds until it has room, that key, its limit). Other limits (the
        per-group quotas) count here too, under keys of their own."""
        now = self.clock()
        self._sweep(now)
        if not keys:
            return None
        waits = []
        for key, limit in keys:
            hits = self._window(key, now)
            if len(hits) >= limit:
                # room appears when the hit that keeps us at the limit leaves the window
                waits.append((hits[len(hits) - limit] + WINDOW - now, key, limit))
        if waits:
            wait, key, limit = max(waits)
            return max(1, math.ceil(wait)), key, limit
        for key, _ in keys:
            self._hits.setdefault(key, deque()).append(now)
        return None

    def _window(self, key: tuple[str, str], now: float) -> deque[float]:
        hits = self._hits.get(key, deque())
        while hits and hits[0] <= now - WINDOW:
            hits.popleft()
        return hits

    def _sweep(self, now: float) -> None:
        """Forget keys idle for a whole window, so memory follows recent callers only."""
        if now - self._swept < WINDOW:
            return
        self._swept = now
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - WINDOW]:
            del self._hits[key]
