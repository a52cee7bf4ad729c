"""A user's server forwarding to the hub's shared service, without a hub: the service is a
fixed upstream whose models replace the local ones, and only the owner is forwarded."""

from __future__ import annotations

import pytest

from bodhi_jupyter.auth.principal import Principal
from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.models.registry import ModelNotFound, ModelRegistry
from bodhi_jupyter.models.upstreams import UpstreamRegistry, parse_upstream
from bodhi_jupyter.service_forwarding import SERVICE_UPSTREAM, ServiceForwarding

from .live_server import jupyter  # noqa: F401  (a fixture)
from .models.test_upstreams import KEY, remote  # noqa: F401  (a fixture)


async def test_the_service_serves_every_model_under_its_own_name(database, tmp_path, remote):
    upstreams = UpstreamRegistry(database, secret_key_file=str(tmp_path / "secret.key"))
    registry = ModelRegistry(database)
    registry.remote = upstreams
    # the fake's base URL ends in /v1; the service's API is at <root>/bodhi/v1
    forwarding = ServiceForwarding("http://127.0.0.1:9/services/bodhi/", owner="alice",
                                   token=KEY)
    assert forwarding.base_url == "http://127.0.0.1:9/services/bodhi/bodhi/v1"
    upstreams.add_fixed(SERVICE_UPSTREAM, remote.base_url, KEY, prefix="")
    registry.local = False

    assert (await registry.resolve_fresh("tiny")).remote.upstream == SERVICE_UPSTREAM
    assert [m.id for m in registry.list_models()] == ["tiny"]  # nothing local listed
    with pytest.raises(ModelNotFound):
        registry.resolve("smollm2-135m-instruct")  # a local model is not served
    assert await registry.rescan() is False

    # not an API upstream: not listed, its name taken, and a reload keeps it
    assert upstreams.list() == []
    with pytest.raises(BodhiAPIError) as err:
        upstreams.create(parse_upstream({"name": SERVICE_UPSTREAM,
                                         "base_url": "http://127.0.0.1:9/v1"}))
    assert err.value.status == 409
    upstreams.load()
    assert upstreams.lookup("tiny").upstream == SERVICE_UPSTREAM
    upstreams.close()


def test_only_the_owner_is_forwarded():
    forwarding = ServiceForwarding("http://hub/services/bodhi", owner="alice", token="t")

    def who(name: str, **kw) -> Principal:
        return Principal(name=name, role="user", auth_method="jupyter", scope="write", **kw)

    forwarding.check_caller(who("alice"))
    forwarding.check_caller(who("alice", token_id="k1", kernel=True))  # her kernel's token
    with pytest.raises(BodhiAPIError) as err:
        forwarding.check_caller(who("bob"))
    assert err.value.status == 403 and "'alice'" in err.value.message


def test_a_forwarding_server_sends_chat_and_ghost_text_to_the_service(jupyter, monkeypatch):
    """Two real servers: the "service" runs the engine; the user's server (service_url set,
    the service's token as its JUPYTERHUB_API_TOKEN) lists the service's models and sends
    chat and infill there, starting no engine of its own."""
    import httpx

    from .conftest import DEMO_MODEL_ID
    from .live_server import TOKEN

    _proc, service, _log, _env = jupyter("server")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    _proc, user, _log, _env = jupyter("server", f"--BodhiApp.service_url={service}")
    headers = {"Authorization": f"token {TOKEN}"}
    with httpx.Client(base_url=user + "bodhi/", headers=headers, timeout=120) as c:
        assert DEMO_MODEL_ID in [m["id"] for m in c.get("v1/models").json()["data"]]
        chat = c.post("v1/chat/completions", json={
            "model": DEMO_MODEL_ID, "max_tokens": 12, "temperature": 0,
            "messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": "What is the capital of France?"}]})
        assert chat.status_code == 200 and "Paris" in chat.json()["choices"][0]["message"][
            "content"], chat.text
        ghost = c.post("v1/infill", json={"model": DEMO_MODEL_ID, "n_predict": 8,
                                          "input_prefix": "def add(a, b):\n    return ",
                                          "input_suffix": "\n"})
        assert ghost.status_code == 200, ghost.text
        assert ghost.json()["mode"] == "completion" and ghost.json()["content"].strip()
        assert ghost.headers["X-Bodhi-Infill-Mode"] == "completion"
        assert c.get("app/processes").json()["total"] == 0  # no engine here
    with httpx.Client(base_url=service + "bodhi/", headers=headers, timeout=30) as c:
        engines = c.get("app/processes").json()["data"]
        assert [e["model"] for e in engines] == [DEMO_MODEL_ID], engines
