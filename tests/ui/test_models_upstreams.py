"""Remote upstreams in the panel's Models view, in a real browser against a real `jupyter
lab`: register one (the lab's own OpenAI API, with its token as the key: a real
OpenAI-compatible server and no extra process), ask it for its models, see a refused URL
and an unreachable upstream read cleanly, edit and delete. Screenshots in both themes."""

from __future__ import annotations

import pytest

from ..conftest import DEMO_MODEL_ID
from ..live_server import TOKEN, free_port
from .conftest import only_open, section, shot

pytestmark = pytest.mark.timeout(240)


def open_upstreams(page):
    page.locator("#bodhi-chat").wait_for(state="visible")
    page.locator(".bodhi-Tab", has_text="Models").click()
    only_open(page, "upstreams")
    return section(page, "upstreams")


def fill_form(page, name: str, url: str, key: str = "", models: str = "") -> None:
    form = page.locator(".bodhi-UpstreamForm")
    if name:
        form.locator(".bodhi-UpstreamName").fill(name)
    form.locator(".bodhi-UpstreamBaseUrl").fill(url)
    form.locator(".bodhi-UpstreamKeyInput").fill(key)
    form.locator(".bodhi-UpstreamModelList").fill(models)


def test_an_upstream_is_registered_and_lists_its_models(page, lab, artifacts):
    ups = open_upstreams(page)
    ups.locator(".bodhi-Empty").wait_for()
    ups.locator(".bodhi-NewUpstream").click()
    fill_form(page, "self", lab.base + "bodhi/v1", TOKEN, DEMO_MODEL_ID)
    # the key is a password field: never shown on screen
    assert page.locator(".bodhi-UpstreamKeyInput").get_attribute("type") == "password"
    shot(page, artifacts, "models-upstream-form")
    page.locator(".bodhi-SaveUpstream").click()
    row = ups.locator(".bodhi-Upstream[data-upstream=self]")
    row.wait_for()
    assert page.locator(".bodhi-UpstreamForm").count() == 0
    badges = row.locator(".bodhi-ItemBadges").inner_text()
    assert "prefix self/" in badges and "API key set" in badges and "1 models listed" in badges
    assert TOKEN not in page.locator(".bodhi-Models").inner_text()
    [stored] = lab.api("bodhi/app/upstreams")["data"]
    assert stored["has_api_key"] and "api_key" not in stored
    remote = [m for m in lab.api("bodhi/v1/models")["data"] if m["id"] == f"self/{DEMO_MODEL_ID}"]
    assert remote and remote[0].get("source", "remote") == "remote"
    # asking it for its models is the connection check: the lab answers with its own
    row.locator(".bodhi-UpstreamModels").click()
    listed = row.locator(".bodhi-RemoteModels")
    listed.wait_for(timeout=30_000)
    assert DEMO_MODEL_ID in listed.inner_text().split("\n")
    shot(page, artifacts, "models-upstreams")


def test_a_refused_url_and_an_unreachable_upstream_read_cleanly(page, lab, artifacts):
    ups = section(page, "upstreams")
    ups.locator(".bodhi-NewUpstream").click()
    fill_form(page, "gone", "gopher://example.org/v1")
    page.locator(".bodhi-SaveUpstream").click()
    error = page.locator(".bodhi-UpstreamForm .bodhi-FormError")
    error.wait_for()
    assert "base_url" in error.inner_text() and "http" in error.inner_text()
    assert [u["name"] for u in lab.api("bodhi/app/upstreams")["data"]] == ["self"]
    fill_form(page, "", f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    page.locator(".bodhi-SaveUpstream").click()
    row = ups.locator(".bodhi-Upstream[data-upstream=gone]")
    row.wait_for()
    assert "no API key" in row.locator(".bodhi-ItemBadges").inner_text()
    row.locator(".bodhi-UpstreamModels").click()
    failed = row.locator(".bodhi-UpstreamError")
    failed.wait_for(timeout=30_000)
    text = failed.inner_text()
    assert "gone" in text and "Traceback" not in text, text
    assert row.locator(".bodhi-RemoteModels").count() == 0
    shot(page, artifacts, "models-upstream-unreachable")


def test_an_upstream_is_edited_and_deleted_after_asking(page, lab, artifacts):
    ups = section(page, "upstreams")
    row = ups.locator(".bodhi-Upstream[data-upstream=self]")
    row.locator(".bodhi-EditUpstream").click()
    form = page.locator(".bodhi-UpstreamForm")
    assert form.locator(".bodhi-UpstreamName").is_disabled()
    assert form.locator(".bodhi-UpstreamKeyInput").input_value() == ""  # write-only
    form.locator(".bodhi-UpstreamPrefix").fill("mine/")
    page.locator(".bodhi-SaveUpstream").click()
    page.locator(".bodhi-UpstreamForm").wait_for(state="detached")
    row.locator(".bodhi-ItemBadges", has_text="prefix mine/").wait_for()
    stored = lab.api("bodhi/app/upstreams/self")
    assert stored["prefix"] == "mine/" and stored["has_api_key"]  # the key was kept
    ids = [m["id"] for m in lab.api("bodhi/v1/models")["data"]]
    assert f"mine/{DEMO_MODEL_ID}" in ids and f"self/{DEMO_MODEL_ID}" not in ids

    ups.locator(".bodhi-Upstream[data-upstream=gone] .bodhi-DeleteUpstream").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "gone" in dialog.inner_text()
    shot(page, artifacts, "models-upstream-confirm-delete")
    dialog.locator(".jp-mod-warn").click()
    ups.locator(".bodhi-Upstream[data-upstream=gone]").wait_for(state="detached")
    assert [u["name"] for u in lab.api("bodhi/app/upstreams")["data"]] == ["self"]
