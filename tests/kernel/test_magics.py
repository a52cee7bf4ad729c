"""%%bodhi and %bodhi_models against the real engine: streaming, interpolation, one
conversation across cells, interrupt stopping the server's generation."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from bodhi_jupyter.kernel.magics import CURSOR, STOPPED, BodhiError, interpolate
from bodhi_jupyter.kernel.models import ModelInfo, NoChatModel, default_chat_model

from ..live_server import TOKEN, call, wait_until

MODEL = "smollm2-135m-instruct"
SYSTEM = '--system "You are a helpful assistant."'


def magics(shell):
    return shell.magics_manager.registry["BodhiMagics"]


def markdown_of(outputs) -> list[str]:
    return [o.data["text/markdown"] for o in outputs]


def test_importing_the_package_loads_neither_ipython_nor_widgets_until_asked():
    code = ("import sys, bodhi_jupyter as b; heavy = ('IPython', 'ipywidgets', 'openai'); "
            "print([m for m in heavy if m in sys.modules]); "
            "print(b.Chat.__module__, 'ipywidgets' in sys.modules, "
            "callable(b.load_ipython_extension))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "bodhi_jupyter.kernel.chat_widget True True"]


# -- interpolation (no server) ---------------------------------------------------------------
def test_interpolation_replaces_names_and_leaves_other_braces():
    class Place:
        name = "Lyon"

    ns = {"city": "Paris", "place": Place(), "n": 3}
    text = 'Compare {city} and {place.name} ({n}) in JSON {"a": {"b": 1}}; f"{{city}}" {0} { city }'
    assert interpolate(text, ns) == (
        'Compare Paris and Lyon (3) in JSON {"a": {"b": 1}}; f"{city}" {0} { city }')


def test_interpolation_of_an_unknown_name_is_an_error():
    with pytest.raises(UsageError, match=r"no variable 'citty'.*\{\{citty\}\}"):
        interpolate("capital of {citty}?", {"city": "Paris"})
    with pytest.raises(UsageError, match="has no attribute 'nme'"):
        interpolate("{city.nme}", {"city": "Paris"})


def test_the_default_model_is_the_first_chat_model_preferring_a_loaded_one():
    embed = ModelInfo("embed", ["embedding"], [{"state": "ready", "embedding": True}])
    cold = ModelInfo("cold", ["chat"])
    warm = ModelInfo("warm", None, [{"state": "ready", "embedding": False}])
    assert default_chat_model([embed, cold, warm]) == "warm"  # unknown capabilities: may chat
    assert default_chat_model([embed, cold]) == "cold"
    unread = ModelInfo("unread", None)
    assert default_chat_model([unread, embed, cold]) == "cold"  # known to chat first
    assert default_chat_model([unread, embed]) == "unread"
    with pytest.raises(NoChatModel, match="bodhi_jupyter.pull"):
        default_chat_model([embed])
    assert warm.state == "loaded" and embed.state == "loaded (embedding)"
    assert ModelInfo("x", ["chat"], [{"state": "starting", "embedding": False}]).state == "loading"


# -- against the real engine -----------------------------------------------------------------
def test_answer_streams_into_one_output_growing_then_final(live, shell):
    with capture_output() as cap:
        shell.run_cell_magic("bodhi", f"{SYSTEM} -t 0 -n 40",
                             "Count from 1 to 40, separated by commas.")
    first, *updates = cap.outputs
    display_id = first.transient["display_id"]
    assert not first.update and first.data["text/markdown"].startswith(f"*{MODEL}")
    assert all(o.update and o.transient["display_id"] == display_id for o in updates)
    texts = markdown_of(updates)
    final = texts[-1]
    partial = [t.removesuffix(CURSOR) for t in texts[:-1]]
    assert len(partial) >= 2, f"only {len(partial)} updates before the end"
    assert all(t.endswith(CURSOR) for t in texts[:-1]) and not final.endswith(CURSOR)
    assert all(len(a) < len(b) and b.startswith(a) for a, b in zip(partial, partial[1:]))
    assert final.startswith(partial[-1]) and final.lstrip().startswith("1")  # counting
    assert first.data["text/plain"] == first.data["text/markdown"]  # plain-text frontends
    history = magics(shell).conversation.history()
    assert history[-1] == {"role": "assistant", "content": final}


def test_a_variable_reaches_the_model_and_cells_continue_one_conversation(live, shell):
    shell.user_ns["country"] = "France"
    with capture_output() as cap:
        shell.run_cell_magic("bodhi", f"{SYSTEM} -t 0 -n 30", "What is the capital of {country}?")
    assert "Paris" in markdown_of(cap.outputs)[-1]
    conv = magics(shell).conversation
    assert conv.model == MODEL  # the default: the only chat model
    assert conv.messages[0] == {"role": "user", "content": "What is the capital of France?"}

    with capture_output():
        shell.run_cell_magic("bodhi", "-t 0 -n 30", "And of Italy?")
    history = conv.history()
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user", "assistant"]
    assert history[0]["content"] == "You are a helpful assistant."
    assert history[3]["content"] == "And of Italy?"

    with capture_output():
        shell.run_cell_magic("bodhi", "--new -t 0 -n 5", "Hi")
    assert [m["role"] for m in conv.history()] == ["user", "assistant"]


def test_api_errors_are_one_line_and_a_bad_model_does_not_stick(live, shell):
    with capture_output():
        with pytest.raises(BodhiError, match=r"^404 .*no-such-model") as info:
            shell.run_cell_magic("bodhi", "-m no-such-model", "Hi")
    assert info.value._render_traceback_()[0].count("\n") == 0
    assert magics(shell).conversation.model is None and not magics(shell).conversation.messages


def test_bodhi_models_lists_models_with_their_state(live, shell):
    table = shell.run_line_magic("bodhi_models", "")
    rows = {m.id: m for m in table.models}
    assert rows[MODEL].state == "not loaded" and rows[MODEL].can_chat
    assert rows["all-minilm-l6-v2"].capabilities == ["embedding"]
    assert not rows["all-minilm-l6-v2"].can_chat
    call(live + "bodhi/app/processes", {"model": MODEL})  # load its engine
    table = shell.run_line_magic("bodhi_models", "")
    text, markdown = repr(table), table._repr_markdown_()
    assert re.search(rf"^{MODEL}\s+chat, completion\s+loaded$", text, re.M)
    assert f"| `{MODEL}` | chat, completion | loaded |" in markdown
    assert re.search(r"^all-minilm-l6-v2\s+embedding\s+not loaded$", text, re.M)


# -- interrupt, in a real kernel -------------------------------------------------------------
def metric_count(base: str, status: str) -> float:
    req = urllib.request.Request(base + "bodhi/metrics",
                                 headers={"Authorization": f"token {TOKEN}"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    line = (f'bodhi_requests_total{{endpoint="chat",model="{MODEL}",status="{status}"}} ')
    return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))


def test_interrupting_the_cell_stops_generation_on_the_server(live):
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ}, cwd=os.getcwd())
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("%load_ext bodhi_jupyter", timeout=60)
        assert reply["content"]["status"] == "ok"
        seen: queue.Queue = queue.Queue()
        msg_id = kc.execute(f"%%bodhi {SYSTEM} -n 3000\nWrite a very long story about a "
                            "dragon, with many chapters.")
        started = time.monotonic()
        texts = []
        while True:  # wait for the answer to be streaming
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "update_display_data":
                texts.append(msg["content"]["data"]["text/markdown"])
                if len(texts) >= 3:
                    break
            assert time.monotonic() - started < 60, "no streaming answer"
        km.interrupt_kernel()
        result = kc.get_shell_msg(timeout=30)
        assert result["parent_header"]["msg_id"] == msg_id
        assert result["content"]["status"] == "error"
        assert result["content"]["ename"] == "GenerationStopped"
        while True:  # the output keeps the partial answer, marked as stopped
            msg = kc.get_iopub_msg(timeout=10)
            if msg["msg_type"] == "update_display_data":
                seen.put(msg["content"]["data"]["text/markdown"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        final = None
        while not seen.empty():
            final = seen.get()
        assert final is not None and final.endswith(STOPPED)
        assert final.removesuffix(STOPPED).startswith(texts[0].removesuffix(CURSOR))
        # the server saw the client leave (499) and the engine is free again, long before
        # 3000 tokens (~30 s) could have been generated
        wait_until(lambda: metric_count(live, "499") == 1, 10, "a 499 for the stopped stream")
        (proc,) = call(live + "bodhi/app/processes")[1]["data"]
        assert proc["in_flight"] == 0
        assert time.monotonic() - started < 20
        # the conversation kept the partial answer, marked stopped
        reply = kc.execute_interactive(
            "h = get_ipython().magics_manager.registry['BodhiMagics'].conversation.history()\n"
            "print(h[-1]['role'], h[-1].get('stopped'), len(h[-1]['content']) > 0)", timeout=30,
            output_hook=lambda m: seen.put(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        assert "assistant True True" in "".join(seen.get() for _ in range(seen.qsize()))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
