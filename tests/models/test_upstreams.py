"""UpstreamRegistry driven directly: validation, encrypted keys, model lists fetched from a
fake upstream, and failures that name the upstream but never the key."""

from __future__ import annotations

import json
import logging
import os
import stat
import time

import pytest
from sqlalchemy import text

from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.models.upstreams import UpstreamRegistry, parse_upstream

from ..remote_servers import closed_port_url, fake_server

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def registry(database, tmp_path):
    return UpstreamRegistry(database, secret_key_file=str(tmp_path / "keys" / "secret.key"))


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    server = fake_server(tmp_path_factory.mktemp("remote") / "fake.log", "--api-key", KEY,
                         alias="tiny").wait_healthy(15)
    yield server
    server.stop()


def spec(**fields) -> dict:
    return parse_upstream({"name": "cloud", "base_url": "http://127.0.0.1:9/v1", **fields})


@pytest.mark.parametrize("body, param", [
    ({"name": "a b", "base_url": "http://x/v1"}, "name"),
    ({"name": "a", "base_url": "ftp://x/v1"}, "base_url"),
    ({"name": "a", "base_url": "file:///etc/passwd"}, "base_url"),
    ({"name": "a", "base_url": "http://user:pw@x/v1"}, "base_url"),
    ({"name": "a", "base_url": "http://x:99999/v1"}, "base_url"),
    ({"name": "a", "base_url": "http://x/v1?key=1"}, "base_url"),
    ({"name": "a", "base_url": "http://x/v1", "models": []}, "models"),
    ({"name": "a", "base_url": "http://x/v1", "models": ["a b"]}, "models"),
    ({"name": "a", "base_url": "http://x/v1", "prefix": 3}, "prefix"),
    ({"name": "a", "base_url": "http://x/v1", "api_key": ""}, "api_key"),
    ({"name": "a", "base_url": "http://x/v1", "colour": "red"}, "colour"),
])
def test_bad_fields_are_a_400_naming_them(body, param):
    with pytest.raises(BodhiAPIError) as info:
        parse_upstream(body)
    assert info.value.status == 400 and info.value.param == param


def test_the_key_is_encrypted_at_rest_and_never_shown(registry, database, tmp_path):
    view = registry.create(spec(api_key=KEY))
    assert view.has_api_key and KEY not in repr(view) and KEY not in str(view.to_json())
    with database.read() as conn:
        (stored,) = conn.execute(text("SELECT api_key_encrypted FROM upstreams")).one()
    assert stored and KEY not in stored
    assert registry.decrypt(stored) == KEY
    key_file = tmp_path / "keys" / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600

    # another server with the same key file reads it back; one with another key cannot
    again = UpstreamRegistry(database, secret_key_file=str(key_file))
    again.load()
    assert again._live["cloud"].api_key == KEY
    other = UpstreamRegistry(database, secret_key_file=str(tmp_path / "other.key"))
    other.load()
    assert other._live["cloud"].api_key is None and other.get("cloud").has_api_key


def test_no_key_no_key_file(registry, tmp_path):
    registry.create(spec())
    assert not (tmp_path / "keys" / "secret.key").exists()


def test_configured_secret_key_and_a_bad_one(database):
    from cryptography.fernet import Fernet

    good = UpstreamRegistry(database, secret_key=Fernet.generate_key().decode())
    good.create(spec(api_key=KEY))
    bad = UpstreamRegistry(database, secret_key="not-a-key")
    with pytest.raises(ValueError, match="UpstreamRegistry.secret_key") as info:
        bad.fernet()
    assert "not-a-key" not in str(info.value)


