"""The panel in a real browser through JupyterHub's proxy: alice logs in at the hub (the
DummyAuthenticator's form), opens her JupyterLab at /user/alice/lab and chats (the fake
engine), finds the conversation in History and mints an API token that is shown once and
works through the proxy. Screenshots: tests/ui/artifacts/{light,dark}-hub-*.png.

The tests share one hub, one server and one page and run in file order."""

from __future__ import annotations

import json
import os

import httpx
import openai
import pytest

from ..hub import fake_engine_env, start_hub, stop_hub
from .conftest import ARTIFACTS, CHROMIUM, shot

pytestmark = pytest.mark.timeout(240)

ALIAS = "fake-hub-panel"
ASSISTANT = ".bodhi-Message.bodhi-mod-assistant"
PICKER = ".bodhi-ModelPicker select"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("browser tests need Debian's chromium (make test installs it as root)")
    tmp = tmp_path_factory.mktemp("hub-panel")
    env = fake_engine_env(tmp, ALIAS, {"LabApp": {"expose_app_in_browser": True}})
    settings = tmp / "lab-settings"
    notify = settings / "@jupyterlab" / "apputils-extension"
    notify.mkdir(parents=True)
    (notify / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env.update(JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "lab-workspaces"))
    hub = start_hub(tmp, singleuser_env=env, allowed_users=["alice"])
    try:
        hub.ensure_user("alice")
        hub.start_server("alice")
        yield hub
    finally:
        stop_hub(hub)


@pytest.fixture(scope="module")
def page(browser, hub):
    """alice, logged in at the hub, in her JupyterLab (overrides the conftest's page)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    ARTIFACTS.mkdir(exist_ok=True)
    console = open(ARTIFACTS / "console-hub.log", "w")
    page.on("console", lambda m: m.type in ("error", "warning")
            and console.write(f"{m.type}: {m.text}\n") and console.flush())
    page.set_default_timeout(30_000)
    page.goto(f"{hub.url}/hub/login")
    page.locator("#username_input").fill("alice")
    page.locator("#password_input").fill("any password")  # DummyAuthenticator takes any
    page.locator("#login_submit").click()
    page.wait_for_url(f"{hub.url}/user/alice/**", timeout=60_000)  # OAuth done, at her server
    page.goto(f"{hub.url}/user/alice/lab")
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=90_000)
    yield page
    ctx.close()


def open_panel(page) -> None:
    page.wait_for_function("() => window.jupyterapp?.commands?.hasCommand('bodhi:open-chat')",
                           timeout=60_000)  # the extension's plugins activate after the splash
    if not page.locator("#bodhi-chat").is_visible():
        page.evaluate("() => window.jupyterapp.commands.execute('bodhi:open-chat')")
    page.locator("#bodhi-chat").wait_for(state="visible")


def test_alice_chats_in_her_lab_through_the_hub_proxy(page, hub, artifacts):
    assert page.url.startswith(f"{hub.url}/user/alice/lab")
    open_panel(page)
    page.wait_for_function(
        "id => [...document.querySelectorAll('.bodhi-ModelPicker option')]"
        ".some(o => o.value === id)", arg=ALIAS)
    page.locator(PICKER).select_option(ALIAS)
    box = page.locator(".bodhi-Input")
    box.fill("Hello from the hub")
    box.press("Enter")
    reply = page.locator(f"{ASSISTANT}[data-status=complete]").last
    reply.wait_for(timeout=60_000)
    assert reply.locator(".bodhi-MarkdownHost").inner_text().startswith("fake reply")
    assert page.locator(".bodhi-Error").count() == 0
    shot(page, artifacts, "hub-chat")
    # the server stored it as alice's: her hub token sees it through the proxy
    token = hub.new_token("alice")
    r = hub.api("GET", "user", token=token)
    assert r.json()["name"] == "alice"
    r = httpx.get(f"{hub.url}/user/alice/bodhi/app/conversations", timeout=30,
                  headers={"Authorization": f"token {token}"})
    assert [c["title"] for c in r.json()["data"]] == ["Hello from the hub"], r.text


def test_a_new_conversation_is_found_in_history(page, hub, artifacts):
    page.locator(".bodhi-New").click()
    box = page.locator(".bodhi-Input")
    box.fill("A second conversation")
    box.press("Enter")
    page.locator(f"{ASSISTANT}[data-status=complete]").last.wait_for(timeout=60_000)
    page.locator(".bodhi-Tab", has_text="History").click()
    titles = page.locator(".bodhi-ListTitle")
    titles.filter(has_text="A second conversation").wait_for()
    titles.filter(has_text="Hello from the hub").wait_for()
    shot(page, artifacts, "hub-history")
    titles.filter(has_text="Hello from the hub").click()
    page.locator(".bodhi-Title", has_text="Hello from the hub").wait_for()
    assert "Hello from the hub" in page.locator(".bodhi-Message.bodhi-mod-user").first.inner_text()


def test_a_token_minted_in_the_panel_is_shown_once_and_works_through_the_proxy(
        page, hub, artifacts):
    page.locator(".bodhi-Tab", has_text="API tokens").click()
    page.locator(".bodhi-TokenName").fill("hub script")
    page.locator(".bodhi-TokenCreate").click()
    secret = page.locator(".bodhi-SecretValue").inner_text().strip()
    snippet = page.locator(".bodhi-Snippet").inner_text()
    assert secret.startswith("bodhi_") and secret in snippet
    base_url = snippet.split('base_url="')[1].split('"')[0]
    assert base_url == f"{hub.url}/user/alice/bodhi/v1"  # the proxy's address, not the server's
    shot(page, artifacts, "hub-tokens-secret")
    client = openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=30)
    assert ALIAS in [m.id for m in client.models.list().data]
    reply = client.chat.completions.create(
        model=ALIAS, max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content.startswith("fake reply")
    page.locator(".bodhi-Button", has_text="Done").click()
    row = page.locator(".bodhi-Token", has_text="hub script")
    row.wait_for()
    assert page.locator(".bodhi-SecretValue").count() == 0  # shown once, then never again
    assert secret not in page.content()
    page.reload()
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=90_000)
    open_panel(page)
    page.locator(".bodhi-Tab", has_text="API tokens").click()
    page.locator(".bodhi-Token", has_text="hub script").wait_for()
    assert secret not in page.content()
    shot(page, artifacts, "hub-tokens")
