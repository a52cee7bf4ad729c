"""``bodhi_jupyter.Chat``: a chat with the server's models inside a notebook (ipywidgets).

The reply streams in a background thread, so the kernel stays free to handle a click on
Stop meanwhile. The conversation shows in an ``Output`` widget whose ``outputs`` are set to
``text/markdown`` display data: JupyterLab renders them with its own Markdown renderer and
theme, as it would a cell's output. Colours and fonts are left to JupyterLab's theme.
"""

from __future__ import annotations

import threading
import time

import ipywidgets as widgets

from .client import client
from .conversation import Conversation, error_line
from .models import _app_get, chat_models, default_chat_model, list_models

CURSOR = " ▍"


def _markdown(text: str) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/markdown": text, "text/plain": text}}


class Chat(widgets.VBox):
    """A model picker, the conversation as Markdown, an input with Send and Stop, and a
    status line. For code: ``send(text)``, ``wait(timeout)``, ``stop()``, ``history``."""

    #: seconds between updates of a streaming reply
    update_interval = 0.1

    def __init__(self, model: str | None = None, *, system: str | None = None,
                 temperature: float | None = None, max_tokens: int | None = None, **kwargs):
        self._llm = client()
        models = list_models(self._llm)
        ids = [m.id for m in chat_models(models)]
        if model is not None and model not in ids:
            ids.insert(0, model)  # the caller knows better than the metadata
        chosen = model or (default_chat_model(models) if ids else None)
        self.temperature, self.max_tokens = temperature, max_tokens
        self._conversation = Conversation(chosen, system)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: tuple[str, str] | None = None  # (question, reply so far)
        self._last_render = 0.0
        self.error: Exception | None = None  # of the last send, for code to read

        self.picker = widgets.Dropdown(options=ids, value=chosen, description="Model",
                                       layout=widgets.Layout(width="auto", flex="0 1 auto"))
        self.status = widgets.Label(layout=widgets.Layout(flex="1 1 auto"))
        self.output = widgets.Output(layout=widgets.Layout(
            max_height="28em", overflow="auto", padding="0 4px",
            border="var(--jp-border-width, 1px) solid var(--jp-border-color2, #e0e0e0)"))
        self.input = widgets.Textarea(placeholder="Ask something…", rows=3,
                                      layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.send_button = widgets.Button(description="Send", icon="paper-plane",
                                          button_style="primary", tooltip="Send the question")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True,
                                          tooltip="Stop the reply")
        self.send_button.on_click(lambda _b: self._send_input())
        self.stop_button.on_click(lambda _b: self.stop())
        if not ids:
            self.send_button.disabled = True
            self.status.value = "No chat model: pull one with bodhi_jupyter.pull(repo, filename)"
        super().__init__([
            widgets.HBox([self.picker, self.status], layout=widgets.Layout(align_items="center")),
            self.output,
            widgets.HBox([self.input, widgets.VBox([self.send_button, self.stop_button])]),
        ], **kwargs)

    # -- for code ------------------------------------------------------------------------
    @property
    def history(self) -> list[dict]:
        """The messages so far (a copy): ``{"role", "content"}``, and ``"stopped": True`` on
        a reply cut short."""
        return self._conversation.history()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def send(self, text: str) -> None:
        """Ask; the reply streams in the background (``wait()`` for it)."""
        text = text.strip()
        if not text:
            raise ValueError("nothing to send")
        with self._lock:
            if self.busy:
                raise RuntimeError("a reply is still streaming: stop() it or wait() for it")
            self._stop.clear()
            self.error = None
            self._thread = threading.Thread(target=self._reply, args=(text,), daemon=True,
                                            name="bodhi-chat")
            self._set_busy(True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the reply; True once it is over (answered, stopped or failed)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def stop(self) -> None:
        """Stop the reply: the stream is closed and the server stops generating."""
        if self.busy:
            self._stop.set()
            self.status.value = "Stopping…"

    # -- inside ----------------------------------------------------------------------------
    def _send_input(self) -> None:
        text = self.input.value
        if text.strip() and not self.busy:
            self.input.value = ""
            self.send(text)

    def _set_busy(self, busy: bool) -> None:
        self.send_button.disabled = busy or not self.picker.options
        self.stop_button.disabled = not busy
        self.picker.disabled = busy

    def _loaded(self, model: str) -> bool:
        try:
            return any(p["model"] == model and p["state"] == "ready" and not p["embedding"]
                       for p in _app_get("processes?page_size=100")["data"])
        except (OSError, KeyError, ValueError):
            return True  # unknown: say nothing about loading

    def _reply(self, text: str) -> None:
        conv = self._conversation
        conv.model = self.picker.value
        self._pending = (text, "")
        self._render(force=True)
        self.status.value = ("Thinking…" if self._loaded(conv.model)
                             else f"Loading {conv.model}…")
        try:
            reply = conv.stream(self._llm, text, on_text=self._on_text,
                                should_stop=self._stop.is_set,
                                temperature=self.temperature, max_tokens=self.max_tokens)
            self.status.value = "Stopped" if reply.stopped else ""
            if reply.stopped and not reply.text:
                self._give_back(text)  # stopped before a word: as if never sent
        except Exception as e:  # shown in the status line: a thread has nobody to raise to
            self.error = e
            self.status.value = f"Error: {error_line(e)}"
            self._give_back(text)
        finally:
            self._pending = None
            self._render(force=True)
            self._set_busy(False)

    def _give_back(self, text: str) -> None:
        """A question that got no answer returns to the input, to edit and send again."""
        if not self.input.value:
            self.input.value = text

    def _on_text(self, text: str) -> None:
        if self._pending is not None:
            if not self._pending[1]:
                self.status.value = "Answering…"
            self._pending = (self._pending[0], text)
        self._render()

    def _render(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_render < self.update_interval:
            return
        self._last_render = now
        model = self._conversation.model
        outputs = []
        for m in self._conversation.history():
            if m["role"] == "user":
                outputs.append(_markdown(f"**You**\n\n{m['content']}"))
            elif m["role"] == "assistant":
                stopped = "\n\n*— stopped*" if m.get("stopped") else ""
                outputs.append(_markdown(f"**{model}**\n\n{m['content']}{stopped}"))
        if self._pending is not None:
            question, partial = self._pending
            outputs.append(_markdown(f"**You**\n\n{question}"))
            outputs.append(_markdown(f"**{model}**\n\n{partial}{CURSOR}"))
        self.output.outputs = tuple(outputs)
