"""The model registry against a real (SQLite) database: config aliases mirrored into the
database, name resolution, and request defaults."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from bodhi_jupyter.models.discovery import ModelDiscovery
from bodhi_jupyter.models.registry import (
    ModelNotFound,
    ModelRegistry,
    ServerOptions,
    apply_request_defaults,
)
from bodhi_jupyter.store.tables import model_aliases

from ..conftest import until
from .test_discovery import put_in_hf_cache

DEMO = "smollm2-135m-instruct"
DEMO_PROMPT = "You are a helpful assistant."



@pytest.fixture
def models_dir(tmp_path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    for name in ("tiny-Q4_K_M", "embedder-F16"):
        (d / f"{name}.gguf").write_bytes(b"GGUF")
    return d


@pytest.fixture
def make_registry(database, models_dir):
    def make(aliases: dict | None = None, **kwargs) -> ModelRegistry:
        discovery = ModelDiscovery(model_dirs=[str(models_dir)])
        return ModelRegistry(database, discovery, aliases=aliases or {}, **kwargs)
    return make


def stored(database) -> dict[str, tuple]:
    with database.read() as conn:
        return {a.name: (a.model, a.source, a.request_defaults, a.server_options)
                for a in conn.execute(select(model_aliases))}


# -- config aliases in the database --------------------------------------------------------

def test_config_aliases_are_stored(make_registry, database):
    make_registry({
        "fast": {"model": "tiny-Q4_K_M", "request": {"temperature": 0},
                 "server": {"ctx_size": 1024, "extra_args": ["--flash-attn", "on"]}},
        "bare": {"model": DEMO},
    }).sync_config_aliases()

    assert stored(database) == {
        "fast": ("tiny-Q4_K_M", "config", {"temperature": 0},
                 {"ctx_size": 1024, "extra_args": ["--flash-attn", "on"]}),
        "bare": (DEMO, "config", {}, {}),
    }


def test_alias_dropped_from_config_is_deleted_but_api_aliases_stay(make_registry, database):
    make_registry({"a": {"model": "tiny-Q4_K_M"},
                   "b": {"model": "embedder-F16"}}).sync_config_aliases()
    with database.begin() as conn:
        conn.execute(model_aliases.insert().values(
            name="mine", model="tiny-Q4_K_M", request_defaults={"top_k": 5},
            server_options={}, source="api"))

    registry = make_registry({"a": {"model": "tiny-Q4_K_M", "request": {"seed": 1}}})
    registry.sync_config_aliases()

    assert stored(database) == {
        "a": ("tiny-Q4_K_M", "config", {"seed": 1}, {}),
        "mine": ("tiny-Q4_K_M", "api", {"top_k": 5}, {}),
    }
    assert registry.resolve("mine").request_defaults == {"top_k": 5}
    with pytest.raises(ModelNotFound):
        registry.resolve("b")


def test_config_alias_takes_over_an_api_alias_of_the_same_name(make_registry, database):
    with database.begin() as conn:
        conn.execute(model_aliases.insert().values(
            name="x", model="embedder-F16", request_defaults={}, server_options={},
            source="api"))

    make_registry({"x": {"model": "tiny-Q4_K_M"}}).sync_config_aliases()
    assert stored(database) == {"x": ("tiny-Q4_K_M", "config", {}, {})}

    make_registry({}).sync_config_aliases()  # now a config alias, so it goes with config
    assert stored(database) == {}


def test_invalid_config_aliases_are_skipped(make_registry, database, caplog):
    make_registry({
        "no-model": {"request": {"temperature": 0}},
        "empty-model": {"model": ""},
        "unknown-option": {"model": "tiny-Q4_K_M", "server": {"threads": 4}},
        "wrong-type": {"model": "tiny-Q4_K_M", "server": {"ctx_size": "4096"}},
        "bool-is-no-int": {"model": "tiny-Q4_K_M", "server": {"parallel": True}},
        "bad-request": {"model": "tiny-Q4_K_M", "request": ["temperature", 0]},
        "unknown-key": {"model": "tiny-Q4_K_M", "servr": {}},
        "has space": {"model": "tiny-Q4_K_M"},
        "good": {"model": "tiny-Q4_K_M", "server": {"parallel": 1}},
        "also-good": {"model": DEMO},
    }).sync_config_aliases()

    assert set(stored(database)) == {"good", "also-good"}
    errors = " ".join(r.getMessage() for r in caplog.records)
    for name in ("no-model", "unknown-option", "wrong-type", "has space"):
        assert repr(name) in errors


# -- resolution ----------------------------------------------------------------------------

def test_alias_merges_server_options_and_request_defaults(make_registry, smollm2_path):
    registry = make_registry({
        "demo-short": {"model": DEMO,
                       "request": {"system_prompt": "Be terse.", "max_tokens": 16},
                       "server": {"ctx_size": 1024, "extra_args": ["--flash-attn", 1]}},
    }, default_ctx_size=2048, default_parallel=3, default_gpu_layers=0)
    registry.sync_config_aliases()

    m = registry.resolve("demo-short")

    assert (m.id, m.kind, Path(m.path)) == ("demo-short", "alias", smollm2_path)
    assert m.server == ServerOptions(ctx_size=1024, parallel=3, gpu_layers=0,
                                     extra_args=("--flash-attn", "1"))
    # the alias's request defaults win over the ones the packaged file brings
    assert m.request_defaults == {"system_prompt": "Be terse.", "max_tokens": 16}


def test_plain_model_ids_get_the_defaults(make_registry, models_dir, smollm2_path):
    registry = make_registry(default_ctx_size=2048, default_parallel=3)
    registry.sync_config_aliases()

    tiny = registry.resolve("tiny-Q4_K_M")
    assert tiny.kind == "directory" and tiny.path == str(models_dir / "tiny-Q4_K_M.gguf")
    assert tiny.server == ServerOptions(ctx_size=2048, parallel=3)
    assert tiny.request_defaults == {}

    demo = registry.resolve(DEMO)
    assert demo.kind == "package" and demo.request_defaults == {"system_prompt": DEMO_PROMPT}


def test_unknown_name_raises(make_registry, models_dir):
    registry = make_registry()
    registry.sync_config_aliases()
    with pytest.raises(ModelNotFound, match="nope"):
        registry.resolve("nope")
    # a path is only accepted as an alias target, never straight from a request
    with pytest.raises(ModelNotFound):
        registry.resolve(str(models_dir / "tiny-Q4_K_M.gguf"))


def test_alias_to_a_missing_model(make_registry):
    registry = make_registry({"ghost": {"model": "owner/gone-GGUF:Q4_K_M"},
                              "ok": {"model": "tiny-Q4_K_M"}})
    registry.sync_config_aliases()

    with pytest.raises(ModelNotFound, match="owner/gone-GGUF:Q4_K_M"):
        registry.resolve("ghost")
    listed = [m.id for m in registry.list_models()]
    assert "ghost" not in listed and "ok" in listed and "tiny-Q4_K_M" in listed


def test_alias_to_an_absolute_gguf_path(make_registry, tmp_path):
    outside = tmp_path / "elsewhere" / "custom-model.gguf"  # not in any scanned place
    outside.parent.mkdir()
    outside.write_bytes(b"GGUF")
    registry = make_registry({"custom": {"model": str(outside),
                                         "server": {"chat_template": "chatml"}}},
                             default_ctx_size=4096, default_parallel=2)
    registry.sync_config_aliases()

    m = registry.resolve("custom")

    assert (m.id, m.kind, m.path) == ("custom", "alias", str(outside))
    assert m.server == ServerOptions(ctx_size=4096, parallel=2, chat_template="chatml")


async def test_a_model_added_after_the_first_scan_is_found(make_registry, models_dir):
    registry = make_registry(rescan_interval=0)
    registry.sync_config_aliases()
    assert "late" not in registry.files()
    (models_dir / "late.gguf").write_bytes(b"GGUF")

    with pytest.raises(ModelNotFound):
        registry.resolve("late")  # resolution itself never scans
    assert (await registry.resolve_fresh("late")).path == str(models_dir / "late.gguf")


# -- rescans ---------------------------------------------------------------------------------

@pytest.fixture
def counted_scans(monkeypatch):
    """Each scan's thread, so tests see how many ran and that none ran on the loop."""
    threads = []
    original = ModelDiscovery.scan

    def scan(self):
        threads.append(threading.current_thread())
        return original(self)

    monkeypatch.setattr(ModelDiscovery, "scan", scan)
    return threads


