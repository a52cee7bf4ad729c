"""Aliases in the panel's Models view, in a real browser against a real `jupyter lab`:
an alias from the server's config is read only; create one with request defaults, an
engine option and an allowed llama-server flag; a flag off the allow list is refused with
the server's words and marked; edit, export, delete (asked first) and import the export
again. Screenshots in both themes."""

from __future__ import annotations

import pytest

from ..conftest import DEMO_MODEL_ID
from .conftest import only_open, section, shot

pytestmark = pytest.mark.timeout(240)

NAME = "tiny-chat"


def open_aliases(page):
    page.locator("#bodhi-chat").wait_for(state="visible")
    page.locator(".bodhi-Tab", has_text="Models").click()
    only_open(page, "aliases")
    return section(page, "aliases")


def an_allowed_flag(lab) -> dict:
    """A flag from the server's allow list that takes a whole number."""
    flags = lab.api("bodhi/app/aliases/options")["flags"]
    return next(f for f in flags if f["value"] == "int")


def test_a_config_alias_is_read_only(page, lab, artifacts):
    aliases = open_aliases(page)
    row = aliases.locator(".bodhi-Alias[data-alias=broken-model]")
    row.wait_for()
    assert "read only" in row.locator(".bodhi-AliasSource").inner_text()
    assert row.locator(".bodhi-EditAlias, .bodhi-DeleteAlias").count() == 0


def test_an_alias_is_created_with_an_allowed_flag(page, lab, artifacts):
    flag = an_allowed_flag(lab)
    aliases = section(page, "aliases")
    aliases.locator(".bodhi-NewAlias").click()
    form = page.locator(".bodhi-AliasForm")
    form.locator(".bodhi-AliasName").fill(NAME)
    form.locator(".bodhi-AliasModel select").select_option(DEMO_MODEL_ID)
    form.locator(".bodhi-RequestDefaults > summary").click()  # closed while none is set
    form.locator("[data-field=temperature]").fill("0.2")
    form.locator("[data-field=system_prompt]").fill("You are a helpful assistant.")
    form.locator("input[data-field=ctx_size]").fill("1024")
    form.locator(".bodhi-AddFlag").click()
    # the flag box suggests the allowed flags (a datalist of the server's list)
    suggested = page.evaluate(
        "() => [...document.querySelectorAll('#bodhi-allowed-flags option')].map(o => o.value)")
    assert flag["flag"] in suggested
    form.locator(".bodhi-FlagName").fill(flag["flag"])
    form.locator(".bodhi-FlagValue").fill("2")
    assert form.locator(".bodhi-FlagValue").get_attribute("type") == "number"
    if flag["help"]:
        assert flag["help"] in form.locator(".bodhi-FlagRow .bodhi-Hint").inner_text()
    form.scroll_into_view_if_needed()
    shot(page, artifacts, "models-alias-form")
    form.locator(".bodhi-SaveAlias").click()
    row = aliases.locator(f".bodhi-Alias[data-alias={NAME}]")
    row.wait_for()
    assert page.locator(".bodhi-AliasForm").count() == 0
    assert DEMO_MODEL_ID in row.locator(".bodhi-AliasTarget").inner_text()
    assert flag["flag"] in row.locator(".bodhi-AliasFlags").inner_text()
    stored = lab.api(f"bodhi/app/aliases/{NAME}")
    assert stored["model"] == DEMO_MODEL_ID and stored["source"] == "api"
    assert stored["request"]["temperature"] == 0.2
    assert stored["server"]["ctx_size"] == 1024
    assert flag["flag"] in stored["server"]["extra_args"] and "2" in stored["server"]["extra_args"]
    # the chat's model picker offers it at once
    ids = [m["id"] for m in lab.api("bodhi/v1/models")["data"]]
    assert NAME in ids
    shot(page, artifacts, "models-aliases")


def test_a_refused_flag_is_marked_with_the_servers_words(page, lab, artifacts):
    aliases = section(page, "aliases")
    before = lab.api(f"bodhi/app/aliases/{NAME}")
    aliases.locator(f".bodhi-Alias[data-alias={NAME}] .bodhi-EditAlias").click()
    form = page.locator(".bodhi-AliasForm")
    assert form.locator(".bodhi-AliasName").is_disabled()
    form.locator("[data-field=temperature]").fill("0.4")
    form.locator(".bodhi-AddFlag").click()
    form.locator(".bodhi-FlagName").last.fill("--not-a-llama-flag")
    form.locator(".bodhi-SaveAlias").click()
    error = form.locator(".bodhi-FormError")
    error.wait_for()
    assert "--not-a-llama-flag" in error.inner_text()
    assert form.locator(".bodhi-FlagRow.bodhi-mod-refused").count() == 1
    assert lab.api(f"bodhi/app/aliases/{NAME}") == before  # nothing changed
    shot(page, artifacts, "models-alias-refused-flag")
    # take it out again, and the edit goes through
    form.locator(".bodhi-FlagRow.bodhi-mod-refused .bodhi-RemoveFlag").click()
    form.locator(".bodhi-SaveAlias").click()
    page.locator(".bodhi-AliasForm").wait_for(state="detached")
    after = lab.api(f"bodhi/app/aliases/{NAME}")
    assert after["request"]["temperature"] == 0.4
    assert after["server"]["extra_args"] == before["server"]["extra_args"]


def test_an_alias_is_deleted_after_asking_and_comes_back_from_an_export(page, lab, artifacts,
                                                                       tmp_path):
    aliases = section(page, "aliases")
    with page.expect_download() as info:
        aliases.locator(".bodhi-ExportAliases").click()
    exported = tmp_path / info.value.suggested_filename
    info.value.save_as(exported)
    assert exported.suffix in (".yaml", ".yml") and NAME in exported.read_text()
    aliases.locator(f".bodhi-Alias[data-alias={NAME}] .bodhi-DeleteAlias").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert NAME in dialog.inner_text()
    dialog.locator(".jp-mod-warn").click()
    aliases.locator(f".bodhi-Alias[data-alias={NAME}]").wait_for(state="detached")
    assert NAME not in [a["name"] for a in lab.api("bodhi/app/aliases")["data"]]
    assert NAME not in [m["id"] for m in lab.api("bodhi/v1/models")["data"]]
    # the export brings it back
    aliases.locator(".bodhi-ImportFile").set_input_files(str(exported))
    notice = aliases.locator(".bodhi-AliasNotice")
    notice.wait_for()
    assert "Imported: 1 created" in notice.inner_text(), notice.inner_text()
    aliases.locator(f".bodhi-Alias[data-alias={NAME}]").wait_for()
    assert lab.api(f"bodhi/app/aliases/{NAME}")["server"]["ctx_size"] == 1024
    shot(page, artifacts, "models-aliases-imported")
