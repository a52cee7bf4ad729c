"""Run-time settings: where each value comes from, live changes through the API, and the
database winning over config after a restart."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from traitlets import Float, Int, Unicode
from traitlets.config import Config, LoggingConfigurable

from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.settings import RuntimeSettings
from bodhi_jupyter.store.database import Database
from bodhi_jupyter.store.tables import settings as settings_table

from .conftest import until
from .handlers.test_errors import assert_error_shape


# -- without HTTP ----------------------------------------------------------------------------
class EngineSupervisor(LoggingConfigurable):  # stands in for the real one, same section name
    keep_alive = Int(300, min=-1, help="idle seconds").tag(config=True, runtime=True)
    max_loaded = Int(3, min=0, help="cap").tag(config=True, runtime=True)
    capacity_timeout = Float(30.0, min=0, help="wait").tag(config=True, runtime=True)
    start_timeout = Float(180.0, help="start").tag(config=True)
    batch = Int(4, min=1, max=8, help="a knob only this class has").tag(config=True,
                                                                       runtime=True)


EngineSupervisor.__module__ = "bodhi_jupyter.fake"  # reported like bodhi's own classes


class ModelDiscovery(LoggingConfigurable):
    hf_home = Unicode("/default", help="where").tag(config=True)


ModelDiscovery.__module__ = "bodhi_jupyter.fake"



def runtime(database, config: Config, cli: Config, environ=None, db_url="sqlite://"):
    sup = EngineSupervisor(config=config)
    disc = ModelDiscovery(config=config)
    dbobj = Database(url=db_url)
    settings = RuntimeSettings(database, {"EngineSupervisor": sup, "ModelDiscovery": disc,
                                          "Database": dbobj}, config, cli,
                               environ=environ or {})
    return settings, sup


def by_key(views) -> dict:
    return {v.key: v for v in views}


def test_sources_in_order_of_precedence(database):
    config = Config({"EngineSupervisor": {"keep_alive": 60, "max_loaded": 2}})
    cli = Config({"EngineSupervisor": {"max_loaded": 5}})
    config.merge(cli)  # as traitlets does: the command line lands in config too
    settings, sup = runtime(database, config, cli, environ={"HF_HOME": "/env/hf"},
                            db_url="postgresql+psycopg://bodhi:s3cret@db.example/bodhi")
    views = by_key(settings.list())
    assert (views["EngineSupervisor.max_loaded"].value,
            views["EngineSupervisor.max_loaded"].source) == (5, "command line")
    assert (views["EngineSupervisor.keep_alive"].value,
            views["EngineSupervisor.keep_alive"].source) == (60, "config file")
    assert views["ModelDiscovery.hf_home"].source == "environment"
    assert (views["EngineSupervisor.capacity_timeout"].value,
            views["EngineSupervisor.capacity_timeout"].source) == (30.0, "default")
    assert views["EngineSupervisor.keep_alive"].mutable
    assert not views["EngineSupervisor.start_timeout"].mutable
    assert views["EngineSupervisor.keep_alive"].help == "idle seconds"
    # secrets never leave
    url = views["Database.url"].value
    assert "s3cret" not in url and url == "postgresql+psycopg://bodhi:***@db.example/bodhi"

    settings.set("EngineSupervisor.max_loaded", 9, by="ann")
    assert sup.max_loaded == 9  # the live object, at once
    view = settings.get("EngineSupervisor.max_loaded")
    assert (view.value, view.source) == (9, "database")
    view = settings.reset("EngineSupervisor.max_loaded")
    assert (view.value, view.source) == (5, "command line") and sup.max_loaded == 5
    settings.set("EngineSupervisor.capacity_timeout", 2)  # an int for a Float trait
    assert settings.reset("EngineSupervisor.capacity_timeout").value == 30.0


def test_stored_values_win_over_config_at_start(database):
    config = Config({"EngineSupervisor": {"keep_alive": 60}})
    first, _ = runtime(database, config, Config())
    first.set("EngineSupervisor.keep_alive", 0)
    with database.begin() as conn:  # a value that no longer fits is skipped
        conn.execute(settings_table.insert(), [
            {"key": "EngineSupervisor.max_loaded", "value": "lots"},
            {"key": "EngineSupervisor.start_timeout", "value": 1}])  # not mutable
    restarted, sup = runtime(database, config, Config())
    assert sup.keep_alive == 60
    restarted.apply_stored()
    assert (sup.keep_alive, sup.max_loaded, sup.start_timeout) == (0, 3, 180.0)


def test_the_trait_says_what_may_change_and_within_which_bounds(database):
    settings, sup = runtime(database, Config(), Config())
    assert by_key(settings.list())["EngineSupervisor.batch"].mutable
    assert settings.set("EngineSupervisor.batch", 8).value == 8 and sup.batch == 8
    for bad in (0, 9):
        with pytest.raises(BodhiAPIError) as e:
            settings.set("EngineSupervisor.batch", bad)
        assert (e.value.status, e.value.code, e.value.param) == (400, "invalid_value", "value")
    assert sup.batch == 8


def test_the_real_classes_mark_their_run_time_settings():
    from bodhi_jupyter.auth.limits import RateLimiter
    from bodhi_jupyter.auth.quotas import QuotaPolicy
    from bodhi_jupyter.engine.supervisor import EngineSupervisor as Real
    from bodhi_jupyter.settings import runtime_mutable

    mutable = {f"{cls.__name__}.{name}" for cls in (Real, RateLimiter, QuotaPolicy)
               for name, trait in cls.class_traits(config=True).items()
               if runtime_mutable(trait)}
    assert mutable == {"EngineSupervisor.keep_alive", "EngineSupervisor.max_loaded",
                       "EngineSupervisor.max_loaded_per_user",
                       "EngineSupervisor.capacity_timeout", "EngineSupervisor.queue_timeout",
                       "EngineSupervisor.fair_admission",
                       "RateLimiter.per_token", "RateLimiter.per_user", "QuotaPolicy.default",
                       "QuotaPolicy.group_quotas"}
    bounds = {n: Real.class_traits()[n].min for n in ("keep_alive", "max_loaded",
                                                      "max_loaded_per_user",
                                                      "capacity_timeout", "queue_timeout")}
    assert bounds == {"keep_alive": -1, "max_loaded": 0, "max_loaded_per_user": 0,
                      "capacity_timeout": 0, "queue_timeout": 0}


@pytest.mark.parametrize("key, value, status, code, param", [
    ("EngineSupervisor.keep_alive", "soon", 400, "invalid_value", "value"),
    ("EngineSupervisor.keep_alive", 1.5, 400, "invalid_value", "value"),
    ("EngineSupervisor.keep_alive", True, 400, "invalid_value", "value"),
    ("EngineSupervisor.keep_alive", -2, 400, "invalid_value", "value"),
    ("EngineSupervisor.max_loaded", -1, 400, "invalid_value", "value"),
    ("EngineSupervisor.start_timeout", 5, 400, "setting_not_mutable", "key"),
    ("EngineSupervisor.nothing", 5, 404, "setting_not_found", None),
    ("Nobody.keep_alive", 5, 404, "setting_not_found", None),
    ("RateLimiter.per_user", 5, 404, "setting_not_found", None),  # no limiter here
])
def test_bad_values_change_nothing(database, key, value, status, code, param):
    settings, sup = runtime(database, Config(), Config())
    with pytest.raises(BodhiAPIError) as e:
        settings.set(key, value)
    assert (e.value.status, e.value.code, e.value.param) == (status, code, param)
    assert (sup.keep_alive, sup.max_loaded, sup.start_timeout) == (300, 3, 180.0)
    with database.read() as conn:
        assert conn.execute(select(settings_table)).all() == []


# -- through HTTP ----------------------------------------------------------------------------
@pytest.fixture
def bodhi_config(fake_engine, smollm2_path):
    return {
        "LlamaServerLauncher": {"llama_server_path": str(fake_engine), "threads": 0},
        "ModelRegistry": {"aliases": {"fake-a": {"model": str(smollm2_path)}}},
    }


@pytest.fixture
def jp_argv():
    return ["--EngineSupervisor.max_loaded=7"]





async def all_settings(http) -> dict:
    resp = await http.get("app/settings", params={"page_size": 200})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"data", "total", "page", "page_size"}
    assert body["total"] == len(body["data"]) and body["page"] == 1
    return {s["key"]: s for s in body["data"]}


async def test_settings_report_value_and_source(http, bodhi_app):
    settings = await all_settings(http)
    assert settings["EngineSupervisor.max_loaded"] | {"help": ""} == {
        "key": "EngineSupervisor.max_loaded", "value": 7, "source": "command line",
        "mutable": True, "help": ""}
    assert (settings["EngineSupervisor.keep_alive"]["value"],
            settings["EngineSupervisor.keep_alive"]["source"]) == (-1, "config file")
    assert settings["EngineSupervisor.max_loaded_per_user"]["source"] == "default"
    assert settings["ModelDiscovery.hf_home"]["source"] == "environment"
    assert settings["RateLimiter.per_user"]["mutable"]
    assert settings["BodhiApp.preload"] == {**settings["BodhiApp.preload"], "value": [],
                                            "source": "default", "mutable": False}
    assert all(s["help"] for s in settings.values())
    assert {k.split(".")[0] for k in settings} == {
        "BodhiApp", "EngineSupervisor", "LlamaServerLauncher", "ModelRegistry",
        "ModelDiscovery", "Database", "RolePolicy", "RateLimiter", "QuotaPolicy"}
    assert "BodhiApp.log_level" not in settings  # Jupyter's own, not ours

    page = (await http.get("app/settings", params={"page": 2, "page_size": 5})).json()
    assert page["page"] == 2 and page["page_size"] == 5 and len(page["data"]) == 5
    assert [s["key"] for s in page["data"]] == sorted(settings)[5:10]
    assert_error_shape(await http.get("app/settings", params={"page_size": 201}), 400,
                       param="page_size")
    assert_error_shape(await http.get("app/settings", params={"page": "x"}), 400, param="page")


async def test_live_keep_alive_change_and_reset(http, bodhi_app):
    sup = bodhi_app.supervisor
    resp = await http.put("app/settings/EngineSupervisor.keep_alive", json={"value": 0})
    assert resp.status_code == 200, resp.text
    assert resp.json()["value"] == 0 and resp.json()["source"] == "database"
    assert sup.keep_alive == 0

    chat = {"model": "fake-a", "messages": [{"role": "user", "content": "hi"}]}
    assert (await http.post("v1/chat/completions", json=chat)).status_code == 200
    await until(lambda: not sup.engines)  # unloaded right after the request

    resp = await http.delete("app/settings/EngineSupervisor.keep_alive")
    assert resp.status_code == 200
    assert resp.json()["value"] == -1 and resp.json()["source"] == "config file"
    assert sup.keep_alive == -1
    assert (await http.post("v1/chat/completions", json=chat)).status_code == 200
    await asyncio.sleep(0.2)  # give a wrong unload timer the chance to fire
    assert len(sup.engines) == 1

    # the rate limiter's values change on the live limiter too
    resp = await http.put("app/settings/RateLimiter.per_user", json={"value": 100})
    assert resp.status_code == 200 and bodhi_app.limiter.per_user == 100
    await http.delete("app/settings/RateLimiter.per_user")
    assert bodhi_app.limiter.per_user == 0


async def test_bad_puts_are_refused_and_change_nothing(http, bodhi_app):
    before = await all_settings(http)
    assert_error_shape(await http.put("app/settings/EngineSupervisor.keep_alive",
                                      json={"value": "soon"}), 400, "invalid_value", "value")
    assert_error_shape(await http.put("app/settings/EngineSupervisor.max_loaded",
                                      json={"value": -5}), 400, "invalid_value", "value")
    assert_error_shape(await http.put("app/settings/EngineSupervisor.keep_alive",
                                      json={}), 400, "missing_required_field", "value")
    assert_error_shape(await http.put("app/settings/EngineSupervisor.keep_alive",
                                      content=b"{nope"), 400, "invalid_json")
    assert_error_shape(await http.put("app/settings/Database.url",
                                      json={"value": "sqlite://"}), 400,
                       "setting_not_mutable", "key")
    assert_error_shape(await http.put("app/settings/EngineSupervisor.colour",
                                      json={"value": 1}), 404, "setting_not_found")
    assert_error_shape(await http.delete("app/settings/Database.url"), 400,
                       "setting_not_mutable", "key")
    assert await all_settings(http) == before
    assert bodhi_app.supervisor.max_loaded == 7


class TestPlainUser:
    @pytest.fixture
    def bodhi_config(self):
        return {"RolePolicy": {"owner": "someone-else", "default_role": "user"}}

    async def test_settings_need_admin(self, http):
        assert (await http.get("app/user")).json()["role"] == "user"
        for method, path, body in [("GET", "app/settings", None),
                                   ("PUT", "app/settings/EngineSupervisor.keep_alive",
                                    {"value": 1}),
                                   ("DELETE", "app/settings/EngineSupervisor.keep_alive", None)]:
            resp = await http.request(method, path, json=body)
            assert_error_shape(resp, 403, "insufficient_scope")
