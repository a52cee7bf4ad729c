"""Aliases made at run time, without HTTP: the llama-server flag allow list, file-valued
options kept inside the model directories, typed request defaults, read-only config
aliases, and BodhiApp YAML round trips."""

from __future__ import annotations

import os

import pytest

from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.models.aliases import AliasStore, from_bodhiapp, to_bodhiapp
from bodhi_jupyter.models.discovery import ModelDiscovery
from bodhi_jupyter.models.registry import ModelRegistry
from bodhi_jupyter.models.server_flags import FlagRefused, check_extra_args


@pytest.fixture
def models_dir(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    (d / "tiny-Q4_K_M.gguf").write_bytes(b"GGUF")
    (d / "template.jinja").write_text("{{ messages }}")
    return d


@pytest.fixture
def store(database, models_dir):
    registry = ModelRegistry(database, ModelDiscovery(model_dirs=[str(models_dir)]),
                             aliases={"cfg": {"model": "tiny-Q4_K_M"}})
    registry.sync_config_aliases()
    return AliasStore(registry)


def refused(store, server=None, request=None) -> BodhiAPIError:
    body = {"name": "x", "model": "tiny-Q4_K_M"}
    if server is not None:
        body["server"] = server
    if request is not None:
        body["request"] = request
    with pytest.raises(BodhiAPIError) as e:
        store.parse(body)
    assert e.value.status == 400
    return e.value


def test_allowed_flags_are_normalised(models_dir):
    assert check_extra_args(["-t", "2", "--batch-size=64", "--jinja"], [str(models_dir)]) == [
        "--threads", "2", "--batch-size", "64", "--jinja"]


@pytest.mark.parametrize("flag", [
    "--host", "--port", "--api-key", "--api-key-file", "--log-file", "--slot-save-path",
    "--path", "--model-url", "-mu", "-hf", "-hfr", "-hff", "--hf-repo", "--hf-file",
    "--hf-token", "-m", "--model", "--alias", "--ssl-key-file", "--webui", "--ctx-size",
    "--api-key-anything"])
def test_dangerous_or_unknown_flags_are_refused_by_name(store, flag):
    for args in ([flag, "1"], [f"{flag}=1"]):
        e = refused(store, {"extra_args": args})
        assert e.param == flag and flag in e.message


def test_values_are_type_checked(store):
    assert refused(store, {"extra_args": ["--threads", "many"]}).param == "--threads"
    assert refused(store, {"extra_args": ["--threads"]}).param == "--threads"
    assert refused(store, {"extra_args": ["--jinja=1"]}).param == "--jinja"
    assert refused(store, {"extra_args": ["2"]}).status == 400
    assert refused(store, {"extra_args": ["--flash-attn", "maybe"]}).param == "--flash-attn"
    assert refused(store, {"extra_args": ["--temp", "-0.5"]}).param == "--temp"


def test_a_value_that_looks_like_a_flag_is_refused(store):
    """``--chat-template --host`` would hand the engine a flag the list refuses."""
    e = refused(store, {"extra_args": ["--chat-template", "--host"]})
    assert e.param == "--chat-template"


def test_numbers_have_their_own_lower_bounds(models_dir):
    args = ["--temp", "0", "--top-k", "0", "--seed", "-1", "--n-predict=-1", "-fa", "off",
            "--no-cont-batching", "-tb", "1"]
    assert check_extra_args(args, [str(models_dir)]) == [
        "--temp", "0", "--top-k", "0", "--seed", "-1", "--n-predict", "-1",
        "--flash-attn", "off", "--no-cont-batching", "--threads-batch", "1"]


def test_files_must_be_inside_the_model_directories(store, models_dir, tmp_path):
    inside = str(models_dir / "template.jinja")
    name, spec = store.parse({"name": "x", "model": "tiny-Q4_K_M",
                              "server": {"chat_template_file": inside,
                                         "extra_args": [f"--chat-template-file={inside}"]}})
    assert spec["server"]["extra_args"] == ["--chat-template-file", inside]
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    assert refused(store, {"chat_template_file": str(outside)}).param == "chat_template_file"
    assert refused(store, {"extra_args": ["-mm", str(outside)]}).param == "-mm"
    escape = models_dir / "link.gguf"
    os.symlink(outside, escape)  # inside by name, outside once followed
    assert refused(store, {"mmproj": str(escape)}).param == "mmproj"
    dotdot = f"{models_dir}/../secret.txt"
    assert refused(store, {"extra_args": ["--mmproj", dotdot]}).param == "--mmproj"


def test_request_defaults_are_typed(store):
    assert refused(store, request={"temperature": 3}).param == "request.temperature"
    assert refused(store, request={"max_tokens": 0}).param == "request.max_tokens"
    assert refused(store, request={"bogus": 1}).param == "request.bogus"
    _, spec = store.parse({"name": "x", "model": "tiny-Q4_K_M",
                           "request": {"temperature": 0.5, "stop": ["\n"],
                                       "system_prompt": "Be brief."}})
    assert spec["request"]["system_prompt"] == "Be brief."


def test_unknown_fields_and_bad_names_are_refused(store):
    with pytest.raises(BodhiAPIError) as e:
        store.parse({"name": "x", "model": "m", "colour": 1})
    assert e.value.param == "colour"
    for bad in ("has space", "options", "", "a/b"):
        with pytest.raises(BodhiAPIError) as e:
            store.parse({"name": bad, "model": "m"})
        assert e.value.param == "name"


async def test_create_replace_delete(store):
    alias = await store.create(*store.parse({"name": "quick", "model": "tiny-Q4_K_M",
                                             "server": {"extra_args": ["-t", "1"]}}))
    assert alias["source"] == "api" and alias["server"]["extra_args"] == ["--threads", "1"]
    assert store.registry.resolve("quick").server.extra_args == ("--threads", "1")
    with pytest.raises(BodhiAPIError) as e:
        await store.create(*store.parse({"name": "quick", "model": "tiny-Q4_K_M"}))
    assert (e.value.status, e.value.code) == (409, "alias_exists")
    await store.replace(*store.parse({"name": "quick", "model": "tiny-Q4_K_M",
                                      "request": {"max_tokens": 5}}, "quick"))
    assert store.registry.resolve("quick").request_defaults["max_tokens"] == 5
    await store.delete("quick")
    assert [a["name"] for a in store.list()] == ["cfg"]
    with pytest.raises(BodhiAPIError) as e:
        await store.delete("quick")
    assert e.value.status == 404


async def test_config_aliases_are_read_only(store):
    with pytest.raises(BodhiAPIError) as e:
        await store.create(*store.parse({"name": "cfg", "model": "tiny-Q4_K_M"}))
    assert e.value.code == "alias_exists"
    for change in (store.replace("cfg", {"model": "tiny-Q4_K_M"}), store.delete("cfg")):
        with pytest.raises(BodhiAPIError) as e:
            await change
        assert (e.value.status, e.value.code) == (409, "alias_read_only")


async def test_bodhiapp_yaml_round_trip(store):
    await store.create(*store.parse({
        "name": "quick", "model": "tiny-Q4_K_M", "request": {"temperature": 0.2},
        "server": {"ctx_size": 2048, "extra_args": ["--threads", "1", "--jinja"]}}))
    exported = store.export()
    quick = next(a for a in exported if a["alias"] == "quick")
    assert quick["context_params"] == ["--ctx-size 2048", "--threads 1", "--jinja"]
    assert quick["request_params"] == {"temperature": 0.2}
    await store.delete("quick")
    result = await store.import_(exported)
    assert result["created"] == ["quick"] and result["updated"] == []
    assert [s["name"] for s in result["skipped"]] == ["cfg"]
    assert store.get("quick")["server"] == {"ctx_size": 2048,
                                            "extra_args": ["--threads", "1", "--jinja"]}
    assert (await store.import_(exported))["updated"] == ["quick"]


async def test_import_maps_bodhiapp_entries_and_skips_bad_ones(store):
    result = await store.import_([
        {"alias": "phi", "repo": "microsoft/phi-4-gguf", "filename": "phi-4-Q4_K_M.gguf",
         "snapshot": "main", "request_params": {"temperature": 0.7, "user": "x"},
         "context_params": ["--ctx-size 4096", "--threads=2"]},
        {"alias": "evil", "model": "tiny-Q4_K_M", "context_params": ["--host 0.0.0.0"]},
        "not a mapping",
    ])
    assert result["created"] == ["phi"]
    skipped = {s["name"]: s["reason"] for s in result["skipped"]}
    assert "--host" in skipped["evil"] and None in skipped
    phi = store.get("phi")
    assert phi["model"] == "microsoft/phi-4-gguf:Q4_K_M"
    assert phi["server"] == {"ctx_size": 4096, "extra_args": ["--threads", "2"]}
    assert phi["request"] == {"temperature": 0.7}


def test_from_bodhiapp_reads_the_older_shape():
    """Older BodhiApp alias files: context fields as a mapping, a built-in template name."""
    body = from_bodhiapp({
        "alias": "qwen:chat", "family": "qwen", "repo": "someone/Qwen-GGUF",
        "filename": "qwen.Q5_K_M.gguf", "features": ["chat"], "chat_template": "chatml",
        "snapshot": "0" * 40, "context_params": {"n_ctx": 2048, "n_keep": 24, "n_threads": 2},
        "request_params": {"stop": ["<|im_end|>"]}})
    assert body == {"name": "qwen:chat", "model": "someone/Qwen-GGUF:Q5_K_M",
                    "request": {"stop": ["<|im_end|>"]},
                    "server": {"chat_template": "chatml", "ctx_size": 2048,
                               "extra_args": ["--threads", "2"]}}


def test_from_bodhiapp_needs_a_model():
    with pytest.raises(BodhiAPIError):
        from_bodhiapp({"alias": "x"})
    assert to_bodhiapp({"name": "a", "model": "o/r:Q8_0", "request": {}, "server": {}})[
        "repo"] == "o/r"