def test_crud_replace_keeps_or_drops_the_key(registry):
    registry.create(spec(api_key=KEY, models=["m1", "m2"]))
    with pytest.raises(BodhiAPIError) as info:
        registry.create(spec())
    assert info.value.status == 409
    assert [m.id for m in registry.models()] == ["cloud/m1", "cloud/m2"]
    assert registry.lookup("cloud/m1").model == "m1"

    kept = registry.replace("cloud", parse_upstream(
        {"base_url": "http://127.0.0.1:9/v1", "models": ["m3"], "prefix": "c-"}, "cloud"))
    assert kept.has_api_key and registry._live["cloud"].api_key == KEY
    assert [m.id for m in registry.models()] == ["c-m3"] and registry.lookup("cloud/m1") is None
    dropped = registry.replace("cloud", parse_upstream(
        {"base_url": "http://127.0.0.1:9/v1", "api_key": None}, "cloud"))
    assert not dropped.has_api_key

    registry.delete("cloud")
    assert registry.list() == [] and registry.models() == []
    with pytest.raises(BodhiAPIError) as info:
        registry.get("cloud")
    assert info.value.status == 404


async def test_models_are_fetched_lazily_with_the_key(registry, remote):
    registry.create(parse_upstream({"name": "r", "base_url": remote.base_url,
                                    "api_key": KEY}))
    assert registry.models() == []  # creating it contacted nothing
    await registry.refresh_stale()
    assert [(m.id, m.model, m.upstream) for m in registry.models()] == [("r/tiny", "tiny", "r")]
    assert await registry.fetch_models("r") == ["tiny"]
    assert (await registry.refresh_for("r/tiny")).model == "tiny"


async def test_a_wrong_key_or_no_server_fails_without_the_key(registry, remote, caplog):
    wrong = "sk-wrong-secret-value"
    registry.create(parse_upstream({"name": "bad", "base_url": remote.base_url,
                                    "api_key": wrong}))
    registry.create(parse_upstream({"name": "down", "base_url": closed_port_url(),
                                    "api_key": wrong}))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BodhiAPIError) as info:
        await registry.fetch_models("bad")
    assert info.value.status == 502 and "401" in info.value.message
    with pytest.raises(BodhiAPIError) as info:
        await registry.fetch_models("down")
    assert info.value.status == 502 and info.value.code == "upstream_unreachable"
    assert "'down'" in info.value.message and wrong not in info.value.message
    await registry.refresh_stale(wait=10)  # failures are logged, the listing goes on
    assert registry.models() == []
    assert "bad" in caplog.text and "down" in caplog.text and wrong not in caplog.text


async def test_https_upstreams_stream_as_they_arrive(database, tmp_path):
    from ..remote_servers import self_signed

    cert, key = self_signed(tmp_path)
    server = fake_server(tmp_path / "tls.log", "--api-key", KEY, alias="tls",
                         tls=(cert, key)).wait_healthy(15)
    try:
        untrusting = UpstreamRegistry(database, secret_key_file=str(tmp_path / "k1"))
        untrusting.create(parse_upstream({"name": "s", "base_url": server.base_url,
                                          "api_key": KEY}))
        with pytest.raises(BodhiAPIError) as info:
            await untrusting.fetch_models("s")
        assert info.value.code == "upstream_unreachable" and "CERTIFICATE" in \
            info.value.message.upper()
        untrusting.close()

        registry = UpstreamRegistry(database, secret_key_file=str(tmp_path / "k1"),
                                    ca_file=str(cert))
        registry.load()
        assert await registry.fetch_models("s") == ["tls"]
        forwarder = registry.forwarder(registry.lookup("s/tls"))
        body = {"model": "tls", "stream": True, "max_tokens": 3,
                "messages": [{"role": "user", "content": "[delay=0.3]"}]}
        resp = await forwarder.forward("/v1/chat/completions", json.dumps(body).encode())
        assert resp.status == 200 and resp.content_type.startswith("text/event-stream")
        arrivals = []
        await resp.relay(lambda piece: arrivals.append((time.monotonic(), piece)))
        assert b"[DONE]" in arrivals[-1][1] and b"fake" in arrivals[0][1]
        assert arrivals[-1][0] - arrivals[0][0] > 0.45  # not held back until the end
        registry.close()
    finally:
        server.stop()