async def test_unknown_names_share_throttled_scans_off_the_loop(make_registry, counted_scans):
    registry = make_registry(rescan_interval=0)
    registry.files()
    assert len(counted_scans) == 1  # the start-up scan

    async def lookup(name):
        with pytest.raises(ModelNotFound):
            await registry.resolve_fresh(name)

    await asyncio.gather(*(lookup(f"typo-{i}") for i in range(25)))  # all at once: shared
    assert len(counted_scans) == 2
    assert counted_scans[1] is not threading.main_thread()
    registry.rescan_interval = 30
    for i in range(25):
        await lookup(f"typo-{i}")  # one after another, within the interval: throttled
    assert len(counted_scans) == 2


async def test_a_listing_rescans_after_the_interval(make_registry, models_dir, counted_scans):
    registry = make_registry(rescan_interval=0.3)
    registry.files()
    (models_dir / "late.gguf").write_bytes(b"GGUF")
    assert await registry.rescan() is False  # too soon after the last scan

    async def listed():
        await registry.rescan()
        return "late" in [m.id for m in registry.list_models()]

    await until(listed, timeout=5)
    assert len(counted_scans) == 2


@pytest.mark.usefixtures("jp_serverapp")
async def test_mistyped_names_do_not_rescan_per_request(client, bodhi_app,
                                                         _isolated_hf_home, counted_scans):
    bodhi_app.registry.rescan_interval = 1.0
    before = len(counted_scans)
    body = {"model": "smollm2-135m-instrcut", "messages": [{"role": "user", "content": "hi"}]}
    replies = await asyncio.gather(*(client.post("chat/completions", json=body)
                                     for _ in range(50)))
    assert {r.status_code for r in replies} == {404}
    assert len(counted_scans) - before <= 2
    assert all(t is not threading.main_thread() for t in counted_scans[before:])

    put_in_hf_cache(_isolated_hf_home, "someone/New-GGUF", "new-Q4_K_M.gguf")

    async def listed():
        ids = [m["id"] for m in (await client.get("models")).json()["data"]]
        return "someone/New-GGUF:Q4_K_M" in ids

    await until(listed, timeout=10, interval=0.1)
    assert (await client.get("models/someone/New-GGUF:Q4_K_M")).status_code == 200


