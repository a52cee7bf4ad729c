"""bodhi_jupyter.Chat's model (no browser): against the real engine, a reply streams into
the Output as Markdown, the history holds both turns, Stop ends a long reply on the server."""

from __future__ import annotations

import time

import pytest

import bodhi_jupyter
from bodhi_jupyter.kernel.chat_widget import CURSOR

from ..live_server import call, wait_until
from .test_magics import MODEL, metric_count

SYSTEM = "You are a helpful assistant."


def markdown(chat) -> list[str]:
    return [o["data"]["text/markdown"] for o in chat.output.outputs]


def test_the_picker_lists_chat_models_only(live):
    chat = bodhi_jupyter.Chat()
    assert chat.picker.options == (MODEL,)  # not all-minilm-l6-v2 (embedding only)
    assert chat.picker.value == MODEL and chat.history == []
    assert not chat.send_button.disabled and chat.stop_button.disabled
    named = bodhi_jupyter.Chat(model="some-remote-model")
    assert named.picker.options == ("some-remote-model", MODEL)


def test_send_streams_markdown_and_history_holds_both_turns(live):
    chat = bodhi_jupyter.Chat(system=SYSTEM, temperature=0, max_tokens=30)
    seen = []
    chat.output.observe(lambda change: seen.append(change["new"]), "outputs")
    chat.send("What is the capital of France?")
    assert chat.busy and chat.send_button.disabled and not chat.stop_button.disabled
    assert chat.wait(60) and chat.error is None
    assert [m["role"] for m in chat.history] == ["system", "user", "assistant"]
    answer = chat.history[-1]["content"]
    assert "Paris" in answer and "stopped" not in chat.history[-1]
    assert markdown(chat) == ["**You**\n\nWhat is the capital of France?",
                              f"**{MODEL}**\n\n{answer}"]
    assert all(o["output_type"] == "display_data" for o in chat.output.outputs)
    streaming = [o[-1]["data"]["text/markdown"] for o in seen
                 if o and o[-1]["data"]["text/markdown"].endswith(CURSOR)]
    assert len(streaming) >= 2  # the placeholder, then at least one growing reply
    assert chat.status.value == "" and not chat.send_button.disabled
    chat.history.append({"role": "user", "content": "not ours"})  # a copy
    assert len(chat.history) == 3

    chat.send("And of Italy?")  # the same conversation
    assert chat.wait(60)
    assert [m["role"] for m in chat.history] == ["system", "user", "assistant", "user",
                                                 "assistant"]


def test_stop_ends_a_long_reply_on_the_server_and_the_history_marks_it(live):
    chat = bodhi_jupyter.Chat(system=SYSTEM, max_tokens=3000)
    started = time.monotonic()
    chat.send("Write a very long story about a dragon, with many chapters.")
    with pytest.raises(RuntimeError, match="still streaming"):
        chat.send("another")
    wait_until(lambda: len(markdown(chat)[-1]) > len(f"**{MODEL}**\n\n") + 20, 60,
               "a streaming reply")
    chat.stop_button.click()
    assert chat.wait(10)
    last = chat.history[-1]
    assert last["role"] == "assistant" and last["stopped"] is True and last["content"]
    assert markdown(chat)[-1].endswith("*— stopped*") and chat.status.value == "Stopped"
    wait_until(lambda: metric_count(live, "499") == 1, 10, "a 499 for the stopped stream")
    (proc,) = call(live + "bodhi/app/processes")[1]["data"]
    assert proc["in_flight"] == 0 and time.monotonic() - started < 30


def test_an_error_shows_in_the_status_line_and_the_question_returns_to_the_input(live):
    chat = bodhi_jupyter.Chat(model="no-such-model")
    chat.input.value = "Hi"
    chat.send_button.click()
    assert chat.wait(30)
    assert chat.status.value.startswith("Error: 404") and chat.history == []
    assert chat.input.value == "Hi" and markdown(chat) == []


def test_stop_before_the_first_word_gives_the_question_back(live):
    chat = bodhi_jupyter.Chat(max_tokens=50)
    chat.input.value = "Hello there"
    chat.send_button.click()
    chat.stop()  # at once: the engine is still starting
    assert chat.wait(60)
    assert chat.status.value == "Stopped" and chat.history == []
    assert chat.input.value == "Hello there" and markdown(chat) == []
