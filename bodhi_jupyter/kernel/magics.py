"""``%load_ext bodhi_jupyter``: ``%%bodhi`` asks the server's model and streams the Markdown
answer into the cell's output; ``%bodhi_models`` lists the models and their state.

Decisions (issue 9): ``{name}`` and ``{name.attr}`` in the cell are replaced from the
notebook's namespace, other braces are left alone, ``{{name}}`` sends ``{name}`` literally,
and an unknown name is an error: a typo must not reach the model silently. Consecutive cells
are one conversation until ``--new``. An interrupt closes the stream (the server then stops
the engine), keeps the partial answer marked as stopped, in the output and in the
conversation, and still fails the cell so that "Run all" stops there too.
"""

from __future__ import annotations

import re
import time

import openai
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from IPython.utils.process import arg_split

from .client import ServerNotFound, client, connection
from .conversation import Conversation, error_line
from .models import ModelTable, NoChatModel, default_chat_model, list_models

_NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_FIELD = re.compile(r"\{\{(" + _NAME + r")\}\}|\{(" + _NAME + r")\}")
CURSOR = " ▍"
STOPPED = "\n\n*— stopped*"


class BodhiError(Exception):
    """A request the server refused or could not serve: shown as one line, no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31mbodhi:\x1b[0m {self}"]


class GenerationStopped(KeyboardInterrupt):
    """The cell was interrupted mid-answer (a KeyboardInterrupt, so "Run all" stops)."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31mbodhi:\x1b[0m {self}"]


def interpolate(text: str, namespace: dict) -> str:
    """Replace ``{name}`` / ``{name.attr}`` with ``str()`` of the value; ``{{name}}`` gives
    ``{name}``; anything else in braces (code, JSON) is untouched."""
    def value_of(match: re.Match) -> str:
        if match.group(1) is not None:
            return "{" + match.group(1) + "}"
        path = match.group(2)
        root, *attrs = path.split(".")
        if root not in namespace:
            raise UsageError(f"{{{path}}}: no variable '{root}' in the notebook; "
                             f"write {{{{{path}}}}} to send the braces as they are")
        value = namespace[root]
        for attr in attrs:
            try:
                value = getattr(value, attr)
            except AttributeError:
                raise UsageError(f"{{{path}}}: {type(value).__name__} object has no "
                                 f"attribute '{attr}'") from None
        return str(value)

    return _FIELD.sub(value_of, text)


class LiveMarkdown:
    """A cell output that grows as the answer streams, updated at most every ``interval``
    seconds (a long answer would otherwise send a message per token) and once at the end."""

    def __init__(self, placeholder: str, interval: float):
        self.interval, self.text, self._last = interval, "", 0.0
        self.handle = display(self._bundle(placeholder), raw=True, display_id=True)

    @staticmethod
    def _bundle(markdown: str) -> dict:
        return {"text/markdown": markdown, "text/plain": markdown}

    def update(self, text: str) -> None:
        self.text = text
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.handle.update(self._bundle(text + CURSOR), raw=True)

    def finish(self, suffix: str = "") -> None:
        self.handle.update(self._bundle(self.text + suffix), raw=True)


@magics_class
class BodhiMagics(Magics):
    #: seconds between updates of a streaming answer
    update_interval = 0.08

    def __init__(self, shell):
        super().__init__(shell)
        self.conversation = Conversation()
        self._client, self._connection = None, None

    def llm(self):
        """The openai client, rebuilt when the kernel's credential changes."""
        try:
            conn = connection()
        except ServerNotFound as e:
            raise BodhiError(str(e)) from None
        if conn != self._connection:
            self._client, self._connection = client(), conn
        return self._client

    @magic_arguments()
    @argument("-m", "--model", help="the model to ask (default: the conversation's, else "
              "the first chat model, preferring a loaded one)")
    @argument("--system", help="the system prompt (kept for the conversation)")
    @argument("-t", "--temperature", type=float, help="sampling temperature")
    @argument("-n", "--max-tokens", type=int, help="at most this many tokens in the answer")
    @argument("--new", action="store_true", help="start a new conversation")
    @cell_magic
    def bodhi(self, line: str, cell: str):
        """Ask the model; the answer streams in as Markdown. ``{name}`` is replaced by the
        value of ``name``; consecutive cells continue one conversation until --new."""
        # posix splitting: --system "You are terse." arrives without its quotes
        args = self.bodhi.parser.parse_args(arg_split(line, posix=True))
        ns = self.shell.user_ns
        prompt = interpolate(cell.strip(), ns)
        if not prompt:
            raise UsageError("%%bodhi needs a question in the cell")
        system = interpolate(args.system, ns) if args.system is not None else None
        conv = self.conversation
        if args.new:
            conv.reset(system)
        elif system is not None:
            conv.system = system
        llm = self.llm()
        previous = conv.model
        try:
            conv.model = args.model or conv.model or default_chat_model(list_models(llm))
        except NoChatModel as e:
            raise BodhiError(str(e)) from None
        except openai.OpenAIError as e:
            raise BodhiError(error_line(e)) from None
        live = LiveMarkdown(f"*{conv.model} …*", self.update_interval)
        try:
            reply = conv.stream(llm, prompt, on_text=live.update,
                                temperature=args.temperature, max_tokens=args.max_tokens)
        except KeyboardInterrupt:
            live.finish(STOPPED)
            raise GenerationStopped("stopped; the partial answer stays in the conversation"
                                    if live.text else "stopped before the answer began"
                                    ) from None
        except openai.OpenAIError as e:
            live.finish()
            conv.model = previous  # a bad -m does not stick
            raise BodhiError(error_line(e)) from None
        live.finish(STOPPED if reply.stopped else "")

    @line_magic
    def bodhi_models(self, line: str = ""):
        """The models this notebook may use, their capabilities and whether they are loaded."""
        try:
            return ModelTable(list_models(self.llm()))
        except openai.OpenAIError as e:
            raise BodhiError(error_line(e)) from None


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(BodhiMagics)
