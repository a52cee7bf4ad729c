"""The panel where things are scarce, in a real browser: a server started the way `make run`
starts it (the quick-start notebook in front), whose owner is a plain `user` (so no admin
token is offered), with no model at first, then two fake engines (`tests/fake_llama_server.py`)
of which only one may be loaded at a time, each slow to start.

The tests share one server and one page and run in file order."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from ..conftest import FAKE_SERVER, demo_model_path
from ..live_server import TOKEN, wait_until
from .conftest import CHROMIUM, Lab, shot

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
PICKER = ".bodhi-ModelPicker select"
START_DELAY_S = 4  # every fake engine takes this long to load: the loading view stays up


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("browser tests need Debian's chromium (make test installs it as root)")
    root = tmp_path_factory.mktemp("lab-limits")
    fake = root / "fake-llama-server"
    fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@"\n')
    fake.chmod(0o755)
    (root / "models").mkdir()
    config = {
        "ModelDiscovery": {"include_packages": False, "model_dirs": [str(root / "models")]},
        "ModelRegistry": {"rescan_interval": 0},
        "LlamaServerLauncher": {"llama_server_path": str(fake),
                                "extra_args": ["--fake-start-delay", str(START_DELAY_S)]},
        "EngineSupervisor": {"max_loaded": 1, "capacity_timeout": 0.5},
        "RolePolicy": {"owner_role": "user"},
    }
    # exactly what `make run` passes to pick the start page (root: the repo's notebooks/)
    run_args = subprocess.run(["make", "-s", "--no-print-directory", "run-args"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.split()
    # run from a copy of the repo's notebooks/, so that nothing here can save over them
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    lab = Lab(root, config=config, args=run_args, cwd=root)
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def page(browser, lab, artifacts):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.goto(lab.printed_url())  # the link Jupyter prints, as a person would follow it
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=90_000)
    yield page
    ctx.close()


def send(page, text: str) -> None:
    box = page.locator(".bodhi-Input")
    box.fill(text)
    box.press("Enter")


def test_make_run_opens_the_quickstart_notebook_with_the_panel_beside_it(page, lab, artifacts):
    assert "/lab/tree/quickstart.ipynb" in lab.printed_url()
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    wait_until(lambda: "quickstart.ipynb" in tab.inner_text(), 30, "the notebook in front")
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.wait_for()
    assert page.locator(".jp-Launcher:visible").count() == 0
    page.locator("#bodhi-chat").wait_for(state="visible")
    shot(page, artifacts, "first-start-quickstart")


def test_no_model_available_is_said_plainly(page, lab, artifacts):
    page.locator(".bodhi-ModelPicker option", has_text="No model available").wait_for(state="attached")
    assert "No model is available yet" in page.locator(".bodhi-Empty").inner_text()
    send(page, "hello?")
    error = page.locator(".bodhi-Error")
    error.wait_for()
    assert "No model available" in error.inner_text()
    assert "pip install" in error.inner_text()  # and what to do about it
    shot(page, artifacts, "no-model")


def test_a_slow_engine_shows_loading_with_seconds(page, lab, artifacts):
    for name in ("fake-a", "fake-b"):
        (lab.root / "models" / f"{name}.gguf").symlink_to(demo_model_path())
    wait_until(lambda: {"fake-a", "fake-b"} <= {m["id"] for m in lab.api("bodhi/app/models")["data"]},
               15, "the new model files offered")
    page.locator(".bodhi-RefreshModels").click()
    page.locator(".bodhi-ModelPicker option[value=fake-b]").wait_for(state="attached")
    page.locator(PICKER).select_option("fake-a")
    assert page.locator(".bodhi-ModelInfo .bodhi-Source").inner_text() == "directory"
    send(page, "[chunks=5] hi")
    status = page.locator(".bodhi-Status")
    status.wait_for(timeout=5000)
    assert "Loading model fake-a" in status.inner_text()
    shot(page, artifacts, "loading")
    page.locator(".bodhi-Message.bodhi-mod-assistant[data-status=complete]").last.wait_for(
        timeout=30_000)


def _stream_in_background(lab, model: str, text: str) -> threading.Thread:
    def run():
        body = json.dumps({"model": model, "stream": True,
                           "messages": [{"role": "user", "content": text}]}).encode()
        req = urllib.request.Request(lab.base + "bodhi/v1/chat/completions", data=body,
                                     headers={"Authorization": f"token {TOKEN}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                resp.read()
        except OSError:  # the server stops at the end of the module
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_capacity_503_when_the_only_engine_slot_is_busy(page, lab, artifacts):
    _stream_in_background(lab, "fake-a", "[delay=0.3][chunks=30] keep busy")
    wait_until(lambda: any(p["model"] == "fake-a" and p["in_flight"] >= 1
                           for p in lab.api("bodhi/app/processes")["data"]), 10, "fake-a busy")
    page.locator(".bodhi-New").click()
    page.locator(PICKER).select_option("fake-b")
    send(page, "hello?")
    error = page.locator(".bodhi-Error")
    error.wait_for(timeout=15_000)
    text = error.inner_text()
    assert "All engines are busy" in text and "try again in" in text, text
    shot(page, artifacts, "capacity")


def test_a_model_that_went_away_is_no_such_model(page, lab, artifacts):
    (lab.root / "models" / "fake-b.gguf").unlink()  # the picker still shows it
    lab.api("bodhi/app/models")  # the server notices (the panel's picker has not asked)
    page.locator(".bodhi-New").click()
    send(page, "still there?")
    error = page.locator(".bodhi-Error")
    error.wait_for(timeout=15_000)
    assert "No such model" in error.inner_text() and "fake-b" in error.inner_text()
    shot(page, artifacts, "no-such-model")
    (lab.root / "models" / "fake-b.gguf").symlink_to(demo_model_path())


def test_a_plain_user_is_offered_no_admin_token_and_expiry_and_models_apply(page, lab, artifacts):
    page.locator(".bodhi-Tab", has_text="API tokens").click()
    scopes = page.locator(".bodhi-TokenScope option").all_inner_texts()
    assert scopes == ["read", "write"]  # the owner is a `user` here: never admin
    page.locator(".bodhi-TokenName").fill("one model, one day")
    page.locator(".bodhi-TokenExpiry select").select_option(label="1 day")
    page.locator(".bodhi-TokenModel[value=fake-a]").check()
    shot(page, artifacts, "tokens-form")
    page.locator(".bodhi-TokenCreate").click()
    secret = page.locator(".bodhi-SecretValue").inner_text().strip()
    page.locator(".bodhi-Button", has_text="Done").click()
    row = page.locator(".bodhi-Token", has_text="one model, one day")
    assert "models: fake-a" in row.inner_text() and "expires never" not in row.inner_text()
    stored = next(t for t in lab.api("bodhi/app/tokens")["data"]
                  if t["name"] == "one model, one day")
    assert stored["models"] == ["fake-a"] and stored["scope"] == "write"
    expires = time.mktime(time.strptime(stored["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(expires - time.mktime(time.gmtime()) - 86400) < 600
    client = openai.OpenAI(base_url=f"{lab.base}bodhi/v1", api_key=secret, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["fake-a"]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="fake-b", messages=[{"role": "user", "content": "hi"}])
    shot(page, artifacts, "tokens-limited")


def test_a_plain_user_may_load_models_but_not_change_aliases_upstreams_or_pulls(page, lab,
                                                                                 artifacts):
    page.locator(".bodhi-Tab", has_text="Models").click()
    files = page.locator(".bodhi-Section[data-section=files]")
    files.locator(".bodhi-File[data-model=fake-a]").wait_for()
    # write: load and unload (one fake engine is loaded by now, the other is not)
    loaded = {p["model"] for p in lab.api("bodhi/app/processes")["data"]}
    assert len(loaded) == 1
    assert files.locator(".bodhi-File .bodhi-Load").count() == 1
    page.locator(".bodhi-Process .bodhi-Unload").first.wait_for()
    # admin only: new aliases, upstreams, pulls
    for admin_only in (".bodhi-NewAlias", ".bodhi-AliasFromFile", ".bodhi-NewUpstream",
                       ".bodhi-PullForm"):
        assert page.locator(admin_only).count() == 0, admin_only
    shot(page, artifacts, "models-plain-user")
