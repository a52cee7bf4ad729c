"""A user's server forwarding to the hub's shared service, without a hub: the service is a
fixed upstream whose models replace the local ones, and only the owner is forwarded."""

from __future__ import annotations

import pytest

from bodhi_jupyter.auth.principal import Principal
from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.models.registry import ModelNotFound, ModelRegistry
from bodhi_jupyter.models.upstreams import UpstreamRegistry, parse_upstream
from bodhi_jupyter.service_forwarding import SERVICE_UPSTREAM, ServiceForwarding

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