# -- request defaults ----------------------------------------------------------------------

def test_defaults_fill_only_absent_keys():
    body = {"model": "m", "temperature": 0.9, "messages": [{"role": "user", "content": "hi"}]}
    out = apply_request_defaults("chat", body, {"temperature": 0, "max_tokens": 8,
                                                "stop": ["\n"]})
    assert out == {**body, "max_tokens": 8, "stop": ["\n"]}
    assert body == {"model": "m", "temperature": 0.9,
                    "messages": [{"role": "user", "content": "hi"}]}  # not modified


def test_system_prompt_becomes_a_leading_system_message():
    messages = [{"role": "user", "content": "hi"}]
    out = apply_request_defaults("chat", {"messages": messages}, {"system_prompt": "Be nice."})
    assert out == {"messages": [{"role": "system", "content": "Be nice."},
                                {"role": "user", "content": "hi"}]}
    assert messages == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("role", ["system", "developer"])
def test_system_prompt_is_not_added_when_the_chat_has_one(role):
    messages = [{"role": "user", "content": "hi"}, {"role": role, "content": "Mine."}]
    out = apply_request_defaults("chat", {"messages": messages},
                                 {"system_prompt": "Be nice.", "max_tokens": 4})
    assert out == {"messages": messages, "max_tokens": 4}


def test_system_prompt_is_chat_only():
    out = apply_request_defaults("completions", {"prompt": "Once"},
                                 {"system_prompt": "Be nice.", "max_tokens": 4})
    assert out == {"prompt": "Once", "max_tokens": 4}


def test_nothing_is_applied_to_embeddings():
    body = {"input": "text"}
    assert apply_request_defaults("embeddings", body, {"max_tokens": 4, "system_prompt": "x"}
                                  ) == {"input": "text"}


# -- remote engines only (ModelRegistry.local_models = False) ------------------------------

class _Remote:
    """Stands in for UpstreamRegistry: one remote model, lists already fetched."""

    def __init__(self):
        from bodhi_jupyter.models.upstreams import RemoteModel

        self.model = RemoteModel("fleet/demo", "fleet", "demo")

    def models(self):
        return [self.model]

    def lookup(self, name):
        return self.model if name == self.model.id else None

    async def refresh_for(self, name):
        return self.lookup(name)


async def test_remote_only_scans_nothing_and_serves_only_upstreams_and_routers(
        make_registry, counted_scans, models_dir):
    registry = make_registry({"fast": {"model": "tiny-Q4_K_M"},
                              "pool": {"targets": ["fleet/demo", "tiny-Q4_K_M"]},
                              "by-path": {"model": str(models_dir / "tiny-Q4_K_M.gguf")}},
                             local_models=False)
    registry.remote = _Remote()
    registry.sync_config_aliases()

    assert [(m.id, m.kind) for m in registry.list_models()] == [("pool", "router"),
                                                                ("fleet/demo", "remote")]
    assert (await registry.resolve_fresh("fleet/demo")).remote.upstream == "fleet"
    assert registry.resolve("pool").targets == ("fleet/demo", "tiny-Q4_K_M")
    for name in ("tiny-Q4_K_M", "fast", "by-path", str(models_dir / "tiny-Q4_K_M.gguf")):
        with pytest.raises(ModelNotFound) as info:
            await registry.resolve_fresh(name)
        assert "no local models" in str(info.value) and "local_models" in str(info.value)
    with pytest.raises(ModelNotFound):  # a router's local target is not served either
        await registry.resolve_target(registry.resolve("pool"), "tiny-Q4_K_M")
    assert await registry.rescan(force=True) is False
    assert registry.files() == {} and counted_scans == []  # the disk was never scanned


def test_local_models_is_on_by_default(make_registry):
    registry = make_registry()
    assert registry.local is True and "tiny-Q4_K_M" in registry.files()
