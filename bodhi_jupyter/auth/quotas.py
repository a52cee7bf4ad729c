"""Per-user quotas on inference, set per JupyterHub group: concurrent requests, requests per
minute, tokens per day (UTC) and loaded models. Over one: 429 with ``Retry-After`` and a code
naming the quota (``quota_<name>``).

Counted in memory: requests in flight per user, request times (in the RateLimiter's sliding
windows, under keys of their own), and today's tokens per user. The tokens are seeded from
the usage records the first time a user asks today, so a restart forgets nothing; after that
each finished request adds its prompt and completion tokens. Quotas are checked when a
request is admitted: one that starts under the limit runs to its end.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING

from traitlets import Dict, Enum, Int, Unicode
from traitlets.config import LoggingConfigurable

from ..errors import BodhiAPIError
from .limits import RateLimiter
from .principal import Principal

if TYPE_CHECKING:
    from ..engine.supervisor import EngineSupervisor
    from ..models.registry import ResolvedModel
    from ..store.database import Database
    from ..usage import UsageRecorder

QUOTAS = ("concurrent", "requests_per_minute", "tokens_per_day", "loaded_models")

_WHAT = {"concurrent": "concurrent requests", "requests_per_minute": "requests per minute",
         "tokens_per_day": "tokens per day (UTC)", "loaded_models": "loaded models"}

#: a guess: a slot or an engine usually frees within seconds
RETRY_CONCURRENT = 1
RETRY_LOADED = 5


class QuotaExceeded(BodhiAPIError):
    """A 429 naming the quota (``quota``) and its value (``limit``)."""

    def __init__(self, quota: str, limit: int, retry_after: int, detail: str = ""):
        message = (f"Quota exceeded: at most {limit} {_WHAT[quota]} "
                   f"(QuotaPolicy {quota}){detail}; retry in {retry_after} s")
        super().__init__(429, message, code=f"quota_{quota}",
                         headers={"Retry-After": str(retry_after)})
        self.quota, self.limit, self.retry_after = quota, limit, retry_after


def _quota_dict(help: str) -> Dict:
    return Dict(value_trait=Int(min=0), key_trait=Enum(QUOTAS), help=help)


@dataclass
class _DayCount:
    """One user's tokens of one UTC day: the database's share up to ``cutoff`` (once
    ``seeding`` is done) plus what finished here since."""

    day: date
    cutoff: datetime
    total: int = 0
    seeding: asyncio.Future | None = None


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


#: the limits of a user when no quota is configured (shared: never changed)
_NO_LIMITS: Mapping[str, int] = MappingProxyType(dict.fromkeys(QUOTAS, 0))


class QuotaPolicy(LoggingConfigurable):
    """Which quotas apply to whom, and the counting. Groups replace the default: for each
    quota a user gets the most generous value among their groups in ``group_quotas`` that
    set it (0 there means no limit), else the ``default``'s value (absent or 0: no limit)."""

    default = _quota_dict(
        "Quotas of users in no group of group_quotas: {concurrent, requests_per_minute, "
        "tokens_per_day, loaded_models}; absent or 0: no limit. concurrent: inference "
        "requests in flight (waiting included); requests_per_minute: inference requests in "
        "a sliding minute; tokens_per_day: prompt + completion tokens of finished requests "
        "since 00:00 UTC; loaded_models: engines of the user's own loaded at once (with "
        "EngineSupervisor.share_engines: distinct models the user has requests on at once)."
    ).tag(config=True, runtime=True)

    group_quotas = Dict(
        value_trait=Dict(value_trait=Int(min=0), key_trait=Enum(QUOTAS)),
        key_trait=Unicode(),
        help="Quotas per JupyterHub group, e.g. {'students': {'concurrent': 2, "
        "'tokens_per_day': 200000}}. A user in several groups gets the most generous value "
        "of each quota (0: no limit); a quota none of their groups sets comes from default.",
    ).tag(config=True, runtime=True)

    def __init__(self, limiter: RateLimiter | None = None,
                 usage: UsageRecorder | None = None, database: Database | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 clock: Callable[[], float] = time.monotonic, **kwargs):
        super().__init__(**kwargs)
        self.limiter = limiter if limiter is not None else RateLimiter(clock=clock)
        self.usage, self.database, self.now = usage, database, now
        self._in_flight: dict[str, int] = {}
        self._days: dict[str, _DayCount] = {}

    # -- which limits ----------------------------------------------------------------------
    def limits_for(self, principal: Principal) -> Mapping[str, int]:
        if not (self.group_quotas or self.default):  # the usual case: no quotas at all
            return _NO_LIMITS
        groups = [self.group_quotas[g] for g in principal.groups if g in self.group_quotas]
        out = {}
        for quota in QUOTAS:
            values = [g[quota] for g in groups if quota in g]
            if not values:
                out[quota] = self.default.get(quota, 0)
            else:
                out[quota] = 0 if 0 in values else max(values)
        return out

    # -- admission -------------------------------------------------------------------------
    async def admit(self, principal: Principal) -> None:
        """Check concurrency, tokens today and requests per minute, in that order; the
        request counts against the first and the last only once all pass."""
        limits, user = self.limits_for(principal), principal.name
        if limits["concurrent"] and self._in_flight.get(user, 0) >= limits["concurrent"]:
            raise QuotaExceeded("concurrent", limits["concurrent"], RETRY_CONCURRENT,
                                f"; {self._in_flight[user]} in flight")
        if limits["tokens_per_day"]:
            used = await self.tokens_today(user)
            if used >= limits["tokens_per_day"]:
                raise QuotaExceeded("tokens_per_day", limits["tokens_per_day"],
                                    self._until_tomorrow(), f"; {used} used today")
            # the await may have let other requests in meanwhile
            if limits["concurrent"] and self._in_flight.get(user, 0) >= limits["concurrent"]:
                raise QuotaExceeded("concurrent", limits["concurrent"], RETRY_CONCURRENT,
                                    f"; {self._in_flight[user]} in flight")
        if limits["requests_per_minute"]:
            refused = self.limiter.take([(("quota", user), limits["requests_per_minute"])])
            if refused is not None:
                raise QuotaExceeded("requests_per_minute", limits["requests_per_minute"],
                                    refused[0])
        self._in_flight[user] = self._in_flight.get(user, 0) + 1

    def leave(self, principal: Principal) -> None:
        left = self._in_flight.get(principal.name, 0) - 1
        if left > 0:
            self._in_flight[principal.name] = left
        else:
            self._in_flight.pop(principal.name, None)

    def in_flight(self, user: str) -> int:
        return self._in_flight.get(user, 0)

    def _until_tomorrow(self) -> int:
        now = self.now()
        midnight = _day_start(now.date()) + timedelta(days=1)
        return max(1, math.ceil((midnight - now).total_seconds()))

    # -- loaded models ---------------------------------------------------------------------
    async def check_loaded(self, principal: Principal, supervisor: EngineSupervisor,
                           model: ResolvedModel, embedding: bool = False) -> None:
        """Before a lease: may the user have this model's engine too? Per-user engines:
        their least recently used idle one is unloaded to make room; 429 when all of theirs
        are busy. Shared engines: the distinct engines the user holds or waits for leases
        on count; nothing is unloaded (others may be using them)."""
        limit = self.limits_for(principal)["loaded_models"]
        if not limit:
            return
        user = principal.name
        key = supervisor.key_for(user, model, embedding)
        if supervisor.share_engines:
            held = supervisor.leased_keys(user)
            if key not in held and len(held) >= limit:
                raise QuotaExceeded("loaded_models", limit, RETRY_LOADED,
                                    f"; requests on {len(held)} models are in flight")
            return
        from ..engine.process import EngineState

        while True:
            engines = supervisor.engines_of(user)
            if any(e.id == key for e in engines) or len(engines) < limit:
                return
            idle = [e for e in engines if e.in_flight == 0 and e.state == EngineState.READY]
            if not idle:
                raise QuotaExceeded("loaded_models", limit, RETRY_LOADED,
                                    f"; all {len(engines)} loaded are busy")
            victim = min(idle, key=lambda e: e.last_used)
            self.log.info("bodhi: unloading %s (%s) for the loaded_models quota",
                          victim.model.id, user)
            await supervisor.unload(victim)

    # -- tokens per day --------------------------------------------------------------------
    async def tokens_today(self, user: str) -> int:
        """Prompt + completion tokens of ``user`` since 00:00 UTC."""
        now = self.now()
        count = self._days.get(user)
        if count is None or count.day != now.date():
            count = self._days[user] = _DayCount(now.date(), now)
            if self.database is not None:
                count.seeding = asyncio.ensure_future(self._seed(user, count))
        if count.seeding is not None:
            await asyncio.shield(count.seeding)
        return count.total

    async def _seed(self, user: str, count: _DayCount) -> None:
        """The database's tokens of the day before ``cutoff``; everything that finished
        before it was queued before the flush, everything after is counted by ``spent``."""
        from ..usage import UsageQuery
        try:
            if self.usage is not None:
                await self.usage.flush()
            rows, _ = await asyncio.to_thread(
                UsageQuery(self.database).aggregate, ["user"], [user],
                _day_start(count.day), count.cutoff, 0, 1)
            if rows:
                count.total += rows[0]["prompt_tokens"] + rows[0]["completion_tokens"]
        except Exception as e:  # counting goes on from memory rather than refusing
            self.log.error("bodhi: could not read today's tokens of %s: %s", user, e)
        finally:
            count.seeding = None

    def spent(self, user: str, tokens: int, at: datetime) -> None:
        """A finished request's tokens (its usage record's ``at`` and counts)."""
        count = self._days.get(user)
        if count is None or tokens <= 0:
            return  # seeded from the database when the user next asks
        if at.date() != count.day or at < count.cutoff:
            return  # another day, or already in the database's share
        count.total += tokens