# -- upstreams declared in config (UpstreamRegistry.upstreams) --------------------------------

async def test_configured_upstreams_take_their_key_from_the_environment(
        database, tmp_path, remote, monkeypatch, caplog):
    monkeypatch.setenv("FLEET_KEY", KEY)
    monkeypatch.delenv("MISSING_KEY", raising=False)
    caplog.set_level(logging.DEBUG)
    config = {"fleet": {"base_url": remote.base_url, "api_key_env": "FLEET_KEY"},
              "fixed": {"base_url": "http://127.0.0.1:9/v1", "models": ["a"],
                        "prefix": "f:", "api_key_env": "MISSING_KEY"},
              "literal": {"base_url": "http://127.0.0.1:9/v1", "api_key": KEY},
              "odd": {"base_url": "http://127.0.0.1:9/v1", "colour": "red"},
              "bad url": {"base_url": "ftp://x"}}
    registry = UpstreamRegistry(database, upstreams=config,
                                secret_key_file=str(tmp_path / "secret.key"))
    registry.create(spec())  # a stored one next to them
    registry.load()

    views = {u.name: u.to_json() for u in registry.list()}
    assert sorted(views) == ["cloud", "fixed", "fleet"]
    assert views["fleet"]["source"] == "config" and views["fleet"]["has_api_key"] is True
    assert views["cloud"]["source"] == "api"
    assert views["fixed"]["has_api_key"] is False  # its variable is not set: logged
    assert "MISSING_KEY" in caplog.text and "is not set" in caplog.text
    assert "'literal'" in caplog.text and "api_key_env" in caplog.text
    assert "'odd'" in caplog.text and "'colour'" in caplog.text and "'bad url'" in caplog.text
    assert registry.lookup("f:a").upstream == "fixed"

    # its models are asked from the fleet with the key from the environment
    await registry.refresh_stale(wait=10)
    assert registry.lookup("fleet/tiny").model == "tiny"
    assert await registry.fetch_models("fleet") == ["tiny"]

    # read-only through the API; its name is taken
    for change in (lambda: registry.replace("fleet", parse_upstream(
            {"base_url": remote.base_url}, "fleet")), lambda: registry.delete("fleet")):
        with pytest.raises(BodhiAPIError) as info:
            change()
        assert info.value.status == 409 and info.value.code == "upstream_read_only"
    with pytest.raises(BodhiAPIError) as info:
        registry.create(parse_upstream({"name": "fleet", "base_url": remote.base_url}))
    assert info.value.status == 409

    # the key is in no row, no log line, no view; a storage reload reads config again
    with database.read() as conn:
        rows = conn.execute(text("SELECT name, api_key_encrypted FROM upstreams")).all()
    assert rows == [("cloud", None)]
    assert KEY not in caplog.text and KEY not in str(views)
    monkeypatch.setenv("FLEET_KEY", "sk-rotated")
    registry.load()
    assert registry._fixed["fleet"].api_key == "sk-rotated"
    with pytest.raises(BodhiAPIError) as info:  # the fleet only knows the old key
        await registry.fetch_models("fleet")
    assert info.value.status == 502 and "401" in info.value.message
    registry.close()


def test_a_configured_upstream_hides_a_stored_one_of_the_same_name(database, tmp_path,
                                                                   caplog):
    stored = UpstreamRegistry(database, secret_key_file=str(tmp_path / "secret.key"))
    stored.create(spec(models=["old"]))
    configured = UpstreamRegistry(database, upstreams={"cloud": {
        "base_url": "http://127.0.0.1:8/v1", "models": ["new"]}})
    configured.load()
    assert [(u.name, u.source, u.base_url) for u in configured.list()] == [
        ("cloud", "config", "http://127.0.0.1:8/v1")]
    assert [m.id for m in configured.models()] == ["cloud/new"]
    assert "hides the stored one" in caplog.text
