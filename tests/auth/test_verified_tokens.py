"""Jupyter tokens verified a moment ago skip Jupyter's per-request token work, and nothing
else changes: wrong tokens, browsers (Origin) and cookie logins go through Jupyter as
before."""

from __future__ import annotations

import httpx

from bodhi_jupyter.auth.verified_tokens import VerifiedTokens


def test_cache_keys_expiry_and_bound():
    now = [0.0]
    cache = VerifiedTokens(ttl=10, max_entries=2, clock=lambda: now[0])
    key = cache.key({"Authorization": "token abc"})
    assert key == cache.key({"Authorization": "Bearer abc", "Cookie": "x=1"})
    assert "abc" not in key  # only a hash is kept
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "token "},
                    {"Authorization": "token abc", "Origin": "http://elsewhere"}):
        assert cache.key(headers) is None
    cache.put(key, "ann")
    assert cache.get(key) == "ann"
    now[0] = 10.0
    assert cache.get(key) is None  # expired
    for i in range(3):
        cache.put(f"k{i}", i)
    assert cache.get("k0") is None and cache.get("k2") == 2


async def test_second_token_request_skips_jupyters_login_cookie(server_url, jupyter_token,
                                                                  bodhi_app):
    async with httpx.AsyncClient(base_url=server_url + "bodhi/", timeout=30) as bare:
        auth = {"Authorization": f"token {jupyter_token}"}
        first = await bare.get("v1/models", headers=auth)
        assert first.status_code == 200 and "set-cookie" in first.headers
        bare.cookies.clear()
        second = await bare.get("v1/models", headers=auth)
        assert second.status_code == 200 and "set-cookie" not in second.headers
        # a POST through the cache needs no XSRF token either, as for any token request
        resp = await bare.post("v1/chat/completions", headers=auth,
                               json={"model": "nope", "messages": [{"role": "user",
                                                                    "content": "hi"}]})
        assert resp.status_code == 404  # the model, not a 403 for XSRF

        bad = await bare.get("v1/models", headers={"Authorization": "token wrong"})
        assert bad.status_code == 401  # what API clients expect for a bad key
        bodhi_app.verified_tokens.clear()
        browser = {**auth, "Origin": server_url.rstrip("/").rsplit("/", 1)[0]}
        for _ in range(2):  # never cached: Jupyter verifies it (and sets its cookie) each time
            resp = await bare.get("v1/models", headers=browser)
            assert resp.status_code == 200 and "set-cookie" in resp.headers
            bare.cookies.clear()
