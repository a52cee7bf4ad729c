"""The panel in a real browser against a real `jupyter lab` and the real engine (SmolLM2):
first start, streaming Markdown, Stop (and the engine really stops), branches, reload,
server restart, tokens, notebook integration; screenshots of each view, light and dark.

The tests share one server and one page and run in file order (each builds on the last)."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from ..conftest import DEMO_MODEL_ID
from ..live_server import TOKEN, wait_until
from .conftest import shot

pytestmark = pytest.mark.timeout(240)

ASSISTANT = ".bodhi-Message.bodhi-mod-assistant"
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the front tab
CELLS = f"{NOTEBOOK} .jp-Notebook .jp-Cell"
PICKER = ".bodhi-ModelPicker select"


def engine_slots(lab) -> list[dict]:
    """The engine's own view of its slots, asked directly (its key is in its environment)."""
    procs = lab.api("bodhi/app/processes")["data"]
    proc = next(p for p in procs if p["model"] == DEMO_MODEL_ID and p["state"] == "ready")
    env = open(f"/proc/{proc['pid']}/environ", "rb").read().split(b"\0")
    key = next(e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"LLAMA_API_KEY="))
    req = urllib.request.Request(f"http://127.0.0.1:{proc['port']}/slots",
                                 headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def reply_ends(page, within_s: float = 12):
    """The last reply, once it has ended (Send is back): complete, or cut off by Stop when
    the small model rambles past ``within_s`` (these tests do not need the whole answer)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    ready = page.locator(".bodhi-Send")
    try:
        ready.wait_for(timeout=within_s * 1000)
    except PlaywrightTimeout:
        page.locator(".bodhi-Stop").click()
        ready.wait_for(timeout=10_000)
    return page.locator(ASSISTANT).last


def open_tab(page, name: str) -> None:
    page.locator(".bodhi-Tab", has_text=name).click()


def send(page, text: str) -> None:
    box = page.locator(".bodhi-Input")
    box.fill(text)
    box.press("Enter")


def test_first_start_shows_the_panel_and_a_reply_streams_as_markdown(page, lab, artifacts):
    panel = page.locator("#bodhi-chat")
    panel.wait_for(state="visible")  # nobody clicked anything: first start opens it
    picker = page.locator(PICKER)
    page.wait_for_function(
        "id => [...document.querySelectorAll('.bodhi-ModelPicker option')]"
        ".some(o => o.value === id)", arg=DEMO_MODEL_ID)
    picker.select_option(DEMO_MODEL_ID)
    # the name stands alone in the picker; source and state are badges of their own
    assert picker.locator("option", has_text=DEMO_MODEL_ID).inner_text() == DEMO_MODEL_ID
    # the embedding model is installed (the Models view lists it) but cannot chat
    assert "all-minilm-l6-v2" not in picker.locator("option").all_inner_texts()
    assert page.locator(".bodhi-ModelInfo .bodhi-Source").inner_text() == "package"
    assert page.locator(".bodhi-ModelInfo .bodhi-State").inner_text() == "not loaded"
    # JupyterLab's own controls, not bare browser ones
    assert page.locator(".bodhi-ModelPicker.jp-HTMLSelect").count() == 1
    assert page.locator(".bodhi-Toolbar .jp-ToolbarButtonComponent svg").count() >= 3
    assert page.locator(".bodhi-Send.jp-mod-styled.jp-mod-accept").count() == 1
    shot(page, artifacts, "start")
    page.evaluate("() => { window.__renders = []; window.bodhiRenderHook = (t, at, streaming) => "
                  "streaming && window.__renders.push(t.length); }")
    send(page, "What is the capital of France? Answer with **bold** text.")
    # Stop is there from the first moment, and the engine load is shown as such
    page.locator(".bodhi-Stop").wait_for(state="visible", timeout=2000)
    status = page.locator(".bodhi-Status")
    status.wait_for(state="visible", timeout=5000)
    assert "Loading model" in status.inner_text()  # (its screenshots: test_panel_limits.py)
    reply = page.locator(f"{ASSISTANT}[data-status=complete]").last
    reply.wait_for(timeout=120_000)
    assert reply.locator(".jp-RenderedMarkdown p, .jp-RenderedMarkdown li").count() >= 1
    text = reply.locator(".bodhi-MarkdownHost").inner_text()
    assert text.strip() and "**" not in text  # rendered, not raw Markdown
    renders = page.evaluate("window.__renders")
    assert len(renders) >= 2 and renders == sorted(renders), renders  # it grew on screen
    stats = reply.locator(".bodhi-Stats").inner_text()
    assert "tok/s" in stats and "completion tokens" in stats and "first token" in stats
    assert page.locator(".bodhi-Title").inner_text().startswith("What is the capital")
    assert page.locator(".bodhi-ModelInfo .bodhi-State").inner_text() == "ready"
    shot(page, artifacts, "chat")


def test_an_engine_that_fails_to_start_is_reported_with_its_log(page, lab, artifacts):
    page.locator(".bodhi-New").click()
    page.locator(PICKER).select_option("broken-model")
    send(page, "hello?")
    error = page.locator(".bodhi-Error")
    error.wait_for(timeout=60_000)
    text = error.inner_text()
    assert "The engine failed" in text and "broken-model" in text
    assert "log" in text.lower() or "gguf" in text.lower()  # the end of the engine's log
    shot(page, artifacts, "engine-failed")
    failed = page.locator(f"{ASSISTANT}[data-status=cut_off]").last
    assert "engine failed" in failed.locator(".bodhi-CutOff").inner_text()
    page.locator(PICKER).select_option(DEMO_MODEL_ID)


def test_a_reply_cannot_run_script_and_math_is_typeset(page, lab):
    conv = lab.api("bodhi/app/conversations", {"title": "xss probe"})
    lab.api(f"bodhi/app/conversations/{conv['id']}/messages",
            {"role": "assistant", "content": "hi <img src=x onerror=\"window.__pwned=1\">"
             "<script>window.__pwned=2</script>\n\nEuler: $e^{i\\pi} + 1 = 0$"})
    open_tab(page, "History")
    page.locator(".bodhi-ListTitle", has_text="xss probe").click()
    page.locator(f"{ASSISTANT} .jp-RenderedMarkdown").last.wait_for()
    page.wait_for_timeout(300)  # give an injected handler its chance to fire
    assert page.evaluate("window.__pwned") is None
    assert page.locator(".bodhi-Messages script").count() == 0
    # and math is typeset (MathJax, through rendermime)
    page.locator(f"{ASSISTANT} mjx-container").first.wait_for(timeout=15_000)


def test_stop_cuts_the_reply_off_and_the_engine_stops(page, lab, artifacts):
    page.locator(".bodhi-Tab", has_text="Chat").click()
    page.locator(".bodhi-New").click()
    send(page, "Write a very long story about a dragon who learns to code. Make it long.")
    streaming = page.locator(f"{ASSISTANT}[data-status=streaming] .jp-RenderedMarkdown p")
    streaming.first.wait_for(timeout=60_000)
    shot(page, artifacts, "streaming")
    page.locator(".bodhi-Stop").click()
    cut = page.locator(f"{ASSISTANT}[data-status=cut_off]").last
    cut.wait_for(timeout=10_000)
    assert "Stopped" in cut.locator(".bodhi-CutOff").inner_text()
    kept = cut.locator(".bodhi-MarkdownHost").inner_text()
    assert kept.strip()
    # on the server: no request in flight and no slot still generating
    wait_until(lambda: all(p["in_flight"] == 0 for p in lab.api("bodhi/app/processes")["data"]),
               5, "in_flight back to 0")
    wait_until(lambda: not any(s.get("is_processing") for s in engine_slots(lab)), 5,
               "the engine to stop generating")
    # and the partial reply is stored as cut off
    conv_id = lab.api("bodhi/app/conversations")["data"][0]["id"]
    stored = lab.api(f"bodhi/app/conversations/{conv_id}")["messages"][-1]
    assert stored["status"] == "cut_off" and stored["content"].strip()


def test_regenerate_makes_a_branch_to_switch_between(page, lab, artifacts):
    first = page.locator(ASSISTANT).last.locator(".bodhi-MarkdownHost").inner_text()
    page.locator(ASSISTANT).last.locator(".bodhi-Regenerate").click()
    page.locator(".bodhi-Stop").wait_for(state="visible", timeout=2000)
    page.locator(".bodhi-Stop").click()  # a short second answer is enough
    page.locator(f"{ASSISTANT}[data-status=cut_off]").last.wait_for(timeout=60_000)
    label = page.locator(ASSISTANT).last.locator(".bodhi-BranchLabel")
    assert label.inner_text() == "2/2"
    page.locator(ASSISTANT).last.locator(".bodhi-BranchPrev").click()
    assert label.inner_text() == "1/2"
    assert page.locator(ASSISTANT).last.locator(".bodhi-MarkdownHost").inner_text() == first
    shot(page, artifacts, "branches")
    page.locator(ASSISTANT).last.locator(".bodhi-BranchNext").click()
    assert label.inner_text() == "2/2"
    # edit the question and resend: a branch at the question, the old one kept
    question = page.locator(".bodhi-Message.bodhi-mod-user").last
    old_question = question.locator(".bodhi-MarkdownHost").inner_text()
    question.locator(".bodhi-EditButton").click()
    question.locator(".bodhi-Edit textarea").fill("Say hello.")
    question.locator(".bodhi-Edit .bodhi-Button", has_text="Send").click()
    reply_ends(page)
    question = page.locator(".bodhi-Message.bodhi-mod-user").last
    assert question.locator(".bodhi-BranchLabel").inner_text() == "2/2"
    assert "Say hello." in question.locator(".bodhi-MarkdownHost").inner_text()
    question.locator(".bodhi-BranchPrev").click()
    assert question.locator(".bodhi-MarkdownHost").inner_text() == old_question
    question.locator(".bodhi-BranchNext").click()


def test_regenerate_uses_the_model_that_wrote_the_reply(page, lab, artifacts):
    # SmolLM2 answered first; then the person switched to the broken model (its reply failed)
    conv = lab.api("bodhi/app/conversations", {"title": "mixed models"})
    add = lambda **m: lab.api(f"bodhi/app/conversations/{conv['id']}/messages", m)  # noqa: E731
    q1 = add(role="user", content="Say hi.")
    a1 = add(role="assistant", parent_id=q1["id"], model=DEMO_MODEL_ID, content="Hi!")
    q2 = add(role="user", parent_id=a1["id"], content="And again?")
    add(role="assistant", parent_id=q2["id"], model="broken-model", content="",
        status="cut_off")
    open_tab(page, "History")
    page.locator(".bodhi-ListTitle", has_text="mixed models").click()
    page.locator(".bodhi-Title", has_text="mixed models").wait_for()
    wait_until(lambda: page.locator(PICKER).input_value() == "broken-model", 5,
               "the picker showing the conversation's latest model")
    # regenerating SmolLM2's answer asks SmolLM2 again, not the picker's broken model
    page.locator(ASSISTANT).first.locator(".bodhi-Regenerate").click()
    reply = reply_ends(page)
    assert page.locator(".bodhi-Error").count() == 0
    assert reply.locator(".bodhi-Role").inner_text() == DEMO_MODEL_ID
    assert reply.locator(".bodhi-BranchLabel").inner_text() == "2/2"
    page.locator(PICKER).select_option(DEMO_MODEL_ID)


def test_per_conversation_parameters_reach_the_engine(page, lab, artifacts):
    page.locator(".bodhi-New").click()
    page.locator(".bodhi-ParamsButton").click()
    system = page.locator("#bodhi-param-system_prompt")
    assert "You are a helpful assistant." in system.get_attribute("placeholder")  # alias default
    page.locator("#bodhi-param-max_tokens").fill("3")
    page.locator("#bodhi-param-seed").fill("7")
    page.locator(".bodhi-Params .bodhi-Button", has_text="Save").click()
    send(page, "Count from one to twenty.")
    reply = page.locator(f"{ASSISTANT}[data-status=complete]").last
    reply.wait_for(timeout=60_000)
    assert "3 completion tokens" in reply.locator(".bodhi-Stats").inner_text()
    conv = lab.api("bodhi/app/conversations")["data"][0]
    assert conv["params"] == {"max_tokens": 3, "seed": 7}


def test_a_reload_and_a_server_restart_keep_the_conversation(page, lab, artifacts):
    page.reload()
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=90_000)
    page.locator("#bodhi-chat").wait_for(state="visible")  # restored by the layout restorer
    page.locator('.jp-SideBar [data-id="filebrowser"]').click()
    page.locator("#bodhi-chat").wait_for(state="hidden")
    page.locator(".jp-DirListing").click()
    page.keyboard.press("Control+Shift+Y")  # the panel's shortcut
    page.locator("#bodhi-chat").wait_for(state="visible")
    open_tab(page, "History")
    item = page.locator(".bodhi-ListTitle", has_text="What is the capital")
    item.wait_for()
    shot(page, artifacts, "history")
    # a second tab sees the same conversations
    other = page.context.new_page()
    other.goto(f"{lab.base}lab?token={TOKEN}")
    other.wait_for_selector("#jupyterlab-splash", state="detached", timeout=90_000)
    other.locator(".bodhi-Tab", has_text="History").click()
    other.locator(".bodhi-ListTitle", has_text="What is the capital").wait_for()
    other.close()
    # the server goes away: the panel says so, and recovers by itself when it is back
    lab.stop()
    open_tab(page, "Chat")
    open_tab(page, "History")
    banner = page.locator(".bodhi-Banner")
    banner.wait_for(timeout=10_000)
    assert "reconnecting" in banner.inner_text()
    lab.start()
    banner.wait_for(state="hidden", timeout=30_000)
    page.reload()
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=90_000)
    open_tab(page, "History")
    page.locator(".bodhi-ListTitle", has_text="What is the capital").click()
    page.locator(f"{ASSISTANT} .jp-RenderedMarkdown p").first.wait_for()
    assert page.locator(".bodhi-Title").inner_text().startswith("What is the capital")
    # the same banner for its screenshots, the server unreachable from the page alone (a
    # stopped server could not store the theme switch)
    page.route("**/bodhi/**", lambda route: route.abort())
    open_tab(page, "History")
    banner.wait_for(timeout=10_000)
    shot(page, artifacts, "server-gone")
    from .conftest import set_theme

    set_theme(page, False)
    colours = page.evaluate("() => { const s = getComputedStyle(document.querySelector("
                            "'.bodhi-Banner')); return [s.color, s.backgroundColor]; }")
    assert _luma(colours[0]) - _luma(colours[1]) > 0.4, colours  # no pale text on pale
    set_theme(page, True)
    page.unroute("**/bodhi/**")
    banner.wait_for(state="hidden", timeout=30_000)


def test_export_downloads_markdown_and_json_and_delete_asks_first(page, lab, artifacts):
    open_tab(page, "History")
    item = page.locator(".bodhi-ListItem", has_text="What is the capital")
    with page.expect_download() as md:
        item.locator(".bodhi-ExportMarkdown").click()
    assert md.value.suggested_filename.endswith(".md")
    text = open(md.value.path(), encoding="utf-8").read()
    assert "What is the capital of France?" in text
    with page.expect_download() as js:
        item.locator(".bodhi-ExportJson").click()
    assert js.value.suggested_filename.endswith(".json")
    exported = json.loads(open(js.value.path(), encoding="utf-8").read())
    assert exported["title"].startswith("What is the capital")
    assert any("capital of France" in m["content"] for m in exported["messages"])
    # delete cannot be undone: JupyterLab's dialog asks first, and Cancel keeps it
    probe = page.locator(".bodhi-ListItem", has_text="xss probe")
    probe.locator(".bodhi-Delete").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "cannot be undone" in dialog.inner_text()
    shot(page, artifacts, "history-confirm-delete")
    dialog.locator("button", has_text="Cancel").click()
    probe.wait_for()
    probe.locator(".bodhi-Delete").click()
    dialog.locator(".jp-mod-accept, .jp-mod-warn").last.click()
    probe.wait_for(state="detached")
    assert all(c["title"] != "xss probe" for c in lab.api("bodhi/app/conversations")["data"])


def test_a_token_made_in_the_panel_works_with_the_openai_client(page, lab, artifacts):
    open_tab(page, "API tokens")
    scopes = page.locator(".bodhi-TokenScope option").all_inner_texts()
    assert scopes == ["read", "write", "admin"]  # the server owner is an admin
    page.locator(".bodhi-TokenName").fill("from the panel")
    page.locator(".bodhi-TokenCreate").click()
    secret = page.locator(".bodhi-SecretValue").inner_text().strip()
    snippet = page.locator(".bodhi-Snippet").inner_text()
    assert secret.startswith("bodhi_") and secret in snippet
    base_url = snippet.split('base_url="')[1].split('"')[0]
    assert base_url == f"{lab.base}bodhi/v1"
    shot(page, artifacts, "tokens-secret")
    client = openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0)
    assert DEMO_MODEL_ID in [m.id for m in client.models.list().data]
    page.locator(".bodhi-Button", has_text="Done").click()
    row = page.locator(".bodhi-Token", has_text="from the panel")
    row.locator(".jp-ToolbarButtonComponent", has_text="Deactivate").click()
    row.locator(".jp-ToolbarButtonComponent", has_text="Reactivate").wait_for()
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    shot(page, artifacts, "tokens")
    # delete asks first (it cannot be undone)
    row.locator(".jp-ToolbarButtonComponent", has_text="Delete").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "cannot be undone" in dialog.inner_text()
    shot(page, artifacts, "tokens-confirm-delete")
    dialog.locator(".jp-mod-warn").click()
    row.wait_for(state="detached")


def _open_notebook(page, lab, name: str, cells: list[str]) -> None:
    nb = {"cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": [],
                     "execution_count": None} for c in cells],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    req = urllib.request.Request(f"{lab.base}api/contents/{name}", method="PUT",
                                 data=json.dumps({"type": "notebook", "content": nb}).encode(),
                                 headers={"Authorization": f"token {TOKEN}",
                                          "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
    page.evaluate("async name => { await window.jupyterapp.commands.execute("
                  "'docmanager:open', {path: name}); }", name)
    page.locator(CELLS).first.wait_for()
    page.wait_for_function(
        "sel => document.querySelector(sel)?.dataset?.status === 'idle'",
        arg=f"{NOTEBOOK} .jp-Notebook-ExecutionIndicator", timeout=60_000)
    # the indicator says idle before a kernel exists too: wait for the session's kernel,
    # or a cell run now would ask which kernel to start
    page.wait_for_function(
        "() => { const k = window.jupyterapp.shell.currentWidget?.sessionContext?.session"
        "?.kernel; return k && k.connectionStatus === 'connected' && k.status === 'idle'; }",
        timeout=60_000)


def _run_active_cell(page, output) -> None:
    """Run the active cell until ``output`` shows. A run asked for while the kernel is still
    connecting is dropped by JupyterLab (seen with three kernels starting on 2 cores), so a
    cell that never started (its prompt still empty) is asked again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(3):
        page.evaluate("async () => { await window.jupyterapp.commands.execute("
                      "'notebook:run-cell'); }")
        try:
            output.wait_for(timeout=15_000)
            return
        except PlaywrightTimeout:
            prompt = page.locator(f"{NOTEBOOK} .jp-Cell.jp-mod-active .jp-InputPrompt")
            if "[*]" in prompt.inner_text():  # it is running: just slow
                output.wait_for(timeout=30_000)
                return
    output.wait_for(timeout=1)


def test_insert_a_code_block_into_a_notebook_and_run_it(page, lab, artifacts):
    conv = lab.api("bodhi/app/conversations", {"title": "code to insert"})
    q = lab.api(f"bodhi/app/conversations/{conv['id']}/messages",
                {"role": "user", "content": "print the answer"})
    lab.api(f"bodhi/app/conversations/{conv['id']}/messages",
            {"role": "assistant", "parent_id": q["id"],
             "content": "Here:\n\n```python\nprint(6 * 7)\n```\n"})
    _open_notebook(page, lab, "insert.ipynb", ["x = 1"])
    page.locator(CELLS).first.click()
    open_tab(page, "History")
    page.locator(".bodhi-ListTitle", has_text="code to insert").click()
    page.locator(".bodhi-CodeInsert").last.click()
    cells = page.locator(CELLS)
    wait_until(lambda: cells.count() == 2, 10, "a cell inserted")
    assert "print(6 * 7)" in cells.nth(1).inner_text()
    _run_active_cell(page, cells.nth(1).locator(".jp-OutputArea-output", has_text="42"))
    shot(page, artifacts, "notebook-insert")
    # Replace cell: the active cell (the first) gets the block, nothing is added
    cells.first.click()
    page.locator(".bodhi-CodeReplace").last.click()
    wait_until(lambda: "print(6 * 7)" in cells.first.inner_text(), 10, "the cell replaced")
    assert "x = 1" not in cells.first.inner_text() and cells.count() == 2


def test_send_selection_to_chat_from_an_editor(page, lab, artifacts):
    _open_notebook(page, lab, "selection.ipynb", ["alpha = 1\nbeta = 2\ngamma = 3"])
    open_tab(page, "Chat")
    editor = page.locator(f"{CELLS} .cm-content").first
    editor.click()
    page.locator(f"{CELLS} .cm-line", has_text="beta = 2").click()
    page.keyboard.press("Home")
    page.keyboard.press("Shift+End")  # select the second line only
    page.locator(f"{CELLS} .cm-line", has_text="beta = 2").click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text="Send Selection to Chat").click()
    box = page.locator(".bodhi-Input")
    wait_until(lambda: "beta = 2" in box.input_value(), 10, "the selection in the composer")
    assert "alpha" not in box.input_value() and "gamma" not in box.input_value()
    shot(page, artifacts, "send-selection")
    box.fill("")


