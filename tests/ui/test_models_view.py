"""The panel's Models view in a real browser against a real `jupyter lab`, the real engine
(SmolLM2) and the real backends: engines loaded, their log and unload; model files with
their metadata; aliases with allowed and refused llama-server flags; remote upstreams;
pulls from a local hub stand-in with progress, cancel and retry. Screenshots of each view
in the light and the dark theme (tests/ui/artifacts/models-*.png).

The tests share one server and one page and run in file order."""

from __future__ import annotations

import pytest

from ..conftest import DEMO_MODEL_ID
from ..live_server import wait_until
from .conftest import only_open, section, shot

pytestmark = pytest.mark.timeout(240)


def test_files_show_their_metadata_and_load_starts_a_ready_engine(page, lab, artifacts):
    page.locator("#bodhi-chat").wait_for(state="visible")
    page.locator(".bodhi-Tab", has_text="Models").click()
    row = section(page, "files").locator(f".bodhi-File[data-model='{DEMO_MODEL_ID}']")
    row.wait_for()
    assert row.locator(".bodhi-Source").inner_text() == "package"
    # what the GGUF header says, as badges and a line
    badges = row.locator(".bodhi-ItemBadges .bodhi-Badge").all_inner_texts()
    assert {"Q4_1", "135M", "chat"} <= set(badges), badges
    assert any(b.endswith(" MB") for b in badges), badges
    meta = row.locator(".bodhi-FileMeta").inner_text()
    assert "llama" in meta and "8K context" in meta and "chat template" in meta, meta
    # JupyterLab's own pieces: toolbar buttons with LabIcons, accordion-like headers
    assert row.locator(".bodhi-Load.jp-ToolbarButtonComponent svg").count() == 1
    assert section(page, "processes").locator(".bodhi-Empty").is_visible()
    only_open(page, "processes", "files")
    shot(page, artifacts, "models-files")

    row.locator(".bodhi-Load").click()
    proc = section(page, "processes").locator(f".bodhi-Process[data-model='{DEMO_MODEL_ID}']")
    proc.wait_for(timeout=60_000)
    page.locator(f".bodhi-Process[data-model='{DEMO_MODEL_ID}'][data-state=ready]").wait_for(
        timeout=90_000)
    meta = proc.locator(".bodhi-ProcessMeta").inner_text()
    assert " MB memory" in meta and "0 in flight" in meta, meta
    assert proc.locator(".bodhi-State").inner_text() == "ready"
    # the file's row says so too, and offers no second load
    assert row.locator(".bodhi-State").inner_text() == "ready"
    assert row.locator(".bodhi-Load").count() == 0
    served = [p for p in lab.api("bodhi/app/processes")["data"] if p["model"] == DEMO_MODEL_ID]
    assert [p["state"] for p in served] == ["ready"]
    shot(page, artifacts, "models-loaded")


def test_an_engine_shows_its_log_tail_and_unloads(page, lab, artifacts):
    proc = section(page, "processes").locator(f".bodhi-Process[data-model='{DEMO_MODEL_ID}']")
    proc.locator(".bodhi-ProcessLog").click()
    log = proc.locator(".bodhi-Log")
    log.wait_for()
    pid = lab.api("bodhi/app/processes")["data"][0]["id"]
    lines = lab.api(f"bodhi/app/processes/{pid}/log?lines=40")["lines"]
    assert lines and lines[-1].strip() in log.inner_text()  # the engine's own last line
    shot(page, artifacts, "models-log")
    proc.locator(".bodhi-Unload").click()  # nothing in flight: no question asked
    proc.wait_for(state="detached", timeout=30_000)
    wait_until(lambda: not lab.api("bodhi/app/processes")["data"], 30, "the engine to go")
    row = section(page, "files").locator(f".bodhi-File[data-model='{DEMO_MODEL_ID}']")
    row.locator(".bodhi-Load").wait_for()
    assert row.locator(".bodhi-State").count() == 0


def test_an_embedding_model_loads_as_an_embedding_engine(page, lab, artifacts):
    embedder = "all-minilm-l6-v2"
    row = section(page, "files").locator(f".bodhi-File[data-model='{embedder}']")
    row.wait_for()
    assert row.locator(".bodhi-Capability").all_inner_texts() == ["embedding"]
    row.locator(".bodhi-Load").click()
    proc = page.locator(f".bodhi-Process[data-model='{embedder}'][data-state=ready]")
    proc.wait_for(timeout=90_000)
    assert proc.locator(".bodhi-ItemBadges").inner_text() == "embedding"
    [served] = [p for p in lab.api("bodhi/app/processes")["data"] if p["model"] == embedder]
    assert served["embedding"] is True and served["state"] == "ready"
    proc.locator(".bodhi-Unload").click()
    proc.wait_for(state="detached", timeout=30_000)
