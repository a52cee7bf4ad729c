"""The README's "Scale-out: remote engines" config snippet runs, names only real traits,
and gives a registry that lists what it claims (no server, no fleet: lists are as
configured)."""

from __future__ import annotations

import re
from pathlib import Path

from traitlets.config import Config

from bodhi_jupyter.models.registry import ModelRegistry
from bodhi_jupyter.models.upstreams import UpstreamRegistry

README = Path(__file__).resolve().parent.parent / "README.md"


def snippet() -> str:
    text = README.read_text()
    section = text.split("## Scale-out: remote engines", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def test_the_scale_out_snippet_configures_real_traits(database, monkeypatch):
    c = Config()
    exec(compile(snippet(), "README", "exec"), {"c": c})
    classes = {"ModelRegistry": ModelRegistry, "UpstreamRegistry": UpstreamRegistry}
    for section, values in c.items():
        traits = classes[section].class_traits(config=True)
        assert set(values) <= set(traits), (section, set(values) - set(traits))

    monkeypatch.setenv("FLEET_KEY", "k1")
    monkeypatch.setenv("VLLM_KEY", "k2")
    upstreams = UpstreamRegistry(database, config=c)
    upstreams.load()
    registry = ModelRegistry(database, config=c)
    registry.remote = upstreams
    registry.sync_config_aliases()
    assert [u.name for u in upstreams.list()] == ["fleet", "vllm"]
    assert all(u.has_api_key and u.source == "config" for u in upstreams.list())
    assert registry.local is False and registry.files() == {}
    assert [m.id for m in registry.list_models()] == ["chat", "Qwen/Qwen2.5-7B-Instruct"]
    upstreams.close()