def test_fix_this_error_starts_a_chat_with_the_traceback(page, lab, artifacts):
    _open_notebook(page, lab, "broken.ipynb", ["numbers = [1, 2]\nnumbers[5]"])
    page.locator(CELLS).first.click()
    _run_active_cell(page, page.locator(f"{NOTEBOOK} .jp-OutputArea-output", has_text="IndexError"))
    page.locator(CELLS).first.click()
    page.locator(CELLS).first.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text="Fix This Error").click()
    user = page.locator(".bodhi-Message.bodhi-mod-user").last
    user.wait_for()
    asked = user.inner_text()
    assert "IndexError" in asked and "list index out of range" in asked
    assert "numbers[5]" in asked
    reply = reply_ends(page)
    if reply.locator("pre").count():  # a streamed reply's code blocks get their buttons too
        reply.locator(".bodhi-CodeInsert").first.wait_for(timeout=5000)
    shot(page, artifacts, "fix-error")


def test_kernels_credentials_are_counted_not_listed(page, lab, artifacts):
    """Each running kernel holds its own token: the tokens view says how many, and does not
    offer them for managing (they go with their kernels)."""
    _open_notebook(page, lab, "credential.ipynb",
                   ["import os\nprint(os.environ['BODHI_API_KEY'][:6], 'handed over')"])
    page.locator(CELLS).first.click()
    _run_active_cell(page, page.locator(f"{NOTEBOOK} .jp-OutputArea-output",
                                        has_text="bodhi_ handed over"))
    kernels = [t for t in lab.api("bodhi/app/tokens?page_size=200")["data"] if t["kernel"]]
    assert any(t["notebook"] == "credential.ipynb" for t in kernels), kernels
    open_tab(page, "Chat")
    open_tab(page, "API tokens")  # the view reads the tokens when it opens
    count = page.locator(".bodhi-KernelTokens")
    count.wait_for()
    assert count.inner_text().startswith(f"{len(kernels)} running notebook kernel")
    names = page.locator(".bodhi-Token strong").all_inner_texts()
    assert not any(n.startswith("kernel: ") for n in names), names
    shot(page, artifacts, "tokens-kernels")


