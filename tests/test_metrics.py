"""Prometheus metrics: the collector alone, then ``GET bodhi/metrics`` after real requests
to the fake engine."""

from __future__ import annotations

import types

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bodhi_jupyter.engine.process import EngineState
from bodhi_jupyter.engine.supervisor import EngineSupervisor
from bodhi_jupyter.metrics import BodhiMetrics
from bodhi_jupyter.usage import UsageEntry

from .handlers.test_errors import assert_error_shape


def samples(text: str) -> dict:
    """{(sample name, frozenset(labels)): value}"""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(parsed: dict, name: str, **labels) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_entries_and_read_the_supervisor_at_scrape_time():
    ready = types.SimpleNamespace(state=EngineState.READY)
    starting = types.SimpleNamespace(state=EngineState.STARTING)
    supervisor = EngineSupervisor()  # no engine started: its figures are set by hand
    supervisor.engines = {"a": ready, "b": starting}
    supervisor.starts_total = 2
    metrics = BodhiMetrics(supervisor)
    other = BodhiMetrics(supervisor)  # each app its own registry: no clash, no sharing
    metrics.observe(UsageEntry("ann", None, "m", "chat", False, 200, 120.0, 10, 5))
    metrics.observe(UsageEntry("ann", None, "m", "chat", True, 502, 30.0))
    supervisor.crashes_total = 1
    parsed = samples(metrics.exposition().decode())
    assert value(parsed, "bodhi_requests_total", model="m", endpoint="chat", status="200") == 1
    assert value(parsed, "bodhi_requests_total", model="m", endpoint="chat", status="502") == 1
    assert value(parsed, "bodhi_tokens_total", model="m", kind="prompt") == 10
    assert value(parsed, "bodhi_tokens_total", model="m", kind="completion") == 5
    assert value(parsed, "bodhi_request_duration_seconds_count", model="m",
                 endpoint="chat") == 2
    assert value(parsed, "bodhi_request_duration_seconds_sum", model="m",
                 endpoint="chat") == pytest.approx(0.15)
    assert value(parsed, "bodhi_request_duration_seconds_bucket", model="m", endpoint="chat",
                 le="0.05") == 1
    assert value(parsed, "bodhi_models_loaded") == 1
    assert value(parsed, "bodhi_engine_starts_total") == 2
    assert value(parsed, "bodhi_engine_crashes_total") == 1
    assert "bodhi_requests_total" not in other.exposition().decode().replace(
        "# HELP bodhi_requests_total", "").replace("# TYPE bodhi_requests_total", "")


@pytest.fixture
def bodhi_config(fake_engine, smollm2_path):
    return {
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0},
        "ModelRegistry": {"aliases": {"fake-a": {"model": str(smollm2_path)}}},
    }




def chat(text="hi", **extra) -> dict:
    return {"model": "fake-a", "messages": [{"role": "user", "content": text}], **extra}


async def test_metrics_endpoint_counts_the_requests_made(http, bodhi_app):
    for _ in range(3):
        assert (await http.post("v1/chat/completions", json=chat(max_tokens=4))).status_code \
            == 200
    resp = await http.post("v1/chat/completions",
                           json=chat(stream=True, max_tokens=2,
                                     stream_options={"include_usage": True}))
    assert resp.status_code == 200 and "[DONE]" in resp.text
    assert (await http.post("v1/chat/completions", json=chat("[status=500]"))).status_code \
        == 502
    assert (await http.post("v1/completions", json={"model": "fake-a", "prompt": "a b",
                                                    "max_tokens": 3})).status_code == 200
    # rejected before a model is resolved: not counted (bounded labels, nothing written)
    assert (await http.post("v1/chat/completions", json=chat(temperature=9))).status_code \
        == 400
    assert (await http.post("v1/chat/completions", json={**chat(), "model": "nope"})
            ).status_code == 404

    resp = await http.get("metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    parsed = samples(resp.text)
    assert value(parsed, "bodhi_requests_total", model="fake-a", endpoint="chat",
                 status="200") == 4
    assert value(parsed, "bodhi_requests_total", model="fake-a", endpoint="chat",
                 status="502") == 1
    assert value(parsed, "bodhi_requests_total", model="fake-a", endpoint="completions",
                 status="200") == 1
    assert sum(v for (name, _), v in parsed.items() if name == "bodhi_requests_total") == 6
    # the fake counts one token per word: "hi" -> 1 prompt token per chat
    assert value(parsed, "bodhi_tokens_total", model="fake-a", kind="completion") == \
        3 * 4 + 2 + 3
    assert value(parsed, "bodhi_tokens_total", model="fake-a", kind="prompt") == 4 + 2
    assert value(parsed, "bodhi_request_duration_seconds_count", model="fake-a",
                 endpoint="chat") == 5
    assert value(parsed, "bodhi_models_loaded") == 1
    assert value(parsed, "bodhi_engine_starts_total") == bodhi_app.supervisor.starts_total == 1
    assert value(parsed, "bodhi_engine_crashes_total") == 0


class TestReadScope:
    @pytest.fixture
    def token(self, bodhi_app):
        return bodhi_app.tokens.create(bodhi_app.roles.owner or "x", "t", "read")[0]

    async def test_a_read_token_may_scrape(self, server_url, token, bodhi_app):
        async with httpx.AsyncClient(base_url=server_url + "bodhi/") as c:
            ok = await c.get("metrics", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200 and "bodhi_models_loaded" in ok.text
            assert_error_shape(await c.get("metrics"), 403)
