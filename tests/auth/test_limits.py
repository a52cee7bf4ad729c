"""The rate limiter on its own, with a clock the tests move by hand."""

from __future__ import annotations

import pytest

from bodhi_jupyter.auth.limits import RateLimiter
from bodhi_jupyter.auth.principal import Principal
from bodhi_jupyter.errors import BodhiAPIError


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def token(token_id: str, user: str = "alice") -> Principal:
    return Principal(name=user, role="user", auth_method="bodhi_token", scope="write",
                     token_id=token_id)


def login(user: str = "alice") -> Principal:
    return Principal(name=user, role="user", auth_method="jupyter", scope="write")


def refused(limiter: RateLimiter, principal: Principal) -> BodhiAPIError:
    with pytest.raises(BodhiAPIError) as info:
        limiter.check(principal)
    err = info.value
    assert err.status == 429 and err.code == "rate_limit_exceeded"
    assert err.type == "rate_limit_error"
    return err


def test_off_by_default():
    limiter = RateLimiter(clock=Clock())
    assert limiter.per_token == 0 and limiter.per_user == 0
    for _ in range(1000):
        limiter.check(token("t1"))
        limiter.check(login())
    assert limiter._hits == {}  # nothing is even counted while off


def test_window_slides():
    clock = Clock()
    limiter = RateLimiter(clock=clock, per_token=3)
    t = token("t1")
    for at in (0, 10, 20):
        clock.now = 1000 + at
        limiter.check(t)
    clock.now = 1030
    assert refused(limiter, t).headers == {"Retry-After": "30"}  # until the t=0 hit leaves
    clock.now = 1059.5
    assert refused(limiter, t).headers == {"Retry-After": "1"}  # never 0
    clock.now = 1060.001
    limiter.check(t)  # the first hit has left the window
    clock.now = 1061
    assert refused(limiter, t).headers == {"Retry-After": "9"}  # next: the t=10 hit
    clock.now = 1070.5
    limiter.check(t)


def test_refused_requests_do_not_count():
    clock = Clock()
    limiter = RateLimiter(clock=clock, per_token=2)
    t = token("t1")
    limiter.check(t)
    limiter.check(t)
    for _ in range(50):
        clock.now += 1
        refused(limiter, t)
    clock.now = 1000 + 60.5  # both hits are out; the 50 refusals left no trace
    limiter.check(t)
    limiter.check(t)


def test_tokens_are_limited_apart_and_together_per_user():
    clock = Clock()
    limiter = RateLimiter(clock=clock, per_token=2)
    a, b = token("a"), token("b")
    limiter.check(a)
    limiter.check(a)
    refused(limiter, a)
    limiter.check(b)  # another token of the same user has its own count
    limiter.check(token("c", user="bob"))

    limiter.per_user = 3  # takes effect at once; counting starts now
    limiter.check(b)
    limiter.check(login())  # a Jupyter login counts against the same user
    limiter.check(token("c2"))
    err = refused(limiter, token("d"))
    assert "per user" in err.message
    limiter.check(token("e", user="bob"))  # other users are not affected


def test_retry_after_is_the_longer_wait_when_both_limits_are_hit():
    clock = Clock()
    limiter = RateLimiter(clock=clock, per_token=2, per_user=3)
    limiter.check(login())  # t=0, user only
    clock.now += 20
    limiter.check(token("t"))  # t=20
    clock.now += 20
    limiter.check(token("t"))  # t=40
    clock.now += 1
    # the token waits for t=20 to leave (39 s), the user for t=0 (19 s): the longer counts
    assert refused(limiter, token("t")).headers == {"Retry-After": "39"}


def test_lowering_a_limit_applies_to_the_next_request():
    clock = Clock()
    limiter = RateLimiter(clock=clock, per_token=10)
    t = token("t")
    for i in range(5):
        clock.now = 1000 + i
        limiter.check(t)
    limiter.per_token = 2
    clock.now = 1010
    # 5 hits in the window, limit 2: room comes when the 4th oldest (t=3) leaves
    assert refused(limiter, t).headers == {"Retry-After": "53"}
    limiter.per_token = 0
    limiter.check(t)


def test_idle_keys_are_forgotten():
    clock = Clock()
    limiter = RateLimiter(clock=clock, per_token=5, per_user=5)
    for i in range(20):
        limiter.check(token(f"t{i}", user=f"u{i}"))
    assert len(limiter._hits) == 40
    clock.now += 61
    limiter.check(token("fresh"))
    assert set(limiter._hits) == {("token", "fresh"), ("user", "alice")}


def test_limits_are_configurable_and_validated():
    from traitlets import TraitError
    from traitlets.config import Config

    config = Config({"RateLimiter": {"per_token": 7, "per_user": 30}})
    limiter = RateLimiter(config=config)
    assert (limiter.per_token, limiter.per_user) == (7, 30)
    with pytest.raises(TraitError):
        limiter.per_user = -1
