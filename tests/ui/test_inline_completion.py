"""Ghost-text completion in a real JupyterLab with the real engine: typing in a code cell
shows a suggestion from the completion alias `make run` configures, and Tab inserts it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..live_server import wait_until
from .conftest import CHROMIUM, Lab, set_theme

REPO = Path(__file__).resolve().parents[2]
RUN_CONFIG = REPO / "jupyter-config" / "run" / "jupyter_server_config.json"
NOTEBOOK = {
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "cells": [
        {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None,
         "outputs": [], "source": "import math"},
        {"cell_type": "code", "id": "c2", "metadata": {}, "execution_count": None,
         "outputs": [], "source": ""},
    ],
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab configured as `make run` configures it (the completion alias)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("browser tests need Debian's chromium")
    root = tmp_path_factory.mktemp("ghost")
    lab = Lab(root, config=json.loads(RUN_CONFIG.read_text()))
    (root / "work" / "ghost.ipynb").write_text(json.dumps(NOTEBOOK))
    lab.start()
    yield lab
    lab.stop()


def ghost_text(page) -> str:
    return page.locator(".jp-GhostText").first.inner_text()


def cell_source(page) -> str:
    """The active cell's text as the notebook holds it (the editor's DOM also holds the
    ghost text while it shows)."""
    return page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCell"
                         ".model.sharedModel.getSource()")


def invoke(page, editor) -> None:
    """Back to the end of the cell, and ask for a suggestion (Alt+\\'s command)."""
    editor.click()
    page.keyboard.press("Control+End")
    page.evaluate("() => window.jupyterapp.commands.execute('inline-completer:invoke')")


def wait_for_ghost(page, timeout: float = 60_000) -> str:
    page.wait_for_function(
        "() => { const g = document.querySelector('.jp-GhostText');"
        " return g && g.textContent.trim().length > 0; }", timeout=timeout)
    return ghost_text(page)


def test_typing_shows_ghost_text_and_tab_inserts_it(page, lab, artifacts):
    page.wait_for_function("() => window.jupyterapp?.commands?.hasCommand('docmanager:open')")
    page.evaluate("async () => { await window.jupyterapp.commands.execute("
                  "'docmanager:open', {path: 'ghost.ipynb'}); }")
    cell = page.locator(".jp-NotebookPanel:visible .jp-CodeCell").nth(1)
    editor = cell.locator(".cm-content")
    editor.click()
    page.keyboard.type("def add(a, b):")
    page.keyboard.insert_text("\n    ")  # whether Enter indents depends on the mode loaded
    page.keyboard.type("return ")
    typed = "def add(a, b):\n    return "
    assert cell_source(page) == typed
    suggestion = wait_for_ghost(page)
    assert suggestion.strip()
    # it came from the completion alias's own engine, through bodhi/v1/infill; and the
    # debounce held back the requests of all but the last few of the 22 keystrokes
    def requests() -> int:
        rows = lab.api("bodhi/app/usage?group_by=model")["data"]
        return sum(r["requests"] for r in rows if r["model"] == "smollm2-135m-complete")

    wait_until(lambda: requests() > 0, 10, "a usage row of the alias")
    assert requests() <= 3

    notebook = page.locator(".jp-NotebookPanel:visible")
    notebook.screenshot(path=str(artifacts / "light-inline-completion.png"))
    set_theme(page, False)
    invoke(page, editor)  # the theme change may take the focus, and the suggestion with it
    assert wait_for_ghost(page) == suggestion
    notebook.screenshot(path=str(artifacts / "dark-inline-completion.png"))
    set_theme(page, True)
    invoke(page, editor)
    wait_for_ghost(page)

    page.keyboard.press("Tab")
    page.wait_for_function("() => !document.querySelector('.jp-GhostText')")
    assert cell_source(page) == typed + suggestion