def test_the_panel_follows_the_dark_theme(page, lab, artifacts):
    from .conftest import set_theme

    open_tab(page, "Chat")
    page.locator(".bodhi-ParamsButton").click()
    set_theme(page, False)
    bg = page.evaluate("getComputedStyle(document.querySelector('.bodhi-Panel')).backgroundColor")
    fg = page.evaluate("getComputedStyle(document.querySelector('.bodhi-Param span')).color")
    assert _luma(bg) < 0.3 < 0.5 < _luma(fg), (bg, fg)  # light text on a dark panel
    shot(page, artifacts, "params")
    page.locator(".bodhi-Button", has_text="Cancel").click()


def _luma(css: str) -> float:
    r, g, b = [int(x) for x in css[css.index("(") + 1:css.index(")")].split(",")[:3]]
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255




def test_rate_limited_says_when_to_retry(page, lab, artifacts):
    """Last in this file: the owner's window stays full for a minute."""
    page.locator(".bodhi-New").click()
    lab.send("PUT", "bodhi/app/settings/RateLimiter.per_user", {"value": 1})
    lab.api("bodhi/app/info")  # the one request this minute allows
    send(page, "hello?")
    error = page.locator(".bodhi-Error")
    error.wait_for(timeout=10_000)
    text = error.inner_text()
    assert "Rate limited" in text and "Try again in" in text, text
    seconds = int(text.split("Try again in")[1].split("s")[0])
    assert 1 <= seconds <= 60
    shot(page, artifacts, "rate-limited")
