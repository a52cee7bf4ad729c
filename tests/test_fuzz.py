"""Property-based fuzzing of every documented operation (schemathesis) against a live
`jupyter server` with the extension: no 5xx, and every response fits the document.

Engines are the fake llama-server so thousands of requests stay fast; the examples per
operation are bounded (BODHI_FUZZ_EXAMPLES, default 20)."""

from __future__ import annotations

import json
import os
import sys

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import FAKE_SERVER
from .hf_hub_stand_in import HubStandIn
from .live_server import TOKEN, jupyter  # noqa: F401  (fixture)
from .remote_servers import fake_server

EXAMPLES = int(os.environ.get("BODHI_FUZZ_EXAMPLES", "20"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# run-time settings last: fuzzed values (a rate limit of 1, a cap of 1) would skew the rest
LAST = ("/app/settings",)


@pytest.fixture
def empty_hub():
    """Pulls ask a local hub that has no repositories: 404s, never a download."""
    with HubStandIn() as hub:
        yield hub


@pytest.fixture
def fuzz_server(jupyter, tmp_path, smollm2_path, empty_hub):
    wrapper = tmp_path / "fake-llama-server"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "jupyter_server_config.json").write_text(json.dumps({
        "LlamaServerLauncher": {"llama_server_path": str(wrapper)},
        "EngineSupervisor": {"keep_alive": 60, "max_loaded": 8, "capacity_timeout": 5},
        "ModelRegistry": {"aliases": {"fake": {"model": str(smollm2_path)}}},
        "PullManager": {"endpoint": empty_hub.url},
    }))
    _proc, base, log, _env = jupyter("server")
    # upstreams the fuzzer adds point here (and at a closed port), never at made-up hosts
    remote = fake_server(tmp_path / "remote.log").wait_healthy(15)
    yield base, log, remote.base_url
    remote.stop()


def test_every_operation_survives_fuzzing(fuzz_server):
    base, log, remote_url = fuzz_server
    headers = {"Authorization": f"token {TOKEN}"}
    doc = requests.get(f"{base}bodhi/openapi.json", headers=headers, timeout=30).json()
    # mostly real model names, so generated requests reach the engines, not just the 404
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest",
                 "ResponseRequest", "MessageRequest", "CountTokensRequest",
                 "OllamaChatRequest", "OllamaGenerateRequest", "OllamaEmbedRequest",
                 "OllamaEmbeddingsRequest", "OllamaShowRequest", "InfillRequest"):
        doc["components"]["schemas"][name]["properties"]["model"] = {
            "enum": ["fake", "fake", "fake", "no-such-model"]}
    doc["components"]["schemas"]["ProcessRequest"]["properties"]["model"] = {
        "enum": ["fake", "no-such-model"]}
    for name in ("UpstreamRequest", "UpstreamUpdate"):
        doc["components"]["schemas"][name]["properties"]["base_url"] = {
            "enum": [remote_url, "http://127.0.0.1:9/v1"]}
    keys = [s["key"] for s in requests.get(f"{base}bodhi/app/settings?page_size=200",
                                           headers=headers, timeout=30).json()["data"]]
    for param in doc["paths"]["/app/settings/{key}"]["put"]["parameters"]:
        param["schema"] = {"enum": [*keys, "No.such_key"]}
    schema = schemathesis.openapi.from_dict(doc)
    operations = [r.ok() for r in schema.get_all_operations()]
    operations.sort(key=lambda op: op.path.startswith(LAST))
    assert len(operations) >= 6
    session = requests.Session()
    failures = []
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(base_url=f"{base}bodhi", session=session, headers=headers,
                                   checks=CHECKS)

        try:
            run()
        except Exception as e:  # collect every operation's failure, not just the first
            failures.append(f"{op.label}: {e}")
    assert failures == [], "\n\n".join(failures) + f"\n(server log: {log})"
