"""The chat widget and %%bodhi in JupyterLab itself: the widget's Markdown renders with
JupyterLab's renderer, Stop works while a reply streams (the kernel handles the click), the
magic's answer renders as Markdown; screenshots light and dark."""

from __future__ import annotations

import pytest

from ..live_server import wait_until
from .conftest import shot
from .test_panel import CELLS, _open_notebook, _run_active_cell

pytestmark = pytest.mark.timeout(240)

WIDGET_CELL = """%load_ext bodhi_jupyter
from bodhi_jupyter import Chat
chat = Chat(system="You are a helpful assistant.", temperature=0, max_tokens=1500)
chat"""
MAGIC_CELL = """%%bodhi --system "You are a helpful assistant." -t 0 -n 30
What is the capital of **France**?"""


def test_the_chat_widget_and_the_magic_render_in_jupyterlab(page, lab, artifacts):
    page.wait_for_function("() => window.jupyterapp?.commands?.hasCommand('docmanager:open')",
                           timeout=60_000)
    _open_notebook(page, lab, "widgets.ipynb", [WIDGET_CELL, MAGIC_CELL])
    cells = page.locator(CELLS)
    cells.first.click()
    widget = cells.first.locator(".widget-vbox").first
    _run_active_cell(page, widget.locator(".widget-dropdown"))
    assert widget.locator(".widget-dropdown select").input_value() == "smollm2-135m-instruct"

    widget.locator("textarea").fill("What is the capital of France? Answer in one sentence.")
    widget.locator("button", has_text="Send").click()
    answer = widget.locator(".widget-output .jp-RenderedMarkdown", has_text="Paris")
    answer.wait_for(timeout=60_000)
    assert widget.locator(".widget-output .jp-RenderedMarkdown strong",
                          has_text="You").count() == 1  # Markdown, not raw asterisks

    widget.locator("textarea").fill("Write a very long story about a dragon.")
    widget.locator("button", has_text="Send").click()
    stop = widget.locator("button", has_text="Stop")
    page.wait_for_function("el => !el.disabled", arg=stop.element_handle(), timeout=30_000)
    reply = widget.locator(".widget-output .jp-RenderedMarkdown").nth(3)
    wait_until(lambda: reply.count() and len(reply.inner_text()) > 80, 60, "a streaming reply")
    stop.click()
    widget.locator(".widget-output .jp-RenderedMarkdown em", has_text="stopped").wait_for(
        timeout=20_000)
    assert widget.locator(".widget-label", has_text="Stopped").count() == 1
    shot(page, artifacts, "notebook-chat-widget")

    cells.nth(1).click()
    _run_active_cell(page, cells.nth(1).locator(".jp-RenderedMarkdown", has_text="Paris"))
    shot(page, artifacts, "notebook-bodhi-magic")
