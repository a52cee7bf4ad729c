"""QuotaPolicy without HTTP: which limits a user gets from their groups, each quota's 429
and Retry-After, and tokens per day surviving a restart (seeded from the usage records)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from traitlets import TraitError
from traitlets.config import Config

from bodhi_jupyter.auth.limits import RateLimiter
from bodhi_jupyter.auth.principal import Principal
from bodhi_jupyter.auth.quotas import QuotaExceeded, QuotaPolicy
from bodhi_jupyter.usage import UsageEntry, UsageRecorder


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def user(name="alice", *groups) -> Principal:
    return Principal(name=name, role="user", auth_method="jupyter", scope="write",
                     groups=tuple(groups))


async def refused(policy: QuotaPolicy, principal: Principal) -> QuotaExceeded:
    with pytest.raises(QuotaExceeded) as info:
        await policy.admit(principal)
    err = info.value
    assert err.status == 429 and err.code == f"quota_{err.quota}"
    assert str(err.limit) in err.message and err.quota.split("_")[0] in err.message
    assert int(err.headers["Retry-After"]) == err.retry_after >= 1
    return err


def test_groups_replace_the_default_most_generous_wins():
    policy = QuotaPolicy(default={"concurrent": 4, "tokens_per_day": 1000},
                         group_quotas={"students": {"concurrent": 1, "tokens_per_day": 500},
                                       "staff": {"concurrent": 8},
                                       "research": {"tokens_per_day": 0}})
    assert policy.limits_for(user()) == {"concurrent": 4, "requests_per_minute": 0,
                                         "tokens_per_day": 1000, "loaded_models": 0}
    assert policy.limits_for(user("a", "students"))["concurrent"] == 1
    both = policy.limits_for(user("a", "students", "staff"))
    assert both["concurrent"] == 8 and both["tokens_per_day"] == 500
    # staff sets no tokens_per_day: the default's; research lifts it (0: no limit)
    assert policy.limits_for(user("a", "staff"))["tokens_per_day"] == 1000
    assert policy.limits_for(user("a", "students", "research"))["tokens_per_day"] == 0
    assert policy.limits_for(user("a", "unknown-group")) == policy.limits_for(user())


def test_config_is_validated():
    policy = QuotaPolicy(config=Config({"QuotaPolicy": {
        "default": {"concurrent": 2}, "group_quotas": {"g": {"loaded_models": 1}}}}))
    assert policy.default == {"concurrent": 2}
    with pytest.raises(TraitError):
        policy.default = {"concurent": 2}
    with pytest.raises(TraitError):
        policy.group_quotas = {"g": {"concurrent": -1}}


async def test_no_quota_by_default():
    policy = QuotaPolicy()
    for _ in range(100):
        await policy.admit(user())
    assert policy.in_flight("alice") == 100


async def test_concurrent_requests():
    policy = QuotaPolicy(group_quotas={"g": {"concurrent": 2}})
    alice = user("alice", "g")
    await policy.admit(alice)
    await policy.admit(alice)
    err = await refused(policy, alice)  # a refusal counts nothing
    assert err.quota == "concurrent" and err.retry_after == 1
    await policy.admit(user("bob", "g"))  # per user
    policy.leave(alice)
    policy.leave(alice)
    assert policy.in_flight("alice") == 0
    await policy.admit(alice)


async def test_requests_per_minute_shares_the_rate_limiters_windows():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    policy = QuotaPolicy(limiter, default={"requests_per_minute": 2})
    alice = user()
    for _ in range(2):
        await policy.admit(alice)
        policy.leave(alice)
        clock.t += 10
    err = await refused(policy, alice)
    assert err.quota == "requests_per_minute" and err.retry_after == 40
    clock.t += 40
    await policy.admit(alice)
    # the quota's window is its own: the per-user rate limit still counts apart
    limiter.per_user = 5
    limiter.check(alice)


async def test_tokens_per_day_in_memory_and_retry_at_midnight():
    now = [datetime(2025, 3, 1, 23, 0, 0, tzinfo=timezone.utc)]
    policy = QuotaPolicy(default={"tokens_per_day": 100}, now=lambda: now[0])
    alice = user()
    await policy.admit(alice)
    policy.spent("alice", 60, now[0])
    await policy.admit(alice)
    policy.spent("alice", 50, now[0])
    err = await refused(policy, alice)
    assert err.quota == "tokens_per_day" and "110 used" in err.message
    assert err.retry_after == 3600
    now[0] += timedelta(hours=1, seconds=1)  # a new UTC day
    await policy.admit(alice)
    assert await policy.tokens_today("alice") == 0


async def test_tokens_per_day_are_seeded_from_the_database_after_a_restart(database):
    now = datetime.now(timezone.utc)
    recorder = UsageRecorder(database)
    try:
        def entry(user, prompt, completion, at):
            return UsageEntry(user=user, token_id=None, model="m", endpoint="chat",
                              stream=False, status=200, duration_ms=1.0,
                              prompt_tokens=prompt, completion_tokens=completion, at=at)
        recorder.record(entry("alice", 30, 40, now - timedelta(seconds=5)))
        recorder.record(entry("alice", 10, 10, now - timedelta(seconds=1)))
        recorder.record(entry("bob", 500, 500, now))
        recorder.record(entry("alice", 900, 900, now - timedelta(days=1, hours=1)))
        await recorder.flush()
        # a fresh policy: what the last run counted is read back
        policy = QuotaPolicy(usage=recorder, database=database,
                             default={"tokens_per_day": 100})
        assert await policy.tokens_today("alice") == 90
        await policy.admit(user())
        later = datetime.now(timezone.utc)
        recorder.record(entry("alice", 5, 5, later))  # the request's own record ...
        policy.spent("alice", 10, later)  # ... and its count here: counted once
        assert await policy.tokens_today("alice") == 100
        err = await refused(policy, user())
        assert err.quota == "tokens_per_day"
        assert await policy.tokens_today("bob") == 1000
    finally:
        recorder.close()


async def test_tokens_finishing_while_seeding_count_once(database):
    recorder = UsageRecorder(database, linger=0.05)
    try:
        policy = QuotaPolicy(usage=recorder, database=database)
        seeding = asyncio.ensure_future(policy.tokens_today("alice"))
        await asyncio.sleep(0)  # one loop turn: the seed has started and waits to flush
        # a request finishing now, while the seed waits for the writer
        at = datetime.now(timezone.utc) + timedelta(milliseconds=1)
        recorder.record(UsageEntry(user="alice", token_id=None, model="m", endpoint="chat",
                                   stream=False, status=200, duration_ms=1.0,
                                   prompt_tokens=3, completion_tokens=4, at=at))
        policy.spent("alice", 7, at)
        assert await seeding == 7
    finally:
        recorder.close()


async def test_run_time_settings_apply_at_once_and_are_validated(database):
    from bodhi_jupyter.errors import BodhiAPIError
    from bodhi_jupyter.settings import RuntimeSettings

    policy = QuotaPolicy()
    settings = RuntimeSettings(database, {"QuotaPolicy": policy}, Config())
    settings.set("QuotaPolicy.group_quotas", {"students": {"concurrent": 1}})
    alice = user("alice", "students")
    await policy.admit(alice)
    assert (await refused(policy, alice)).quota == "concurrent"
    for bad in ({"students": {"concurrent": -1}}, {"students": {"parallel": 1}},
                {"students": 3}):
        with pytest.raises(BodhiAPIError) as info:
            settings.set("QuotaPolicy.group_quotas", bad)
        assert info.value.status == 400 and info.value.param == "value"
    assert policy.group_quotas == {"students": {"concurrent": 1}}
